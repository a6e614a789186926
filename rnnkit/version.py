"""rnnkit's version, in a module of its own: the package's __init__ is the Python API's facade,
which imports the layers above, so the modules that record the version read it here."""
__version__ = "0.1.0"
