"""`rnnkit import`: a safetensors file with PyTorch's names as an rnnkit checkpoint."""
import click


@click.command("import")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The checkpoint to write (.h5).")
@click.option("--vocab", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The JSON file with the vocabulary (\"tokens\", \"level\") and settings.  "
                   "[default: WEIGHTS with the suffix .json]")
@click.option("-f", "--force", is_flag=True, default=False, show_default=True,
              help="Overwrite OUTPUT if it exists.")
def command(weights, output, vocab, force):
    """Import WEIGHTS, a safetensors file with PyTorch word_language_model's names (what
    rnnkit export writes), as an rnnkit checkpoint that generate, eval and score use. Biases
    are added (bias_ih + bias_hh; the GRU keeps its n blocks apart). Tensors may be float16,
    bfloat16, float32 or float64.

    \b
    rnnkit import char.safetensors -o char.h5                # reads char.json too
    rnnkit generate char.h5 --length 200
    """
    from rnnkit.tools.safetensors_import import import_safetensors

    cfg = import_safetensors(weights, output, vocab, force)
    click.echo(f"wrote {output}: {cfg.cell} {cfg.layers}x{cfg.hidden}, embed {cfg.embed}, "
               f"{cfg.vocab_size} tokens", err=True)

command.reports_only = True       # its stdout lines are progress: see cli/main.py
