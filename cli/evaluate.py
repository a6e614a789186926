"""`rnnkit eval`: loss, perplexity and bits per token of a checkpoint on a split or a file."""
import click


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("corpus", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test",
              show_default=True, help="Split of CORPUS to evaluate.")
@click.option("--text", "text", type=click.Path(exists=True, dir_okay=False),
              help="A text file to evaluate instead, tokenized with the checkpoint's vocabulary.")
@click.option("--encoding", default=None, help="Encoding of --text.  [default: the corpus's]")
@click.option("--batch-size", type=click.IntRange(1), default=10, show_default=True,
              help="Parallel streams (fewer: more context per token, slower).")
@click.option("--seq-len", type=click.IntRange(0), default=0, show_default=True,
              help="Steps per batch (0: the training seq-len).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="Threads for the kernels (0: all cores).")
def command(checkpoint, corpus, split, text, encoding, batch_size, seq_len, threads):
    """Evaluate CHECKPOINT on a split of CORPUS or on a text file: loss in nats per token,
    perplexity and bits per token (one line each on stdout, as name value).

    \b
    rnnkit eval runs/char/best.h5 corpus.h5 --split test
    rnnkit eval runs/char/best.h5 --text other.txt
    """
    from rnnkit.checkpoint import CheckpointError
    from rnnkit.evaluate import evaluate_checkpoint
    from rnnkit.threads import set_threads

    if (corpus is None) == (text is None):
        raise click.UsageError("give either CORPUS (with --split) or --text FILE")
    set_threads(threads)
    try:
        result = evaluate_checkpoint(checkpoint, corpus=corpus, split=split, text=text,
                                     batch_size=batch_size, seq_len=seq_len, encoding=encoding)
    except (CheckpointError, ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"source {result['source']}")
    click.echo(f"tokens {result['tokens']}")
    click.echo(f"loss {result['loss']:.6f}")
    click.echo(f"perplexity {result['perplexity']:.4f}")
    click.echo(f"bits_per_token {result['bits_per_token']:.6f}")
    click.echo(f"seconds {result['seconds']:.3f}")
    click.echo(f"tokens_per_s {result['tokens'] / max(result['seconds'], 1e-9):.0f}")
