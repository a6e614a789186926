"""Sampling text from a trained model, one token at a time.

    from rnnkit.tools.load import load_model
    from rnnkit.tools.generate import generate
    model, codec, _ = load_model("runs/x/best.h5")
    for piece in generate(model, codec, length=200, prime="ROMEO:", seed=1):
        print(piece, end="", flush=True)

The prime is run through the model in one batch; then each step feeds the last token (a forward
with T = 1), turns the logits into probabilities (temperature, then top-k, then top-p:
rnnkit/backends/sampling.py) and draws the next token on the model's backend, with its RNG seeded
from `seed`: the same seed gives the same text. It stops after `length` tokens, or sooner: once
the text produced after the prime contains one of the `stop` strings (the text ends with it),
or, with `until_eos` at word level, after an <eos> (the text ends with the line).
"""
import numbers
import time

import numpy as np

from rnnkit.errors import ArgumentError, ArgumentTypeError, check_number
from rnnkit.tools.limits import MAX_LENGTH, MIN_TEMPERATURE
from rnnkit.training.runtime import Runtime


def check_options(temperature=1.0, top_k=0, top_p=1.0, length=1, num_samples=1, stop=()):
    """ArgumentError (or ArgumentTypeError) naming the first option that cannot be used."""
    for name, value, kind in (("temperature", temperature, numbers.Real),
                              ("top_k", top_k, numbers.Integral),
                              ("top_p", top_p, numbers.Real), ("length", length, numbers.Integral),
                              ("num_samples", num_samples, numbers.Integral)):
        check_number(name, value, kind)
    if not temperature >= MIN_TEMPERATURE:
        raise ArgumentError(f"temperature must be at least {MIN_TEMPERATURE:g} (use greedy for "
                            f"argmax), got {temperature}")
    if top_k < 0:
        raise ArgumentError(f"top-k must be >= 0 (0 is off), got {top_k}")
    if not 0 < top_p <= 1:
        raise ArgumentError(f"top-p must be in (0, 1] (1 is off), got {top_p}")
    if length < 0 or num_samples < 1:
        raise ArgumentError("length must be >= 0 and num-samples >= 1")
    if length > MAX_LENGTH:
        raise ArgumentError(f"length must be at most {MAX_LENGTH:,}, got {length:,}")
    if any(not isinstance(s, str) for s in stop):
        raise ArgumentTypeError("a stop string must be a str")
    if any(not s for s in stop):
        raise ArgumentError("a stop string must not be empty")


def check_until_eos(codec, until_eos):
    if until_eos and codec.vocabulary.eos_id is None:
        raise ArgumentError(f"--until-eos needs a word-level model with <eos> (this one is "
                         f"{codec.level} level); use --stop, e.g. --stop $'\\n'")


def check_stop(codec, stop):
    """A stop string with a symbol that no token can write would never match: ValueError
    naming the first such symbol."""
    if not stop:
        return
    writable = _writable(codec)
    for s in stop:
        if codec.level == "word" and "<eos>" in s:
            raise ArgumentError(f"--stop {s!r} can never match: the text shows <eos> as a line "
                                f"break (use --until-eos, or --stop $'\\n')")
        bad = next((c for c in s if not writable(c)), None)
        if bad is not None:
            raise ArgumentError(f"--stop {s!r} can never match: the model's vocabulary cannot "
                             f"write {bad!r} (U+{ord(bad):04X})")


def _writable(codec):
    """A test of whether some sequence of tokens can write a character (codec.decoder())."""
    tokens = codec.tokens
    if codec.level == "bpe":           # the 256 byte values are tokens: it writes anything
        return lambda c: True
    if codec.level == "char":
        return set(tokens).__contains__
    if codec.level == "byte":          # a character's bytes; U+FFFD stands for bad sequences
        known = set(tokens)

        def writable(c):
            if c == "\ufffd":
                return True
            try:
                data = c.encode(codec.encoding)
            except UnicodeEncodeError:
                return False
            return all(chr(b) in known for b in data)

        return writable
    eos = codec.vocabulary.eos_id       # words, a space between them, a newline for <eos>
    chars = {c for i, t in enumerate(tokens) if i != eos for c in t} | {" "}
    if eos is not None:
        chars.add("\n")
    return chars.__contains__


class StopStrings:
    """Cuts streamed text at the end of the first of `stops` to appear in it."""

    def __init__(self, stops):
        self.stops = list(stops)
        self.keep = max(map(len, self.stops), default=1) - 1
        self.tail = ""              # the last keep characters seen: a match may start there

    def cut(self, piece):
        """(the part of `piece` to emit, whether a stop string ended in it)."""
        window = self.tail + piece
        ends = [i + len(s) for s in self.stops for i in [window.find(s)] if i >= 0]
        if ends:
            return piece[:min(ends) - len(self.tail)], True
        self.tail = window[len(window) - self.keep:] if self.keep else ""
        return piece, False


def start_tokens(codec, prime, unknown="error"):
    """(ids to feed before sampling, whether a prime was given): a start symbol (<eos> for
    words, a newline for characters and bytes), then the prime's, so that a sample continues
    the prime as score and a Stream read it (after a line break). A prime symbol the
    vocabulary lacks is treated by `unknown` (rnnkit/corpus/textcodec.py): UnknownSymbol by
    default."""
    start = np.array([codec.start_id()], np.int64)
    if prime:
        ids = codec.encode(prime, unknown, where="the prime")
        if len(ids):
            return np.concatenate([start, np.asarray(ids, np.int64)]), True
    return start, False


def prime_state(model, ids, runtime):
    """The state after all but the last of the prime's `ids` (the last is the first step's
    input), from a zero state: in one batch, or a single id by the sampling step; on a cold
    cache the step's kernels compile meanwhile (runtime.prepare_sampling)."""
    state = model.init_state(1)
    runtime.prepare_sampling(model)
    if len(ids) > 2:                # all but the last prime token in one batch
        state = model.advance(ids[None, :-1].astype(np.int32), state)
    runtime.sampling_ready()
    if len(ids) == 2:               # a batch of one step: the sampling step's kernels
        model.step(ids[:1], state)
    return state


def generate(model, codec, length=200, prime="", temperature=1.0, top_k=0, top_p=1.0,
             greedy=False, seed=None, unknown="error", stop=(), until_eos=False, echo=True):
    """Yield the text of one sample piece by piece: the prime first (unless not `echo`), then
    up to `length` tokens, fewer with `stop` or `until_eos` (module docstring)."""
    check_options(temperature, top_k, top_p, length, stop=stop)
    check_until_eos(codec, until_eos)
    check_stop(codec, stop)
    b = model.backend
    rng = b.rng(seed)
    ids, given = start_tokens(codec, prime, unknown)
    decode = codec.decoder()
    text = "".join([decode(int(i)) for i in ids][1:])  # also sets where the decoder stands
    if given and echo:
        yield text
    runtime = Runtime(b)
    state = prime_state(model, ids, runtime)
    token = int(ids[-1])
    stops = StopStrings(stop) if stop else None
    runtime.begin()
    for _ in range(length):
        started = time.perf_counter()
        logits = model.step(np.array([token]), state)
        token = int(b.sample(logits, rng, temperature, top_k, top_p, greedy)[0])
        runtime.observe(1, time.perf_counter() - started)
        piece = decode(token)
        done = until_eos and token == codec.vocabulary.eos_id
        if stops is not None and piece:
            piece, hit = stops.cut(piece)
            done = done or hit
        if piece:
            yield piece
        if done:
            return
    tail = decode(None)
    if tail:
        yield tail
