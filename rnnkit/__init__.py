"""rnnkit: recurrent neural network language models compiled with Numba.

    import rnnkit
    rnnkit.preprocess("shakespeare.txt", "corpus.h5")
    rnnkit.train("corpus.h5", "runs/x", hidden=256, max_time="30m")
    lm = rnnkit.load("runs/x/best.h5")
    print(lm.generate("ROMEO:", 200, temperature=0.8, seed=1))

docs/api.md is the guide, rnnkit/api/__init__.py the functions. Importing rnnkit is quick: numpy,
h5py and Numba load when first needed.
"""
from rnnkit.api import evaluate, export, import_weights, load, preprocess, resume, train
from rnnkit.version import __version__

__all__ = ["evaluate", "export", "import_weights", "load", "preprocess", "resume", "train",
           "LanguageModel", "Stream", "Hypothesis", "__version__"]

# the classes load's model hands out, for annotations (lm: rnnkit.LanguageModel); imported on
# first use, so that `import rnnkit` stays quick
_CLASSES = {"LanguageModel": "rnnkit.api.language_model", "Stream": "rnnkit.api.language_model",
            "Hypothesis": "rnnkit.tools.beam"}


def __getattr__(name):
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")

