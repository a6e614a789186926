"""`rnnkit score`: the log-probability of each line of a text under a model.

    from rnnkit.load import load_model
    from rnnkit.score import score_text
    model, codec, _ = load_model("runs/x/best.h5")
    scores = score_text(model, codec, "the cat sat\\nthe dog ran\\n")
    scores.line_logprobs()          # natural log of each line's probability
    scores.losses                   # each token's surprisal, -ln p, in nats

Every token of every line is predicted, the first from the symbol every line follows in
training: <eos> at word level, a newline at char and byte level (what generate starts from).
A line's tokens are its characters (bytes) with its newline, or its words and an <eos>.
The totals are those of the evaluation loop (rnnkit/evaluate.py) on the same ids: with
reset "never", eval --batch-size 1 on the text with a newline in front.

Two state policies:
- "per-line": each line is a stream of its own from a zero state. The lines are sorted by
  length and run `batch` at a time as parallel streams, padded to the longest of the batch and
  fed `seq_len` steps at a time with the state carried; the padding's losses are dropped. A
  line's score does not depend on the others.
- "never": the lines are one stream, the state carried from each line into the next, fed
  `seq_len` steps at a time (as eval with one stream).
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import RnnkitError
from rnnkit.evaluate import report
from rnnkit.runtime import Runtime

RESETS = ("per-line", "never")
LN10 = math.log(10)
PAD_TO = 8      # a batch's last chunk is padded to a multiple of this: fewer buffer shapes


class ScoreError(RnnkitError, ValueError):
    """The text cannot be scored (one line)."""


@dataclass
class Scores:
    ids: np.ndarray        # every scored token, the lines one after the other
    losses: np.ndarray     # each token's -ln p in nats (float64), as ids
    ends: np.ndarray       # line i is ids[ends[i - 1]:ends[i]]
    dropped: int = 0       # unknown symbols left out or replaced
    symbol: str = None     # their replacement
    seconds: float = 0.0

    @property
    def starts(self):
        return np.concatenate([[0], self.ends[:-1]]).astype(np.int64)

    def line_tokens(self):
        return self.ends - self.starts

    def line_logprobs(self):
        """Natural log of each line's probability: minus the sum of its tokens' losses."""
        sums = np.zeros(len(self.ends))
        starts = self.starts
        full = self.ends > starts
        if full.any():      # reduceat over the non-empty lines; empty ones lie in between
            sums[full] = np.add.reduceat(self.losses, starts[full])
        return -sums

    def total(self):
        """report() of all the tokens: loss, perplexity, bits_per_token, tokens."""
        return report(float(self.losses.sum()), len(self.losses))


def score_text(model, codec, text, reset="per-line", batch=32, seq_len=50, unknown="error",
               where="the text", progress=None):
    """Scores of each line of `text` (str, or bytes for a byte-level model). `unknown`: what
    to do with symbols the vocabulary lacks (rnnkit/textcodec.py); `progress(tokens)` is
    called after each batch."""
    if reset not in RESETS:
        raise ScoreError(f"reset must be one of {', '.join(RESETS)}, not {reset!r}")
    if batch < 1 or seq_len < 1:
        raise ScoreError("batch and seq_len must be at least 1")
    ids, ends, dropped, symbol = codec.encode_lines(text, unknown, where)
    started = time.perf_counter()
    run = score_per_line if reset == "per-line" else score_one_stream
    losses = run(model, ids, ends, codec.start_id(), batch, seq_len, progress)
    return Scores(ids, losses, ends, dropped, symbol, time.perf_counter() - started)


def score_one_stream(model, ids, ends, start, batch, seq_len, progress=None):
    """Losses of ids read as one stream after `start`, the state never reset."""
    losses = np.zeros(len(ids))
    if not len(ids):
        return losses
    x = np.concatenate([[start], ids[:-1]]).astype(np.int32)[None, :]
    y = ids.astype(np.int32)[None, :]
    state = model.init_state(1)
    runtime = Runtime(model.backend)
    runtime.begin()
    for t in range(0, len(ids), seq_len):
        began = time.perf_counter()
        out, state = model.evaluate_tokens(x[:, t:t + seq_len], y[:, t:t + seq_len], state)
        losses[t:t + seq_len] = out[0]
        runtime.observe(out.size, time.perf_counter() - began)
        if progress is not None:
            progress(out.size)
    return losses


def score_per_line(model, ids, ends, start, batch, seq_len, progress=None):
    """Losses of each line as a stream of its own from a zero state, `batch` lines at once."""
    losses = np.zeros(len(ids))
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    lengths = ends - starts
    order = np.argsort(-lengths, kind="stable")     # longest first: a batch too big fails early
    order = order[lengths[order] > 0]
    runtime = Runtime(model.backend)
    runtime.begin()
    for k in range(0, len(order), batch):
        rows = order[k:k + batch]
        longest = int(lengths[rows[0]])
        full, rest = divmod(longest, seq_len)           # the last chunk padded to PAD_TO
        width = full * seq_len + (min(seq_len, -(-rest // PAD_TO) * PAD_TO) if rest else 0)
        x = np.zeros((len(rows), width), np.int32)      # padding: id 0, its loss dropped
        y = np.zeros((len(rows), width), np.int32)
        x[:, 0] = start
        for r, line in enumerate(rows):
            seg = ids[starts[line]:ends[line]]
            y[r, :len(seg)] = seg
            x[r, 1:len(seg)] = seg[:-1]
        state = model.init_state(len(rows))
        for t in range(0, width, seq_len):
            began = time.perf_counter()
            out, state = model.evaluate_tokens(x[:, t:t + seq_len], y[:, t:t + seq_len], state)
            runtime.observe(out.size, time.perf_counter() - began)
            done = 0
            for r, line in enumerate(rows):
                n = min(int(lengths[line]) - t, out.shape[1])
                if n <= 0:
                    break                               # rows are sorted longest first
                at = starts[line] + t
                losses[at:at + n] = out[r, :n]
                done += n
            if progress is not None:
                progress(done)
    return losses


def log10(logprob):
    """A natural log-probability as log10, as rnnlm prints it."""
    return logprob / LN10
