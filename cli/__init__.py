"""The rnnkit command line (installed as rnnkit.cli)."""
