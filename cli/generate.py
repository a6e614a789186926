"""`rnnkit generate`: sample text from a checkpoint, streamed to stdout as it is produced."""
import random
import sys

import click

from rnnkit.textcodec import UNKNOWN


@click.command("generate")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--length", type=click.IntRange(0), default=2000, show_default=True,
              help="Tokens to generate after the prime.")
@click.option("--prime", default="", show_default=True,
              help="Text to start from (echoed first).")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=1.0,
              show_default=True, help="Below 1: safer text; above 1: more varied.")
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Sample only from the k most likely tokens (0: all).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="Sample from the smallest set of tokens whose "
              "probabilities add up to p (1: all).")
@click.option("--greedy", is_flag=True, help="Always take the most likely token.")
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Random seed; the same seed gives the same text.  [default: a fresh one, "
              "printed on stderr]")
@click.option("--num-samples", type=click.IntRange(1), default=1, show_default=True,
              help="Independent samples, one after the other.")
@click.option("--unknown", type=click.Choice(UNKNOWN), default="error", show_default=True,
              help="Prime characters (bytes) that the vocabulary lacks: stop and name the "
                   "first, leave them out, or replace them by a known one.")
def command(checkpoint, length, prime, temperature, top_k, top_p, greedy, seed, num_samples,
            unknown):
    """Generate text from a trained CHECKPOINT (best.h5, latest.h5 or step-N.h5).

    \b
    rnnkit generate runs/char/best.h5 --length 500 --prime "ROMEO:" --temperature 0.8
    rnnkit generate runs/ptb/best.h5 --prime "the market" --top-p 0.9 --seed 1
    """
    from rnnkit.checkpoint import CheckpointError
    from rnnkit.generate import check_options, generate
    from rnnkit.load import load_model
    from rnnkit.textcodec import UnknownSymbol

    try:
        check_options(temperature, top_k, top_p, length, num_samples)
        model, codec, _ = load_model(checkpoint)
        _, dropped, symbol = codec.encode_text(prime, unknown, where="the prime")
        if dropped:                     # a bad prime fails before anything is printed
            what = "left out" if symbol is None else f"replaced by {symbol!r}"
            click.echo(f"note: {dropped} prime symbols not in the vocabulary were {what}",
                       err=True)
        if seed is None:
            seed = random.SystemRandom().randrange(2 ** 32)
            click.echo(f"seed {seed}", err=True)
        for n in range(num_samples):
            if num_samples > 1:
                click.echo(f"--- sample {n + 1} of {num_samples} ---", err=True)
            pieces = generate(model, codec, length, prime, temperature, top_k, top_p, greedy,
                              seed=[seed, n], unknown=unknown)
            for piece in pieces:
                sys.stdout.write(piece)
                sys.stdout.flush()
            click.echo()
    except (CheckpointError, UnknownSymbol, ValueError) as err:
        raise click.ClickException(str(err)) from None
