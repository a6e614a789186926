"""Beam search: the K most likely continuations of a prime, by log-probability.

    from rnnkit.tools.load import load_model
    from rnnkit.tools.beam import beam_search
    model, codec, _ = load_model("runs/x/best.h5")
    for h in beam_search(model, codec, "ROMEO:", length=100, beam=8, num_samples=3):
        print(h.score, h.text)

The K live hypotheses are K streams of one batch: each step feeds each one's last token
(model.step with N = K), adds the log-softmax of its logits to its log-probability, and
keeps the K best of the K * V extensions that have not finished; the state's streams are then
reordered by the extensions' parents (backend.gather_streams). A hypothesis finishes when its
text after the prime contains a `stop` string (cut after it, as generate does), with
`until_eos` after an <eos>, or when it has `length` tokens. Finished hypotheses are ranked by

    score = logprob / lp(|Y|),    lp(n) = ((5 + n) / 6) ** alpha      (GNMT; alpha 0: off)

with |Y| the tokens after the prime. The search ends at `length` tokens, or as soon as K
finished hypotheses score at least what any live one still could: a live one's log-probability
only falls, and lp grows at most to lp(length), so its bound is logprob / lp(length). With
K >= V^length nothing is ever pruned and the search is exact (tests/test_beam.py checks it
against all sequences).
"""
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from rnnkit.errors import ArgumentError, check_number
from rnnkit.tools.generate import (StopStrings, check_options, check_stop, check_until_eos,
                                   prime_state, start_tokens)
from rnnkit.training.runtime import Runtime


@dataclass
class Hypothesis:
    text: str                   # after the prime, cut after a stop string
    logprob: float              # natural log of its probability given the prime
    score: float                # logprob / lp(len(ids))
    ids: list = field(default_factory=list)     # its tokens after the prime


MAX_ALPHA = 10.0       # ((5 + n) / 6) ** alpha stays finite for any length below 1e30


def length_penalty(n, alpha):
    """GNMT's ((5 + n) / 6) ** alpha (Wu et al. 2016); 1 when alpha is 0."""
    return ((5.0 + n) / 6.0) ** alpha


def decode_prime(codec, ids):
    """(the text of the prime's ids, the decoder's state after them), as generate decodes."""
    state, out = codec.start_state(), []
    for i in np.asarray(ids).tolist():
        piece, state = codec.piece(state, i)
        out.append(piece)
    return "".join(out), state


def check_beam(beam, num_samples=1, alpha=0.0):
    check_number("beam", beam, numbers.Integral)
    check_number("num_samples", num_samples, numbers.Integral)
    check_number("length_penalty", alpha)
    if beam < 1:
        raise ArgumentError(f"beam must be at least 1, got {beam}")
    if num_samples > beam:
        raise ArgumentError(f"num-samples ({num_samples}) cannot exceed the beam ({beam}): "
                            f"the search keeps {beam} hypotheses")
    if not 0 <= alpha <= MAX_ALPHA:
        raise ArgumentError(f"length-penalty must be in 0..{MAX_ALPHA:g} (GNMT's is 0.6 to 1; "
                            f"a large one overflows the penalty), got {alpha}")


def log_softmax(logits):
    """(N, V) logits -> float64 log-probabilities."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def beam_search(model, codec, prime="", length=200, beam=4, alpha=0.0, stop=(),
                until_eos=False, unknown="error", num_samples=None):
    """The `num_samples` (default: `beam`) best Hypotheses, best first; alpha: the length
    penalty's exponent (module docstring)."""
    K = beam
    check_number("beam", beam, numbers.Integral)
    num_samples = K if num_samples is None else num_samples
    check_beam(K, num_samples, alpha)
    check_options(length=length, num_samples=num_samples, stop=stop)
    check_until_eos(codec, until_eos)
    check_stop(codec, stop)
    b = model.backend
    ids, _ = start_tokens(codec, prime, unknown)
    _, start = decode_prime(codec, ids)
    if length == 0:
        return [Hypothesis("", 0.0, 0.0, [])]
    runtime = Runtime(b)
    state = prime_state(model, ids, runtime)
    buffers = [model.init_state(K), model.init_state(K)]
    stops = StopStrings(stop)
    eos = codec.vocabulary.eos_id if until_eos else None
    # the live hypotheses, one per stream: log-probability, tokens (a chain of (token, the
    # tokens before): a list copied at each step made a search quadratic in its length),
    # decoder state, stop tail
    live = [(0.0, None, start, "")]
    last = np.array([ids[-1]], np.int64)
    finished = []                       # (score, logprob, tokens), best first, at most K
    runtime.begin()
    for t in range(length):
        began = time.perf_counter()
        logp = log_softmax(b.to_host(model.step(last, state))[:len(live)])
        V = logp.shape[1]
        total = (np.array([h[0] for h in live])[:, None] + logp).ravel()
        lp = length_penalty(t + 1, alpha)
        survivors, parents, ended = [], [], 0
        for c in _ranked(total, 2 * K):
            row, token = divmod(c, V)
            logprob, past, decoded, tail = live[row]
            piece, decoded = codec.piece(decoded, token)
            hit = False
            if stop:
                stops.tail = tail
                hit = stops.cut(piece)[1]
                tail = stops.tail
            if hit or token == eos or t == length - 1:
                finished.append((float(total[c]) / lp, float(total[c]), (token, past)))
                ended += 1
            else:
                survivors.append((float(total[c]), (token, past), decoded, tail))
                parents.append(row)
            if len(survivors) == K or (ended == K and t == length - 1):
                break
        finished = sorted(finished, key=lambda f: -f[0])[:K]     # stable: earlier first
        runtime.observe(len(live), time.perf_counter() - began)
        if not survivors or _settled(finished, K, survivors, length, alpha):
            break
        rows = np.array(parents + [0] * (K - len(parents)), np.int64)
        after = buffers[state is buffers[0]]
        for name in state.arrays:
            b.gather_streams(after.arrays[name], state.arrays[name], rows)
        state, live = after, survivors
        last = np.array([h[1][0] for h in live] + [0] * (K - len(live)), np.int64)
    out = []
    for score, logprob, chain in finished[:num_samples]:
        past = _tokens(chain)
        out.append(Hypothesis(_text(codec, start, past, stop, len(past) == length and (
            not past or past[-1] != eos)), logprob, score, past))
    return out


def _tokens(chain):
    """The tokens of a chain of (token, the chain before), first to last."""
    out = []
    while chain is not None:
        token, chain = chain
        out.append(token)
    return out[::-1]


def _ranked(total, first):
    """Indices of `total`, largest first (ties: the lower index first); the `first` ones
    picked without sorting the rest, which most steps never reach."""
    if len(total) <= 4 * first:
        yield from np.argsort(-total, kind="stable").tolist()
        return
    top = np.argpartition(-total, first)[:first]
    top = top[np.lexsort((top, -total[top]))]
    yield from top.tolist()
    rest = np.ones(len(total), bool)
    rest[top] = False
    rest = np.flatnonzero(rest)
    yield from rest[np.argsort(-total[rest], kind="stable")].tolist()


def _settled(finished, K, live, length, alpha):
    """Whether K finished hypotheses score at least what any live one still can."""
    if len(finished) < K:
        return False
    best = max(h[0] for h in live) / length_penalty(length, alpha)
    return best <= finished[K - 1][0]


def _text(codec, start, ids, stop, flush):
    """The text of tokens `ids` after a prime that left the decoder at `start`, as generate
    writes it: cut after a stop string; with flush (the length was reached) what the decoder
    holds back too."""
    stops, out, state = StopStrings(stop), [], start
    for i in ids:
        piece, state = codec.piece(state, i)
        if stop and piece:
            piece, hit = stops.cut(piece)
            if hit:
                return "".join(out) + piece
        out.append(piece)
    if flush:
        out.append(codec.piece(state, None)[0])
    return "".join(out)
