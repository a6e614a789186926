"""Wall time of the whole process: `--max-time` bounds it from launch, compiling included."""
import math
import os
import time


def process_start():
    """time.monotonic() at which this process started (Linux: from /proc), else now."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")    # seconds after boot
        age = max(0.0, uptime - started)
    except (OSError, ValueError, IndexError):
        age = 0.0
    return time.monotonic() - age


class Deadline:
    """`seconds` after `start` (a time.monotonic() value; default: the process's start)."""

    def __init__(self, seconds, start=None):
        self.seconds = float(seconds or 0.0)
        self.start = process_start() if start is None else start

    def __bool__(self):
        return self.seconds > 0

    def elapsed(self):
        return time.monotonic() - self.start

    def left(self):
        """Seconds left (inf without a limit)."""
        return self.seconds - self.elapsed() if self else float("inf")


def duration(seconds):
    """Seconds as a limit is written: 2h, 30m, 45 s."""
    seconds = float(seconds)
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g} s"


def eta(session_s, step, first_step, total, deadline):
    """Seconds left: the steps to `total` at this session's pace, or `deadline`'s time if
    sooner (inf where neither is known)."""
    done = step - first_step
    left = [max(0, total - step) * session_s / done] if total and done else [math.inf]
    if deadline:
        left.append(max(0.0, deadline.left()))
    return min(left)


def compiled_line(seconds, deadline):
    """What a run says after a first step that compiled for `seconds`; past a --max-time
    `deadline` (a Deadline), that it stops there."""
    late = deadline and deadline.left() < 0
    return f"compiled in {seconds:.1f} s" + (
        f", past --max-time {duration(deadline.seconds)}: the run stops after this step (the "
        f"kernels are cached for the next)" if late else "")
