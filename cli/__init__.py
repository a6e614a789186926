"""The rnnkit command line (installed as rnnkit.cli)."""
from rnnkit.training import stop_signals

# first, before click and the commands' imports: a Ctrl-C in them waits for the command to
# say what it does (rnnkit/training/stop_signals.py) instead of a traceback
stop_signals.install()
