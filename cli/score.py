"""`rnnkit score`: the log-probability of each line of a text, one line out per line in."""
import json
import math
import sys

import click

from rnnkit.cli.options import placement, text_encoding, unknown_applies
from rnnkit.tools.score import BATCH, RESETS
from rnnkit.corpus.textcodec import UNKNOWN


@click.command("score")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("text", required=False, default="-", type=click.Path(exists=True,
                dir_okay=False, allow_dash=True))
@click.option("--reset-state", "reset", type=click.Choice(RESETS), default="per-line",
              show_default=True, help="per-line: each line from a zero state (a line's score "
              "is its own); never: the state carried from line to line (one stream).")
@click.option("--per-token", is_flag=True,
              help="Write JSON lines with each token and its surprisal instead.")
@click.option("--unknown", type=click.Choice(UNKNOWN), default="error",
              show_default="error; word level: <unk>",
              help="Characters (bytes) that the vocabulary lacks: stop and name the first, "
                   "leave them out, or replace them by a known one. Word level: unknown "
                   "words are <unk> (replace, the default) or left out (skip).")
@click.option("--encoding", default=None, callback=text_encoding,
              help="Encoding of TEXT.  [default: the corpus's]")
@click.option("--batch-size", type=click.IntRange(1), default=BATCH, show_default=True,
              help="per-line: lines scored at once as parallel streams.")
@click.option("--seq-len", type=click.IntRange(0), default=0, show_default=True,
              help="Steps per batch (0: the training seq-len).")
@placement
@click.option("-q", "--quiet", is_flag=True, help="No summary and no notes on stderr.")
def command(checkpoint, text, reset, per_token, unknown, encoding, batch_size, seq_len, device,
            threads, quiet):
    """Score each line of TEXT (a file, or - for standard input, the default) with
    CHECKPOINT: one line out per line in, with its log-probability (natural log), the same
    as log10 (rnnlm's), its token count and perplexity, separated by tabs; a summary on
    stderr. Every token of a line is predicted, the first from a line break (word level:
    <eos>), and a line's tokens include its newline (word level: its <eos>). Standard input
    is scored as it comes: each line's result is written as soon as the line has been read
    and scored, so a program can write a line and read its score.

    --per-token writes a JSON object per line instead: line, logprob, log10prob, tokens,
    ppl, token_text and surprisal (each token's -ln p, in nats).

    \b
    rnnkit score runs/ptb/best.h5 sentences.txt > scores.tsv
    cat sentences.txt | rnnkit score runs/ptb/best.h5 --per-token > tokens.jsonl
    """
    from rnnkit.training.evaluate import report
    from rnnkit.api import load
    from rnnkit.tools.load import compiling_note

    lm = load(checkpoint, device=device, threads=threads)
    codec = lm.codec
    unknown_applies(codec.level, unknown)
    if not quiet and (note := compiling_note(lm.model)):
        click.echo(note, err=True)
    where = "standard input" if text == "-" else text
    scorer = lm.scorer(reset, batch_size, seq_len, unknown, where)
    lines = tokens = dropped = unks = 0
    loss = seconds = 0.0
    symbol = None
    for piece in _pieces(text, codec.level, encoding or codec.encoding):
        first = scorer.lines + 1
        scores = scorer.score(piece)
        for row in _rows(scores, first, per_token, codec.tokens):
            sys.stdout.write(row)   # line by line: one huge write can lose a closed pipe's EPIPE
        sys.stdout.flush()
        lines, tokens = lines + len(scores.ends), tokens + len(scores.ids)
        loss, seconds = loss + float(scores.losses.sum()), seconds + scores.seconds
        dropped, symbol = dropped + scores.dropped, scores.symbol or symbol
        if codec.vocabulary.unk_id is not None:
            unks += int((scores.ids == codec.vocabulary.unk_id).sum())
    if quiet:
        return
    if dropped:
        what = "left out" if symbol is None else f"replaced by {symbol!r}"
        unit = "words" if codec.level == "word" else "symbols"
        click.echo(f"note: {dropped:,} {unit} of {where} that the vocabulary lacks "
                   f"were {what}", err=True)
    from rnnkit.metrics import show_perplexity
    from rnnkit.tools.score import log10

    if not tokens:
        click.echo(f"{lines:,} lines, 0 tokens: nothing to score", err=True)
        return
    total = report(loss, tokens)
    speed = tokens / max(seconds, 1e-9)
    unk = f" ({unks:,} <unk>)" if codec.vocabulary.unk_id is not None else ""
    click.echo(f"{lines:,} lines, {tokens:,} tokens{unk}: logprob {-loss:.4f} "
               f"(log10 {log10(-loss):.4f}), {total['loss']:.6f} nats/token, perplexity "
               f"{show_perplexity(total['perplexity'])}, {total['bits_per_token']:.4f} "
               f"bits/token; {seconds:.2f} s, {speed:,.0f} tokens/s", err=True)


def _pieces(text, level, encoding):
    """The text to score: a file whole; standard input in pieces of whole lines as they come
    (all at once where it is not a file descriptor, as in tests)."""
    from rnnkit.corpus.textcodec import decode_text, read_lines, read_text

    if text != "-":
        yield read_text(text, level, encoding)
        return
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        yield decode_text(sys.stdin.buffer.read(), level, encoding, "standard input")
        return
    yield from read_lines(fd, level, encoding, "standard input")


def _rows(scores, first, per_token, tokens):
    """The output lines of `scores`, the first being line `first` of the input."""
    from rnnkit.tools.score import log10

    logprobs, counts = scores.line_logprobs().tolist(), scores.line_tokens().tolist()
    if not per_token:
        for lp, n in zip(logprobs, counts):
            yield f"{lp:.6f}\t{log10(lp):.6f}\t{n}\t{_ppl_text(lp, n)}\n"
        return
    for i, (lp, n, a, b) in enumerate(zip(logprobs, counts, scores.starts, scores.ends)):
        yield json.dumps({
            "line": first + i, "logprob": round(lp, 6), "log10prob": round(log10(lp), 6),
            "tokens": n, "ppl": _ppl(lp, n, None, None),
            "token_text": [tokens[t] for t in scores.ids[a:b].tolist()],
            "surprisal": [round(v, 6) for v in scores.losses[a:b].tolist()]},
            ensure_ascii=False) + "\n"


def _ppl(logprob, tokens, empty, huge):
    """A line's perplexity, exp(-logprob / tokens), rounded; `empty` for a line of no tokens
    and `huge` where exp overflows."""
    if not tokens:
        return empty
    value = -logprob / tokens
    return round(math.exp(value), 4) if value < 700 else huge


def _ppl_text(logprob, tokens):
    value = _ppl(logprob, tokens, "nan", "inf")
    return value if isinstance(value, str) else f"{value:.4f}"
