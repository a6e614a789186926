"""A run folder while a training process uses it: created, locked, cleaned, and left as found
when a new run ends before its first step.

    with RunFolder("runs/x", new=True) as folder:   # creates runs/x if needed and locks it
        ...                     # training: folder.write_config(ck.config) at each save,
        folder.stepped = True   # after the first step

On entry: the folder is created (or must be writable), locked (rnnkit/lock.py), and the
temporaries that killed writers left there are removed and reported. A new run that ends
before its first step (an error, a signal) removes the files it made (the step-0 checkpoint,
config.toml, metrics.jsonl), and the folder too if it created it: a run that never started
leaves nothing behind. A resumed run never removes anything.

config.toml is written next to each checkpoint whose config differs from the file's, so the
two agree; `check_config` finds a config.toml edited by hand since (a resumed run takes its
config from the checkpoint, and would otherwise overwrite the edit without a word). Both keep
the config's paths relative to the run folder (rnnkit/training/paths.py).
"""
import contextlib
import json
import tempfile
from pathlib import Path

from rnnkit.training import checkpoint
from rnnkit import files
from rnnkit.errors import TrainError
from rnnkit.lock import NAME as LOCK_NAME, RunLock
from rnnkit.model.config import ConfigError
from rnnkit.model.config_file import dump_toml, from_dict, load_toml

CONFIG = "config.toml"
METRICS = "metrics.jsonl"


class RunFolderError(TrainError):
    """The run folder cannot be used (one line)."""


def run_files(path):
    """The names of the files a run writes (config, metrics, checkpoints) that `path` holds."""
    path = Path(path)
    names = [n for n in (CONFIG, METRICS, "latest.h5", "best.h5") if (path / n).exists()]
    return names + [p.name for p in checkpoint.step_files(path)]


def unstarted_log(path):
    """Whether run folder `path` holds a metrics.jsonl of rnnkit's start lines alone, and
    nothing else of a run: what a new run killed before its first checkpoint (kill -9, out of
    memory) leaves, with nothing to resume. Any other line (another tool's, an edit) or an
    empty file: False."""
    if run_files(path) != [METRICS]:
        return False
    try:
        with open(Path(path) / METRICS, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return False
    return bool(records) and all(isinstance(r, dict) and r.get("event") == "start" and
                                 r.get("step") == 0 and set(r) <= {"event", "step", "target"}
                                 for r in records)


class RunFolder:
    def __init__(self, path, new, main=True):
        self.path = Path(path)
        self.new = new
        self.main = main             # rank 0: the one rank that writes here
        self.stepped = False         # set by the loop after its first step
        self.made = []               # folders this run made (the run folder and its parents)
        self.lock = RunLock(self.path)
        self.removed = []            # (path, bytes) of temporaries cleaned on entry
        self.config_text = None      # what config.toml holds, as this process wrote or read it

    def __enter__(self):
        if not self.main:
            return self
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a run folder")
        if not self.new and not self.path.exists():
            raise RunFolderError(f"no run folder {self.path} to resume")
        try:
            # the folders mkdir makes, innermost first: a run that never started removes them
            self.made = [p for p in [self.path, *self.path.parents] if not p.exists()]
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as err:
            raise RunFolderError(f"cannot write to run folder {self.path}: "
                                 f"{err.strerror}") from None
        self.lock_existed = (self.path / LOCK_NAME).exists()
        try:
            self.lock.acquire()
        except OSError as err:
            self._remove_if_created()
            raise files.write_error(self.path / LOCK_NAME, err) from None
        except BaseException:
            self._remove_if_created()
            raise
        self.removed = checkpoint.clean_temporaries(self.path)
        return self

    def __exit__(self, kind, err, tb):
        if not self.main:
            return
        try:
            if self.new and not self.stepped:
                ours = [CONFIG, METRICS, "latest.h5", "best.h5", checkpoint.step_name(0)]
                for name in ours:
                    with contextlib.suppress(OSError):
                        (self.path / name).unlink()
                self.lock.release()
                with contextlib.suppress(OSError):
                    (self.path / LOCK_NAME).unlink()
                self._remove_if_created()
            elif not self.lock_existed and not (self.path / "latest.h5").exists():
                self.lock.release()     # not a run folder (nothing to resume): leave no trace
                with contextlib.suppress(OSError):
                    (self.path / LOCK_NAME).unlink()
        finally:
            self.lock.release()

    def _remove_if_created(self):
        if self.made:
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()
            for folder in self.made:
                try:
                    folder.rmdir()      # only if empty: never someone else's files
                except OSError:
                    break

    def write_config(self, config):
        """Write config.toml when it does not say what `config` (a checkpoint's) says."""
        text = dump_toml(from_dict(config))
        if text != self.config_text:
            files.write_text(self.path / CONFIG, text)
            self.config_text = text

    def check_config(self, stored):
        """Refuse when config.toml says something else than `stored` (the checkpoint's
        config): edited by hand since the run wrote it."""
        path = self.path / CONFIG
        if not path.exists():
            return
        try:
            edited = load_toml(path)
        except ConfigError as err:
            raise RunFolderError(f"{err}; {path} was edited since the run wrote it: undo the "
                                 f"edit (the run's config is in latest.h5)") from None
        changes = []
        for section, values in edited.to_dict().items():
            for key, value in values.items():
                before = stored.to_dict()[section][key]
                if value != before and not (section == "data" and key == "corpus"):
                    changes.append(f"[{section}] {key} {before!r} -> {value!r}")
        if changes:
            raise RunFolderError(
                f"{path} was edited since the run wrote it ({'; '.join(changes)}); a resumed "
                f"run takes its config from latest.h5: undo the edit, give [train] settings as "
                f"flags (--max-time ...), or start a new run from the file with --config "
                f"{path} -o NEW_FOLDER")
        self.config_text = path.read_text(encoding="utf-8")
