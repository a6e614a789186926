"""`rnnkit score`: the log-probability of each line of a text under a model.

    from rnnkit.tools.load import load_model
    from rnnkit.tools.score import score_text
    model, codec, _ = load_model("runs/x/best.h5")
    scores = score_text(model, codec, "the cat sat\\nthe dog ran\\n")
    scores.line_logprobs()          # natural log of each line's probability
    scores.losses                   # each token's surprisal, -ln p, in nats

Every token of every line is predicted, the first from the symbol every line follows in
training: <eos> at word level, a newline at char and byte level (what generate starts from).
A line's tokens are its characters (bytes) with its newline, or its words and an <eos>.
The totals are those of the evaluation loop (rnnkit/training/evaluate.py) on the same ids: with
reset "never", eval --batch-size 1 on the text with a newline in front.

Two state policies:
- "per-line": each line is a stream of its own from a zero state. The lines are sorted by
  length and run `batch` at a time as parallel streams, padded to the longest of the batch and
  fed `seq_len` steps at a time with the state carried; the padding's losses are dropped. A
  line's score does not depend on the others. Sorted, a batch's lines differ little in length
  (about 1% padding on Shakespeare's lines), and a batch shorter than the one before runs in
  views of its buffers (Model.workspace), so the kernels run as fast per token as eval's.
- "never": the lines are one stream, the state carried from each line into the next, fed
  `seq_len` steps at a time (as eval with one stream).

Scorer scores a text that comes in pieces (standard input, line by line as it is written).
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import RnnkitError
from rnnkit.training.evaluate import report
from rnnkit.training.runtime import Runtime

RESETS = ("per-line", "never")
BATCH = 32      # per-line: lines scored at once as parallel streams
LN10 = math.log(10)


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


def score_text(model, codec, text, reset="per-line", batch=BATCH, seq_len=50, unknown="error",
               where="the text", progress=None):
    """Scores of each line of `text` (str, or bytes for a byte-level model). `unknown`: what
    to do with symbols the vocabulary lacks (rnnkit/corpus/textcodec.py); `progress(tokens)` is
    called after each batch."""
    return Scorer(model, codec, reset, batch, seq_len, unknown, where).score(text, progress)


class Scorer:
    """Scores a text that comes in pieces of whole lines (standard input as it is written),
    each as score_text would score it within the whole: with reset "never" the state and the
    last token carry over from piece to piece, and messages count lines from the first piece."""

    def __init__(self, model, codec, reset="per-line", batch=BATCH, seq_len=50, unknown="error",
                 where="the text"):
        if reset not in RESETS:
            raise ScoreError(f"reset must be one of {', '.join(RESETS)}, not {reset!r}")
        if batch < 1 or seq_len < 1:
            raise ScoreError("batch and seq_len must be at least 1")
        self.model, self.codec, self.reset, self.batch, self.seq_len = \
            model, codec, reset, batch, seq_len
        self.unknown, self.where = unknown, where
        self.lines = 0                  # lines scored so far
        self.last = codec.start_id()    # "never": the token before the next piece, and the
        self.state = None               # state in which it is read
        self.open = False               # the last piece ended inside a line

    def score(self, text, progress=None):
        """Scores of the lines of `text`, the next piece (`progress`: as score_text's)."""
        text = self.codec.text(text, self.where)
        if self.open and text:
            raise ScoreError(f"{self.where}: the piece before ended inside a line (line "
                             f"{self.lines}); give pieces of whole lines, only the last "
                             f"without its newline")
        ids, ends, dropped, symbol = self.codec.encode_lines(text, self.unknown, self.where,
                                                             self.lines + 1)
        if text:
            self.open = not text.endswith(b"\n" if isinstance(text, bytes) else "\n")
        started = time.perf_counter()
        if self.reset == "per-line":
            losses = score_per_line(self.model, ids, ends, self.codec.start_id(), self.batch,
                                    self.seq_len, progress)
        else:
            losses, self.state = score_one_stream(self.model, ids, ends, self.last, self.batch,
                                                  self.seq_len, progress, self.state)
            self.last = int(ids[-1]) if len(ids) else self.last
        self.lines += len(ends)
        return Scores(ids, losses, ends, dropped, symbol, time.perf_counter() - started)


def score_one_stream(model, ids, ends, start, batch, seq_len, progress=None, state=None):
    """(losses of ids read as one stream after `start`, the state never reset, the state at
    the end). `state`: the state in which `start` is read (None: a zero state)."""
    losses = np.zeros(len(ids))
    if not len(ids):
        return losses, state
    x = np.concatenate([[start], ids[:-1]]).astype(np.int32)[None, :]
    y = ids.astype(np.int32)[None, :]
    state = model.init_state(1) if state is None else state
    runtime = Runtime(model.backend)
    runtime.begin()
    for t in range(0, len(ids), seq_len):
        began = time.perf_counter()
        out, state = model.evaluate_tokens(x[:, t:t + seq_len], y[:, t:t + seq_len], state)
        losses[t:t + seq_len] = out[0]
        runtime.observe(out.size, time.perf_counter() - began)
        if progress is not None:
            progress(out.size)
    return losses, state


def score_per_line(model, ids, ends, start, batch, seq_len, progress=None):
    """Losses of each line as a stream of its own from a zero state, `batch` lines at once."""
    losses = np.zeros(len(ids))
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    lengths = ends - starts
    order = np.argsort(-lengths, kind="stable")     # longest first: a batch too big fails early
    order = order[lengths[order] > 0]
    zero = None
    runtime = Runtime(model.backend)
    runtime.begin()
    for k in range(0, len(order), batch):
        rows = order[k:k + batch]
        width = int(lengths[rows[0]])
        at = starts[rows, None] + np.arange(width)      # (rows, width): each line's positions
        real = np.arange(width) < lengths[rows, None]   # padding: id 0, its loss dropped
        y = np.where(real, ids[np.minimum(at, len(ids) - 1)], 0).astype(np.int32)
        x = np.empty_like(y)
        x[:, 0] = start
        x[:, 1:] = y[:, :-1]
        if zero is None or zero.h.shape[1] != len(rows):
            zero = model.init_state(len(rows))          # read, never written: one will do
        state = zero
        for t in range(0, width, seq_len):
            began = time.perf_counter()
            out, state = model.evaluate_tokens(x[:, t:t + seq_len], y[:, t:t + seq_len], state)
            runtime.observe(out.size, time.perf_counter() - began)
            mine = real[:, t:t + seq_len]
            losses[at[:, t:t + seq_len][mine]] = out[mine]
            if progress is not None:
                progress(int(mine.sum()))
    return losses


def log10(logprob):
    """A natural log-probability as log10, as rnnlm prints it."""
    return logprob / LN10
