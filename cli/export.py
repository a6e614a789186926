"""`rnnkit export`: a checkpoint's weights as a safetensors file with PyTorch's names."""
import click


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The safetensors file to write; NAME.json beside it gets the vocabulary "
                   "and settings.")
@click.option("-f", "--force", is_flag=True, default=False, show_default=True,
              help="Overwrite OUTPUT and its JSON file if they exist.")
def command(checkpoint, output, force):
    """Export the weights of CHECKPOINT for PyTorch: a safetensors file named as PyTorch's
    word_language_model names its parameters (encoder.weight, rnn.weight_ih_l0, ...,
    decoder.weight, decoder.bias; nn.LSTM, nn.GRU and nn.RNN load them as they are), and a
    JSON file beside it with the vocabulary, cell, level and encoding. Needs the
    safetensors package: pip install 'rnnkit[safetensors]'.

    \b
    rnnkit export runs/char/best.h5 -o char.safetensors      # and char.json
    rnnkit import char.safetensors -o char.h5                # and back
    """
    from rnnkit.exchange import export_checkpoint

    weights, meta = export_checkpoint(checkpoint, output, force)
    click.echo(f"wrote {weights} and {meta}", err=True)
