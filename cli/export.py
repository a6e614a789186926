"""`rnnkit export`: a checkpoint's weights as a safetensors file with PyTorch's names, or the
whole model as an ONNX graph."""
import click


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The file to write; NAME.json beside it gets the vocabulary and settings.")
@click.option("--format", "format_", type=click.Choice(["safetensors", "onnx"]),
              default=None, help="What to write.  [default: onnx for OUTPUT ending in .onnx, "
              "else safetensors]")
@click.option("-f", "--force", is_flag=True, default=False, show_default=True,
              help="Overwrite OUTPUT and its JSON file if they exist.")
def command(checkpoint, output, format_, force):
    """Export CHECKPOINT for other tools, with a JSON file beside it that holds the
    vocabulary, cell, level and encoding.

    safetensors: the weights named as PyTorch's word_language_model names its parameters
    (encoder.weight, rnn.weight_ih_l0, ..., decoder.weight, decoder.bias; nn.LSTM, nn.GRU and
    nn.RNN load them as they are).

    onnx: a standard ONNX graph (Gather, ONNX's LSTM, GRU or RNN, the output projection) from
    tokens (N, T) and the state h0 (and c0 for the LSTM) to the logits and the next state, for
    onnxruntime and other servers; needs pip install 'rnnkit[onnx]'.

    \b
    rnnkit export runs/char/best.h5 -o char.safetensors      # and char.json
    rnnkit import char.safetensors -o char.h5                # and back
    rnnkit export runs/char/best.h5 -o web.onnx              # and web.json
    """
    if format_ is None:
        format_ = "onnx" if output.lower().endswith(".onnx") else "safetensors"
    if format_ == "onnx":
        from rnnkit.tools.onnx_export import export_onnx as export
    else:
        from rnnkit.tools.safetensors import export_checkpoint as export
    weights, meta = export(checkpoint, output, force)
    click.echo(f"wrote {weights} and {meta}", err=True)

command.reports_only = True       # its stdout lines are progress: see cli/main.py
