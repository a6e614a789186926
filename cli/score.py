"""`rnnkit score`: the log-probability of each line of a text, one line out per line in."""
import json
import math
import sys

import click

from rnnkit.cli.options import placement
from rnnkit.score import RESETS
from rnnkit.textcodec import UNKNOWN


@click.command("score")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("text", required=False, default="-", type=click.Path(exists=True,
                dir_okay=False, allow_dash=True))
@click.option("--reset-state", "reset", type=click.Choice(RESETS), default="per-line",
              show_default=True, help="per-line: each line from a zero state (a line's score "
              "is its own); never: the state carried from line to line (one stream).")
@click.option("--per-token", is_flag=True,
              help="Write JSON lines with each token and its surprisal instead.")
@click.option("--unknown", type=click.Choice(UNKNOWN), default="error", show_default=True,
              help="Characters (bytes) that the vocabulary lacks: stop and name the first, "
                   "leave them out, or replace them by a known one.")
@click.option("--encoding", default=None, help="Encoding of TEXT.  [default: the corpus's]")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
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
    <eos>), and a line's tokens include its newline (word level: its <eos>).

    --per-token writes a JSON object per line instead: line, logprob, log10prob, tokens,
    ppl, token_text and surprisal (each token's -ln p, in nats).

    \b
    rnnkit score runs/ptb/best.h5 sentences.txt > scores.tsv
    cat sentences.txt | rnnkit score runs/ptb/best.h5 --per-token > tokens.jsonl
    """
    from rnnkit.load import load_model
    from rnnkit.score import log10, score_text
    from rnnkit.textcodec import decode_text, read_text

    model, codec, ck = load_model(checkpoint, device=device, threads=threads)
    if text == "-":
        where = "standard input"
        data = decode_text(sys.stdin.buffer.read(), codec.level,
                           encoding or codec.encoding, where)
    else:
        where = text
        data = read_text(text, codec.level, encoding or codec.encoding)
    scores = score_text(model, codec, data, reset, batch_size,
                        seq_len or ck.config["data"]["seq_len"], unknown, where)
    logprobs, counts = scores.line_logprobs(), scores.line_tokens()
    out = sys.stdout
    if per_token:
        tokens = codec.tokens
        for i, (lp, n, a, b) in enumerate(zip(logprobs, counts, scores.starts, scores.ends)):
            out.write(json.dumps({
                "line": i + 1, "logprob": round(float(lp), 6), "log10prob":
                round(log10(float(lp)), 6), "tokens": int(n),
                "ppl": _ppl(lp, n, None, None),
                "token_text": [tokens[t] for t in scores.ids[a:b].tolist()],
                "surprisal": [round(v, 6) for v in scores.losses[a:b].tolist()]},
                ensure_ascii=False) + "\n")
    else:
        for lp, n in zip(logprobs.tolist(), counts.tolist()):
            out.write(f"{lp:.6f}\t{log10(lp):.6f}\t{n}\t{_ppl_text(lp, n)}\n")
    out.flush()
    if quiet:
        return
    if scores.dropped:
        what = "left out" if scores.symbol is None else f"replaced by {scores.symbol!r}"
        unit = "words" if codec.level == "word" else "symbols"
        click.echo(f"note: {scores.dropped:,} {unit} of {where} that the vocabulary lacks "
                   f"were {what}", err=True)
    from rnnkit.metrics import show_perplexity

    total = scores.total()
    if not total["tokens"]:
        click.echo(f"{len(counts):,} lines, 0 tokens: nothing to score", err=True)
        return
    unk = codec.vocabulary.unk_id
    unk = f" ({int((scores.ids == unk).sum()):,} <unk>)" if unk is not None else ""
    logprob = -float(scores.losses.sum())
    speed = total["tokens"] / max(scores.seconds, 1e-9)
    click.echo(f"{len(counts):,} lines, {total['tokens']:,} tokens{unk}: logprob {logprob:.4f} "
               f"(log10 {log10(logprob):.4f}), {total['loss']:.6f} nats/token, perplexity "
               f"{show_perplexity(total['perplexity'])}, {total['bits_per_token']:.4f} "
               f"bits/token; {scores.seconds:.2f} s, {speed:,.0f} tokens/s", err=True)


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
