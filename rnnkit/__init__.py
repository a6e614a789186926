"""rnnkit: recurrent neural network language models compiled with Numba.

    import rnnkit
    rnnkit.preprocess("shakespeare.txt", "corpus.h5")
    rnnkit.train("corpus.h5", "runs/x", hidden=256, max_time="30m")
    lm = rnnkit.load("runs/x/best.h5")
    print(lm.generate("ROMEO:", 200, temperature=0.8, seed=1))

docs/api.md is the guide, rnnkit/api.py the functions. Importing rnnkit is quick: numpy, h5py
and Numba load when first needed.
"""
import sys
import types

from rnnkit.api import load, preprocess, resume, train
from rnnkit.version import __version__

__all__ = ["load", "preprocess", "resume", "train", "__version__"]


class _Package(types.ModuleType):
    """rnnkit.load, .preprocess and .train are functions and also the names of modules:
    importing the module rnnkit.train would bind it here in the function's place."""

    def __setattr__(self, name, value):
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
