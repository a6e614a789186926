"""What rnnkit calls the flags and commands of torch-rnn, char-rnn and PyTorch's
word_language_model (../shared/docs/anchors.md): a user who types theirs is told rnnkit's name
instead of a guess by spelling."""

from rnnkit.model.config import flag as key_flag

# their name (dashes as underscores, no leading dash) -> rnnkit's, where rnnkit's differs
FLAGS = {
    "rnn_size": "--hidden", "nhid": "--hidden", "wordvec_size": "--embed", "emsize": "--embed",
    "num_layers": "--layers", "nlayers": "--layers", "model_type": "--cell",
    "seq_length": "--seq-len", "bptt": "--seq-len", "max_epochs": "--epochs",
    "learning_rate": "--lr", "grad_clip": "--clip-value", "clip": "--clip-norm",
    "tied": "--tie-weights", "print_every": "--log-every", "eval_val_every": "--eval-every",
    "learning_rate_decay": "--lr-decay-factor", "start_text": "--prime", "primetext": "--prime",
    "sample": "--greedy (their sample 0; sampling is the default)",
    "checkpoint": "the CHECKPOINT argument", "input_txt": "the input argument",
    "output_h5": "-o",
}
COMMANDS = {"sample": "generate", "sample.lua": "generate", "train.lua": "train",
            "preprocess.py": "preprocess", "main.py": "train"}


def option_hint(name, argv):
    """(the option as typed, what rnnkit calls it) for an option it does not know (`name` as
    click reports it), or None. char-rnn's single dash (-rnn_size) reaches click as -r: the
    word is found in `argv`."""
    if not name.startswith("--"):
        word = next((a for a in argv if a.startswith(name) and not a.startswith("--")
                     and len(a) > 2), None)
        if word is None:
            return None
        key = word.lstrip("-").split("=")[0].replace("-", "_")
        ours = FLAGS.get(key) or key_flag(key)
        return word.split("=")[0], f"rnnkit's flags take two dashes: {ours}"
    key = name.lstrip("-").split("=")[0].replace("-", "_")
    return (name, f"rnnkit calls it {FLAGS[key]}") if key in FLAGS else None
