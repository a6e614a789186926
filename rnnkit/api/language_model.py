"""A trained model for use from Python; `rnnkit.load(path)` makes one (docs/api.md).

    lm = rnnkit.load("runs/x/best.h5")
    lm.generate("ROMEO:", 200, temperature=0.8, seed=1)     # as rnnkit generate
    lm.generate("ROMEO:", 50, beam=8)                       # the most likely text
    lm.score(["the cat sat", "sat cat the"])                # as rnnkit score: ln p per line
    tokens, nats = lm.surprisal("the cat sat")              # -ln p of each token
    s = lm.stream()
    p = s.feed("t")                                         # p(next token | "t")

`rnnkit generate` streams the pieces of LanguageModel.pieces (or the hypotheses of
LanguageModel.beam_search) and `rnnkit score` writes the Scores of LanguageModel.scorer: the
commands and this class run the same code.
"""
from __future__ import annotations

import functools
import numbers
import random
import threading
from typing import Iterable, Iterator, Sequence

import numpy as np

from rnnkit.errors import ArgumentError, ArgumentTypeError, check_count, check_flag
from rnnkit.tools import generate as sampler
from rnnkit.tools.beam import Hypothesis, beam_search, decode_prime
from rnnkit.tools.generate import check_options, prime_state, start_tokens
from rnnkit.tools.limits import SEED_LIMIT
from rnnkit.tools.load import load_model
from rnnkit.training.runtime import Runtime
from rnnkit.backends.sampling import probabilities
from rnnkit.tools.score import BATCH, Scorer, Scores


def fresh_seed() -> int:
    """A seed for a run that was given none (rnnkit generate prints it)."""
    return random.SystemRandom().randrange(2 ** 32)


def _check_seed(seed):
    """None, an int in [0, 2^32), or a list of such ints (numpy's seed sequence: the command
    draws sample n from [seed, n])."""
    parts = seed if isinstance(seed, (list, tuple)) else [seed]
    if seed is None or parts and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and 0 <= s < SEED_LIMIT
            for s in parts):
        return
    raise ArgumentError(f"seed must be an int in [0, 2^32) (or None: a fresh one), not "
                        f"{seed!r}")


def _one_at_a_time(method):
    """The model's buffers serve one call at a time: threads that share a LanguageModel take
    turns (each call, or each piece of a sample)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return locked


def _stops(stop):
    if isinstance(stop, str):
        return (stop,)
    try:
        return tuple(stop or ())
    except TypeError:
        raise ArgumentTypeError(f"stop must be a str or a list of str, not "
                                f"{type(stop).__name__}") from None


class LanguageModel:
    """A model, its vocabulary and its checkpoint's settings."""

    def __init__(self, model, codec, checkpoint, path=None):
        self.model, self.codec, self.checkpoint, self.path = model, codec, checkpoint, path
        self.last_seed = None           # the seed of the last sample drawn without one given
        self.lock = threading.RLock()   # _one_at_a_time

    def __getstate__(self):             # copy, deepcopy, pickle: a lock of its own
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.RLock()

    @classmethod
    def open(cls, path, device="cpu", threads=None):
        model, codec, ck = load_model(path, device=device, threads=threads)
        return cls(model, codec, ck, str(path))

    def __repr__(self):
        cfg = self.model.cfg
        return (f"<LanguageModel {self.path}: {cfg.cell} {cfg.layers}x{cfg.hidden}, "
                f"{self.level} level, {len(self.vocab)} tokens, {self.model.backend.name}>")

    @property
    def vocab(self) -> list[str]:
        """The tokens in id order (a byte-level token is its latin-1 character, a bpe token
        the tokenizer's string: "Ġthe" is " the")."""
        return list(self.codec.tokens)

    @property
    def level(self) -> str:
        return self.codec.level

    @property
    def config(self) -> dict:
        """The training config stored in the checkpoint, as {section: {key: value}}."""
        return self.checkpoint.config

    # -- text and ids ------------------------------------------------------------------------
    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """Token ids (int64) of `text`; unknown: what to do with characters (bytes) the
        vocabulary lacks: "error", "skip" or "replace" (words: <unk>)."""
        return self.codec.encode(text, unknown)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.codec.decode(ids)

    # -- generating --------------------------------------------------------------------------
    def pieces(self, prime: str = "", length: int = 200, *, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, greedy: bool = False,
               seed: int | Sequence[int] | None = None, stop: str | Iterable[str] = (),
               until_eos: bool = False, unknown: str = "error",
               echo: bool = True) -> Iterator[str]:
        """One sample's text piece by piece as it is made: the prime (if `echo`), then up to
        `length` tokens (rnnkit/tools/generate.py). What rnnkit generate streams. seed None:
        a fresh one, kept in last_seed (pieces(seed=lm.last_seed) replays it); a list [seed,
        n] is what generate draws its sample n from."""
        _check_seed(seed)
        for name, value in (("greedy", greedy), ("until_eos", until_eos), ("echo", echo)):
            check_flag(name, value)
        if seed is None:
            seed = self.last_seed = fresh_seed()
        pieces = sampler.generate(self.model, self.codec, length, prime, temperature, top_k,
                                  top_p, greedy, seed=seed, unknown=unknown, stop=_stops(stop),
                                  until_eos=until_eos, echo=echo)
        return self._taking_turns(pieces)

    def _taking_turns(self, pieces):
        while True:
            with self.lock:
                piece = next(pieces, None)
            if piece is None:
                return
            yield piece

    def generate(self, prime: str = "", length: int = 200, *, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, greedy: bool = False,
                 seed: int | None = None, stop: str | Iterable[str] = (),
                 until_eos: bool = False, unknown: str = "error", num_samples: int = 1,
                 beam: int = 0, length_penalty: float = 0.0,
                 echo: bool = False) -> str | list[str]:
        """The text after `prime` (with it if `echo`): a str, or a list of `num_samples`.

        Sampling (beam 0): temperature, then top_k, then top_p; greedy takes the argmax;
        sample n draws from seed [seed, n], so `seed=3` gives what `rnnkit generate --seed 3`
        prints. beam K: beam search for the most likely texts (beam_search). stop: a string
        or several that end the text (included); until_eos: word level, end at a line's end.
        """
        check_options(temperature, top_k, top_p, length, num_samples, _stops(stop))
        if beam and (temperature != 1.0 or top_k or top_p != 1.0 or greedy or
                     seed is not None):
            raise ArgumentError("beam search looks for the most likely text: temperature, "
                                "top_k, top_p, greedy and seed (sampling) do not apply")
        if length_penalty and not beam:
            raise ArgumentError("length_penalty ranks the hypotheses of beam search: give beam")
        if seed is not None and isinstance(seed, (list, tuple)):
            raise ArgumentError(f"seed must be an int in [0, 2^32) (or None: a fresh one), not "
                                f"{seed!r}")
        _check_seed(seed)
        for name, value in (("greedy", greedy), ("until_eos", until_eos), ("echo", echo)):
            check_flag(name, value)
        if greedy and (temperature != 1.0 or top_k or top_p != 1.0):
            raise ArgumentError("greedy takes the most likely token each step: temperature, "
                                "top_k and top_p (sampling) do not apply")
        if beam:
            texts = [h.text for h in self.beam_search(
                prime, length, beam, length_penalty=length_penalty, stop=stop,
                until_eos=until_eos, unknown=unknown, num_samples=num_samples)]
            if echo:
                texts = [self.prime_text(prime, unknown) + t for t in texts]
        else:
            seed = fresh_seed() if seed is None else seed
            self.last_seed = seed       # a fresh one too: what replays these samples
            texts = ["".join(self.pieces(prime, length, temperature=temperature, top_k=top_k,
                                         top_p=top_p, greedy=greedy, seed=[seed, n],
                                         stop=stop, until_eos=until_eos, unknown=unknown,
                                         echo=echo))
                     for n in range(num_samples)]
        return texts[0] if num_samples == 1 else texts

    @_one_at_a_time
    def beam_search(self, prime: str = "", length: int = 200, beam: int = 4, *,
                    length_penalty: float = 0.0, stop: str | Iterable[str] = (),
                    until_eos: bool = False, unknown: str = "error",
                    num_samples: int | None = None) -> list[Hypothesis]:
        """The `num_samples` (default: all `beam`) most likely continuations of `prime`, best
        first, as Hypothesis(text, logprob, score, ids); score is logprob divided by GNMT's
        length penalty ((5 + tokens) / 6) ** length_penalty (rnnkit/tools/beam.py)."""
        return beam_search(self.model, self.codec, prime, length, beam, length_penalty,
                           _stops(stop), until_eos, unknown, num_samples)

    @_one_at_a_time
    def prime_text(self, prime: str, unknown: str = "error") -> str:
        """The prime as generate echoes it: its tokens decoded."""
        ids, given = start_tokens(self.codec, prime, unknown)
        return decode_prime(self.codec, ids[1:])[0] if given else ""

    # -- scoring -----------------------------------------------------------------------------
    def scorer(self, reset: str = "per-line", batch_size: int = BATCH, seq_len: int = 0,
               unknown: str = "error", where: str = "the text") -> Scorer:
        """A Scorer (rnnkit/tools/score.py) for a text that comes in pieces of whole lines: each
        call of its score(piece) gives the Scores of that piece's lines as scores() would
        within the whole text (reset "never": the state carried from piece to piece). What
        rnnkit score runs on standard input as it arrives."""
        check_count("batch_size", batch_size, 1)
        check_count("seq_len", seq_len, 0)
        seq_len = seq_len or self.checkpoint.config["data"]["seq_len"]
        return Scorer(self.model, self.codec, reset, batch_size, seq_len, unknown, where)

    @_one_at_a_time
    def scores(self, text: str, reset: str = "per-line", batch_size: int = BATCH,
               seq_len: int = 0, unknown: str = "error", where: str = "the text",
               progress=None) -> Scores:
        """Scores (rnnkit/tools/score.py) of each line of `text`: what rnnkit score writes. reset:
        "per-line" (each line from a zero state) or "never" (one stream); seq_len 0: the
        training seq_len."""
        return self.scorer(reset, batch_size, seq_len, unknown, where).score(text, progress)

    def score(self, lines: str | Iterable[str], reset: str = "per-line", batch_size: int = BATCH,
              unknown: str = "error") -> np.ndarray:
        """The natural log-probability of each line (a list of lines, or a text of lines), its
        newline (word level: <eos>) included, as the first column of rnnkit score: each line
        of a list has its newline; a text's last line only where the text ends with one (at
        char and byte level; word level ends every line with <eos>)."""
        return self.scores(_lines_text(lines), reset, batch_size, unknown=unknown
                           ).line_logprobs()

    @_one_at_a_time
    def surprisal(self, text: str | Iterable[str], reset: str = "never",
                  unknown: str = "error") -> tuple[list[str], np.ndarray]:
        """(tokens, surprisal): each token of `text` and its -ln p in nats (divide by ln 2 for
        bits), the state carried across lines unless reset is "per-line". The first token is
        predicted from a line break (word level: <eos>), and each line's newline (<eos>) is a
        token, as in rnnkit score --per-token."""
        scores = self.scores(_lines_text(text), reset, unknown=unknown)
        tokens = self.codec.tokens
        return [tokens[i] for i in scores.ids.tolist()], scores.losses

    @_one_at_a_time
    def stream(self, prime: str = "", unknown: str = "error") -> Stream:
        """A Stream: feed it tokens one at a time, read the next token's probabilities."""
        return Stream(self, prime, unknown)


def _lines_text(lines):
    if isinstance(lines, (str, bytes)):
        return lines
    try:
        lines = list(lines)
    except TypeError:
        raise ArgumentTypeError(f"lines must be a str or a list of str, not "
                                f"{type(lines).__name__}") from None
    if any(not isinstance(line, str) for line in lines):
        raise ArgumentTypeError("lines must be a str or a list of str")
    bad = next((i for i, line in enumerate(lines) if "\n" in line), None)
    if bad is not None:
        raise ArgumentError(f"line {bad + 1} holds a newline; give a list of single lines, or "
                            f"one text")
    return "".join(line + "\n" for line in lines)


class Stream:
    """The model reading one token at a time: `probs` is the distribution of the next token.

        s = lm.stream()                 # after a line break (word level: <eos>), as score
        p = s.feed("T")                 # a token (or its id): p[i] = p(token i | "T")
        p = s.feed_text("he")           # several at once
        s.copy()                        # a stream that goes on from here on its own
    """

    def __init__(self, lm, prime="", unknown="error"):
        self.lm, self.unknown = lm, unknown
        ids = np.array([lm.codec.start_id()] + lm.encode(prime, unknown).tolist())
        self.state = prime_state(lm.model, ids, Runtime(lm.model.backend))
        self.ids = ids[:-1].tolist()    # the tokens fed, the start symbol first
        self._feed(ids[-1:].tolist())

    def feed(self, token: str | int) -> np.ndarray:
        """Feed one token (a vocabulary token, or its id); returns the next one's
        probabilities, float64 (V,)."""
        tokens = self.lm.codec.tokens
        if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
            if not 0 <= token < len(tokens):
                raise ArgumentError(f"token id {token} is not in [0, {len(tokens)})")
            return self._feed([int(token)])
        index = self.lm.codec.vocabulary.index
        if not isinstance(token, str) or token not in index:
            raise ArgumentError(f"{token!r} is not a token of the vocabulary (nor an id)")
        return self._feed([index[token]])

    def feed_text(self, text: str) -> np.ndarray:
        """Feed the tokens of `text`; returns the probabilities after its last."""
        return self._feed(self.lm.encode(text, self.unknown).tolist())

    def _feed(self, ids):
        with self.lm.lock:
            return self._feed_locked(ids)

    def _feed_locked(self, ids):
        if not ids:
            return self.probs
        model = self.lm.model
        if len(ids) > 1:            # all but the last in one batch
            self.state = model.advance(np.array([ids[:-1]], np.int32), self.state)
        logits = model.backend.to_host(model.step(np.array(ids[-1:]), self.state))
        self.probs = probabilities(logits)[0]
        self.ids += ids
        return self.probs

    def copy(self) -> Stream:
        other = Stream.__new__(Stream)
        other.lm, other.unknown, other.ids, other.probs = self.lm, self.unknown, \
            list(self.ids), self.probs.copy()
        other.state = self.state.copy()
        return other
