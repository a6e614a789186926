"""`rnnkit eval`: a checkpoint on a corpus split or on a text file.

    from rnnkit.tools.eval_checkpoint import evaluate_checkpoint
    evaluate_checkpoint("runs/x/best.h5", corpus="corpus.h5")          # test, else val
    evaluate_checkpoint("runs/x/best.h5", text="other.txt", unknown="skip")
    evaluate_checkpoint("runs/x/best.h5")                              # the run's corpus

A corpus is evaluated on its test split when it has one, else on val (the README's own
example makes corpora without a test split); without a corpus or a text, the one the run
trained on (its path is stored relative to the run folder: rnnkit/training/paths.py). A text file is
read with the checkpoint's encoding unless told otherwise and tokenized with its vocabulary;
characters the vocabulary lacks are an error naming line and column, or left out or replaced
(`unknown`).
"""
import os

from rnnkit.errors import RnnkitError
from rnnkit.training.evaluate import evaluate_ids, scored_tokens


class EvalError(RnnkitError, ValueError):
    """The evaluation cannot run (one line)."""


def pick_split(corpus, split):
    """`split`, or test when present, else val; with the reason for the choice. Never the
    training split unless asked for (a figure on it read as a held-out one)."""
    if split:
        return split, None
    for name in ("test", "val"):
        if name in corpus.splits:
            if name == "test":
                return name, None
            return name, f"{corpus.path} has no test split; evaluating its {name} split"
    raise EvalError(f"{corpus.path} has no test or val split; --split train evaluates on the "
                    f"training text")


def evaluate_checkpoint(path, corpus=None, split=None, text=None, batch_size=10, seq_len=0,
                        encoding=None, unknown="error", progress=None, notes=None,
                        device="cpu", say=None, threads=None):
    """Evaluate checkpoint `path` on a corpus split or a text file, on `device` (cpu, cuda,
    cuda:N); returns report() plus 'source', 'seconds', for a vocabulary with <unk>,
    'unk_tokens' (the <unk> tokens of the text, its unknown words included), and for a text
    of which nothing was left out, 'chars' and 'bits_per_char'.
    `progress(total_tokens)` may return a callable of tokens done; `notes` (a list) gets lines
    for the user; `say(line)` shows one at once (that the kernels compile first). Raises
    RnnkitError (one line) for bad input."""
    from rnnkit.corpus.reader import Corpus
    from rnnkit.tools.load import compiling_note, load_model
    from rnnkit.corpus.textcodec import read_text

    notes = [] if notes is None else notes
    model, codec, ck = load_model(path, device=device, threads=threads)
    if say is not None and (note := compiling_note(model)):
        say(note)
    T = seq_len or ck.config["data"]["seq_len"]
    if corpus is not None and text is not None:
        raise EvalError("give either a corpus (with a split) or a text file")
    chars = None                # the text's characters, when bits per character apply
    if corpus is None and text is None:
        corpus = _run_corpus(path, ck)
        notes.append(f"the run's corpus: {corpus}")
    if corpus is not None:
        with Corpus(corpus) as c:
            if c.vocab != codec.tokens or c.level != codec.level:
                raise EvalError(f"{corpus} has another vocabulary than the checkpoint "
                                f"({c.level}, {c.vocab_size} tokens vs {codec.level}, "
                                f"{len(codec)}); preprocess it with --vocab-from")
            split, note = pick_split(c, split)
            if note:
                notes.append(note)
            try:
                ids = c.tokens(split)
            except ValueError as err:
                raise EvalError(str(err)) from None
        source = f"{corpus} [{split}]"
    else:
        data = read_text(text, codec.level, encoding or codec.encoding)
        # a file, as preprocess reads it: at word level a last line without "\n" ends in <eos>
        whole = data + "\n" if codec.level == "word" and data.rpartition("\n")[2].strip() \
            else data
        name = "standard input" if str(text) == "/dev/stdin" else str(text)  # rnnkit eval -
        ids, dropped, symbol = codec.encode_text(whole, unknown, where=name)
        if dropped:
            what = "left out" if symbol is None else f"replaced by {symbol!r}"
            unit = "words" if codec.level == "word" else "symbols"
            notes.append(f"{dropped:,} {unit} of {name} that the vocabulary lacks were {what}")
        source = name
        if not dropped:
            chars = _characters(data, codec.encoding)
        if chars and codec.level == "word" and not _spelled(whole, codec.decode(ids)):
            chars = None    # a word model sees words and line ends, not the spacing between
            notes.append(f"no bits per character: {name} has spacing the word model does not "
                         f"see (tabs, runs of spaces, spaces at a line's ends, \\r), which "
                         f"would count as characters it predicts for free")
    if len(ids) < 2:
        raise EvalError(f"{source} has {len(ids)} token(s); at least 2 are needed")
    tick = progress(scored_tokens(len(ids), batch_size)) if progress else None
    unk = codec.vocabulary.unk_id
    result = {**evaluate_ids(model, ids, batch_size, T, progress=tick), "source": source,
              **({"unk_tokens": int((ids == unk).sum())} if unk is not None else {})}
    if chars:
        # Bits per character compare vocabularies (char, BPE, word) on one text. The few tokens
        # evaluation leaves unscored (each stream's first, the < N that do not fill the
        # streams) count at the mean.
        result["chars"] = chars
        result["bits_per_char"] = result["bits_per_token"] * len(ids) / chars
    return result


def _spelled(text, decoded):
    """Whether a word model's tokens spell `text` as it is: words one space apart, a newline
    at each line's end (`decoded`, their text), each line also between two spaces as in
    Mikolov's Penn Treebank files."""
    wrapped = "\n".join(f" {line} " if line else line for line in decoded.split("\n"))
    return text in (decoded, wrapped)


def _characters(data, encoding):
    """Characters of a text as read (str; bytes at byte level, decoded with `encoding`), or
    None where bytes do not decode."""
    if isinstance(data, str):
        return len(data)
    try:
        return len(data.decode(encoding))
    except (UnicodeError, LookupError):
        return None


def _run_corpus(path, ck):
    """The corpus checkpoint `path` was trained on, or EvalError."""
    from rnnkit.training.paths import locate

    stored = ck.config.get("data", {}).get("corpus")
    if not stored:
        raise EvalError(f"{path} does not name the corpus it was trained on (an imported "
                        f"checkpoint); give a CORPUS or --text FILE")
    corpus = locate(stored, os.path.dirname(os.path.abspath(path)))
    if not corpus or not os.path.exists(corpus):
        raise EvalError(f"cannot find the corpus {path} was trained on ({stored!r}); give a "
                        f"CORPUS or --text FILE")
    return corpus
