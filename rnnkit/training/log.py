"""What a training run reports: a progress bar on stderr and metrics.jsonl in the run folder.

metrics.jsonl has one JSON object per line. Training lines: step, epoch (fractional: epochs
done plus the share of the current one), train_loss (mean over the steps since the last line,
nats/token), lr, grad_norm (before clipping), tokens_per_s, elapsed (training seconds).
Validation lines add val_loss, val_ppl, val_bpc (bits per token). Event lines have "event":
"start", "resume" with a "target" (what the kernels run on and are compiled for, e.g. "cpu
(avx2: haswell)"), "rollback", "stop" with a "reason".
"""
import json
import math
import os
import sys
import time

from rnnkit import console, files
from rnnkit.metrics import bits, perplexity, show_perplexity



def val_metrics(loss):
    """Loss in nats/token -> the dict of validation numbers we report."""
    return {"val_loss": loss, "val_ppl": perplexity(loss), "val_bpc": bits(loss)}


def read_records(path):
    """The records of a metrics.jsonl file (none if it does not exist); a line cut short by a
    kill, or one that is not a record (edited by hand), is left out."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if _is_record(record):
                out.append(record)
    return out


def _is_record(record):
    """A dict of numbers with an integer step, but for its event's names (Metrics.write's)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(record, dict) and isinstance(record.get("step"), int) and \
        not isinstance(record["step"], bool) and \
        all(number(v) or (k in ("event", "reason", "target") and isinstance(v, str))
            for k, v in record.items())


class Metrics:
    """Appends records to RUN_DIR/metrics.jsonl, flushing each line."""

    def __init__(self, path):
        self.path = path

    def truncate_after(self, step):
        """Drop records of steps after `step`: a resumed or rolled-back run redoes them."""
        if not os.path.exists(self.path):
            return
        keep = [json.dumps(r) + "\n" for r in read_records(self.path) if r.get("step", 0) <= step]
        files.write_text(self.path, "".join(keep))

    def rewound(self, step, **record):
        """Drop the records after `step` and add `record` at it (a rollback, a divergence)."""
        self.truncate_after(step)
        self.write(step=step, **record)

    def write(self, **record):
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            raise files.write_error(self.path, err) from None


def _clock(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """One line on stderr, redrawn at most `per_s` times a second on a terminal and cut to
    its width; elsewhere (a log file, a batch job) a plain line every `every_s` seconds. A
    reader that leaves (a closed pipe, a lost terminal) ends the printing, not the run."""

    def __init__(self, total, enabled=True, stream=None, per_s=4.0, every_s=30.0):
        self.total = total          # steps expected in this run, or None when unknown
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        # the line's erasure: ANSI's, but where TERM=dumb (Emacs' shell) spaces over it
        self.dumb = os.environ.get("TERM") == "dumb"
        self.gap = 1.0 / per_s if self.tty else every_s
        self.last = -math.inf
        self.drawn = False          # the bar is on the terminal's last line (tty)
        self.gone = False           # the reader left: print nothing more

    def update(self, step, loss, tokens_per_s, eta_s, force=False):
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.gap and not force):
            return
        self.last = now
        bar = ""
        if self.total:
            done = min(1.0, step / self.total)
            bar = " [" + "#" * int(24 * done) + "." * (24 - int(24 * done)) + "]"
        head = f"step {step}/{self.total}" if self.total else f"step {step}"
        rate, eta = f" | {tokens_per_s:,.0f} tok/s", f" | ETA {_clock(eta_s)}"
        line = head + bar + f" loss {loss:.4f}" + rate + eta
        if self.tty:    # a line wider than the terminal wraps, and \r redraws only its end
            cols = console.width(self.stream) - 1
            # narrower: the bar goes first, then the rate; the ETA stays
            fits = [ln for ln in (line, head + f" loss {loss:.4f}" + rate + eta,
                                  head + f" loss {loss:.4f}" + eta) if len(ln) <= cols]
            line = fits[0] if fits else (head + eta)[:cols]
            self._write(self._erase() + line)
            self.drawn = True
        else:
            self._write(line + "\n")

    def message(self, text):
        """A line of its own (validation results, warnings) that does not garble the bar."""
        self._write((self._erase() if self.tty and self.drawn else "") + text + "\n")
        self.drawn = False
        self.last = -math.inf if self.tty else self.last

    def _erase(self):
        return "\r" + " " * (console.width(self.stream) - 1) + "\r" if self.dumb else "\r\x1b[2K"

    def close(self):
        if self.tty and self.drawn and self.enabled:    # a message ends its own line
            self._write("\n")
            self.drawn = False

    def _write(self, text):
        if self.gone:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError as err:
            if not console.reader_gone(err):
                raise
            self.gone = True
            console.silence(self.stream)


def val_line(step, loss, tail=""):
    """A validation's line on stderr."""
    numbers = val_metrics(loss)
    return (f"step {step}: val loss {loss:.4f}, ppl {show_perplexity(numbers['val_ppl'])}, "
            f"{numbers['val_bpc']:.3f} bits/token{tail}")
