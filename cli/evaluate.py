"""`rnnkit eval`: loss, perplexity and bits per token of a checkpoint on a split or a file."""
import sys

import click

from rnnkit.cli.options import placement, text_encoding, unknown_applies
from rnnkit.corpus.textcodec import UNKNOWN


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("corpus", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="Split of CORPUS to evaluate.  [default: test, else val]")
@click.option("--text", "text", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="A text file to evaluate instead, tokenized with the checkpoint's vocabulary "
                   "(-: standard input).")
@click.option("--encoding", default=None, callback=text_encoding,
              help="Encoding of --text.  [default: the corpus's]")
@click.option("--unknown", type=click.Choice(UNKNOWN), default="error",
              show_default="error; word level: <unk>",
              help="Characters (bytes) of --text that the vocabulary lacks: stop and name the "
                   "first, leave them out, or replace them by a known one. Words: <unk>, or "
                   "left out with skip.")
@click.option("--batch-size", type=click.IntRange(1), default=10, show_default=True,
              help="Parallel streams (fewer: more context per token, slower).")
@click.option("--seq-len", type=click.IntRange(0), default=0, show_default=True,
              help="Steps per batch (0: the training seq-len).")
@placement
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no notes on stderr.")
def command(checkpoint, corpus, split, text, encoding, unknown, batch_size, seq_len, device,
            threads, quiet):
    """Evaluate CHECKPOINT on a split of CORPUS (by default the corpus it was trained on) or
    on a text file: loss in nats per token, perplexity and bits per token (one line each on
    stdout, as name value); on a text file also its characters and bits per character, which
    compare models of different vocabularies (char, BPE, word) on one text (not when symbols
    the vocabulary lacks were left out or replaced, words by <unk> too, nor at word level on
    a text spaced otherwise than by single spaces and newlines).

    \b
    rnnkit eval runs/char/best.h5                           # its corpus: test, else val
    rnnkit eval runs/char/best.h5 corpus.h5 --split val
    rnnkit eval runs/char/best.h5 --text other.txt --unknown skip
    """
    from rnnkit.tools.eval_checkpoint import evaluate_checkpoint
    from rnnkit.backends.threads import set_threads

    if corpus is not None and text is not None:
        raise click.UsageError("give either CORPUS (with --split) or --text FILE")
    text = "/dev/stdin" if text == "-" else text
    if split is not None and text is not None:
        raise click.UsageError("--split chooses a split of a corpus; --text evaluates a whole "
                               "file")
    set_threads(threads)
    notes = []
    bars = []

    def say(line):
        click.echo(line, err=True)

    def progress(total):
        if quiet or not sys.stderr.isatty():
            return None
        bar = click.progressbar(length=total, label="eval", file=sys.stderr, show_eta=True)
        bar.__enter__()
        bars.append(bar)
        return bar.update

    if text is not None:        # an --unknown that the model's level does not do, as score's
        from rnnkit.training.checkpoint import CheckpointError, read_meta
        try:
            unknown_applies(read_meta(checkpoint).get("level"), unknown)
        except CheckpointError:
            pass                # evaluate_checkpoint says what is wrong with it
    try:
        result = evaluate_checkpoint(checkpoint, corpus=corpus, split=split, text=text,
                                     batch_size=batch_size, seq_len=seq_len, encoding=encoding,
                                     unknown=unknown, progress=progress, notes=notes,
                                     device=device, say=None if quiet else say)
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    if not quiet:
        for note in notes:
            click.echo(f"note: {note}", err=True)
    from rnnkit.metrics import show_perplexity

    ppl = result["perplexity"]
    click.echo(f"source {result['source']}")
    click.echo(f"tokens {result['tokens']}")
    if "unk_tokens" in result:
        click.echo(f"unk_tokens {result['unk_tokens']}")
    click.echo(f"loss {result['loss']:.6f}")
    click.echo(f"perplexity {ppl:.4f}" if ppl < 1e5 else f"perplexity {show_perplexity(ppl)}")
    click.echo(f"bits_per_token {result['bits_per_token']:.6f}")
    if "bits_per_char" in result:
        click.echo(f"chars {result['chars']}")
        click.echo(f"bits_per_char {result['bits_per_char']:.6f}")
    click.echo(f"seconds {result['seconds']:.3f}")
    click.echo(f"tokens_per_s {result['tokens'] / max(result['seconds'], 1e-9):.0f}")
