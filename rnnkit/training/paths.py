"""The paths in a run's config (PATHS), stored relative to the run folder.

Checkpoints and config.toml keep the corpus's path relative to the run folder (`portable`), so
that a run resumes, and its checkpoints evaluate, from any working directory, and a run folder
moved with its corpus beside it still finds it. A stored path is looked for from that folder
first, then as typed (`locate`): earlier rnnkit stored paths as typed, relative to wherever the
run was started.
"""
import os

from rnnkit.model.config_file import from_dict

PATHS = (("data", "corpus"), ("train", "init_from"))   # the config keys that name a file


def portable(config, folder):
    """`config` (a dict of sections, as stored) with its paths relative to `folder`."""
    out = {section: dict(values) for section, values in config.items()}
    for section, key in PATHS:
        path = out.get(section, {}).get(key)
        if path:
            out[section][key] = os.path.relpath(os.path.realpath(path), os.path.realpath(folder))
    return out


def locate(path, folder):
    """A stored `path` as this process opens it: relative to `folder` (the run folder, or the
    folder of a config file) where it is there, else as it was typed; ~ is the home folder, as
    a shell would read it."""
    path = os.path.expanduser(path) if path else path
    if not path or os.path.isabs(path):
        return path
    inside = os.path.join(folder, path)
    if os.path.exists(inside) or not os.path.exists(path):
        return os.path.relpath(os.path.realpath(inside))
    return path


def located(cfg, folder):
    """TrainConfig `cfg` with its paths located from `folder` (`locate`)."""
    return from_dict({section: {key: locate(getattr(getattr(cfg, section), key), folder)}
                      for section, key in PATHS}, cfg)
