"""Sampling text from a trained model, one token at a time.

    from rnnkit.run import load_model
    from rnnkit.generate import generate
    model, codec, _ = load_model("runs/x/best.h5")
    for piece in generate(model, codec, length=200, prime="ROMEO:", seed=1):
        print(piece, end="", flush=True)

The prime is run through the model in one batch; then each step feeds the last token, turns the
logits into probabilities (temperature, then top-k, then top-p), and draws the next token with
a numpy Generator seeded from `seed`: the same seed gives the same text.
"""
import time

import numpy as np

from rnnkit import threads
from rnnkit.tokenize import EOS


def check_options(temperature=1.0, top_k=0, top_p=1.0, length=1, num_samples=1):
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy for argmax), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top-k must be >= 0 (0 is off), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top-p must be in (0, 1] (1 is off), got {top_p}")
    if length < 0 or num_samples < 1:
        raise ValueError("length must be >= 0 and num-samples >= 1")


def probabilities(logits, temperature=1.0, top_k=0, top_p=1.0):
    """(N, V) logits -> (N, V) float64 probabilities after temperature, top-k and top-p.

    top-k keeps the k largest logits (ties at the k-th are all kept); top-p keeps the smallest
    set of most likely tokens whose probabilities sum to at least p (the nucleus).
    """
    z = np.asarray(logits, np.float64) / temperature
    V = z.shape[1]
    if 0 < top_k < V:
        kth = np.partition(z, V - top_k, axis=1)[:, V - top_k:V - top_k + 1]
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if top_p < 1:
        order = np.argsort(-p, axis=1, kind="stable")
        ranked = np.take_along_axis(p, order, axis=1)
        before = np.cumsum(ranked, axis=1) - ranked      # mass of the more likely tokens
        drop = np.zeros_like(p, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=1)
        p = np.where(drop, 0.0, p)
        p /= p.sum(axis=1, keepdims=True)
    return p


def sample(logits, rng, temperature=1.0, top_k=0, top_p=1.0, greedy=False):
    """Next token of each of the N rows of `logits`: argmax when greedy, else a draw."""
    if greedy:
        return np.argmax(logits, axis=1)
    p = probabilities(logits, temperature, top_k, top_p)
    u = rng.random((p.shape[0], 1))
    cdf = np.cumsum(p, axis=1)
    return np.minimum((cdf < u * cdf[:, -1:]).sum(axis=1), p.shape[1] - 1)


def start_tokens(codec, prime, unknown="error"):
    """Ids to feed before sampling: the prime, or a start symbol (<eos> for words, a newline
    for characters and bytes) when there is no prime. A prime symbol the vocabulary lacks is
    treated by `unknown` (rnnkit/textcodec.py): UnknownSymbol by default."""
    if prime:
        ids = codec.encode(prime, unknown, where="the prime")
        if len(ids):
            return ids, True
    index = codec.vocabulary.index
    for symbol in (EOS, "\n"):
        if symbol in index:
            return np.array([index[symbol]], np.int64), False
    return np.array([0], np.int64), False


def generate(model, codec, length=200, prime="", temperature=1.0, top_k=0, top_p=1.0,
             greedy=False, seed=None, unknown="error"):
    """Yield the text of one sample piece by piece: the prime first, then `length` tokens."""
    check_options(temperature, top_k, top_p, length)
    rng = np.random.default_rng(seed)
    ids, echo = start_tokens(codec, prime, unknown)
    decode = codec.decoder()
    if echo:
        yield "".join(decode(int(i)) for i in ids)
    state = model.init_state(1)
    if len(ids) > 1:                # all but the last prime token in one batch
        x = ids[None, :-1].astype(np.int32)
        _, _, state = model.evaluate(x, ids[None, 1:].astype(np.int32), state)
    token = int(ids[-1])
    threads.begin()
    for _ in range(length):
        started = time.perf_counter()
        logits = model.step(np.array([token]), state)
        threads.observe(1, time.perf_counter() - started)
        token = int(sample(logits, rng, temperature, top_k, top_p, greedy)[0])
        piece = decode(token)
        if piece:
            yield piece
    tail = decode(None)
    if tail:
        yield tail
