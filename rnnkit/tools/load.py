"""A trained model from a checkpoint, for generate, eval and score: no optimizer, no schedule.

    from rnnkit.tools.load import load_model
    model, codec, ck = load_model("runs/x/best.h5")                  # on the CPU
    model, codec, ck = load_model("runs/x/best.h5", device="cuda")
"""
from rnnkit.backends import get_backend
from rnnkit.training.checkpoint import CheckpointError, load
from rnnkit.model.config import ConfigError, TrainConfig
from rnnkit.model.config_file import from_dict
from rnnkit.model.network import Model, WeightsMismatch
from rnnkit.corpus.textcodec import TextCodec


def load_model(path, device="cpu", threads=None, backend=None):
    """(model, codec, checkpoint) from a checkpoint file, the model on `device` (or on
    `backend`). Raises CheckpointError (one line) for a file that is not a usable
    checkpoint."""
    ck = load(path, weights_only=True)
    if ck.vocab is None:
        raise CheckpointError(f"{path}: the checkpoint has no vocabulary")
    try:
        cfg = from_dict(ck.config, TrainConfig())
        cfg.model.vocab_size = len(ck.vocab)
        cfg.model.check()
    except ConfigError as err:
        raise CheckpointError(f"{path}: the config stored in the checkpoint is not usable: "
                              f"{err}") from None
    backend = backend or get_backend(device, threads)
    model = Model(cfg.model, backend=backend)
    try:
        model.load_weights(ck.weights)
    except WeightsMismatch as err:
        raise CheckpointError(f"{path}: parameter {err.name!r} is missing or has the wrong "
                              f"shape for the stored model config") from None
    return model, TextCodec(ck.vocab, ck.encoding), ck


def compiling_note(model, sampling=False):
    """A line for the user before a model's first run on a cold kernel cache, which compiles
    for seconds in silence otherwise (as train says); None when its kernels are cached.
    `sampling`: the kernels that generate runs (else those of eval and score)."""
    from rnnkit.training.runtime import Runtime, kept

    if not Runtime(model.backend).compiling(model, sampling):
        return None
    return (f"compiling the {model.cell.name} kernels for {model.backend.compiles_for()}: the "
            f"first run waits for it; {kept()}")
