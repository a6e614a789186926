"""rnnkit: recurrent neural network language models compiled with Numba."""

__version__ = "0.1.0"
