"""A run's config (rnnkit/model/config.py) in and out of nested dicts and TOML files: from_dict
checks every section, key, type and range (ConfigError, one line), load_toml/read_toml read a
file, dump_toml writes one with each key's help as a comment, flag_table is docs/training.md's
table of keys and flags. Files and checkpoints of rnnkit 0.1 used other names for a few keys
(OLD_KEYS); they still load.
"""
import dataclasses
import math
import numbers
import re
import sys
from typing import get_type_hints

from rnnkit.model import softmax
from rnnkit.model.config import (SECTIONS, ConfigError, ConfigTypeError, ModelConfig,
                                 TrainConfig, flag, keys)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# keys of rnnkit 0.1 -> today's, per section: old config files and checkpoints still load
OLD_KEYS = {"optim": {"name": "optimizer"},
            "schedule": {"name": "schedule", "every": "lr_decay_every", "start": "lr_decay_start",
                         "factor": "lr_decay_factor", "total": "decay_steps",
                         "threshold": "plateau_threshold", "max_halvings": "max_decays"}}


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h|d)?\s*$")
_PARTS = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(d|h|m|s)")         # 1h30m, 2d 6h
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text):
    """'90', '90s', '30m', '1.5h', '2d', '1h30m', '1d 2h' -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not (math.isfinite(text) and text >= 0):
            raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 1.5h)")
        return float(text)
    match = _DURATION.match(str(text))
    if match:
        return float(match.group(1)) * _UNITS[match.group(2)]
    parts = _PARTS.findall(str(text))
    units = [unit for _, unit in parts]
    if parts and "".join(n + u for n, u in parts) == re.sub(r"\s", "", str(text)) and \
            units == sorted(set(units), key="dhms".index):
        return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 1.5h, 1h30m)")


def _coerce(where, kind, value, meta):
    """Check `value` against the annotation `kind` and the field's range or choices; ints are
    accepted as floats."""
    optional = getattr(kind, "__args__", None)
    if optional:
        if value is None:
            return None
        kind = next(k for k in optional if k is not type(None))
    if meta.get("kind") == ("ints",):
        try:
            return softmax.join_cutoffs(value)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    if meta.get("kind") == ("duration",) and isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:           # numpy's integers too, stored as Python's
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        value = float(value) if ok else value
        ok = ok and math.isfinite(value)
    else:
        ok = isinstance(value, kind)
    if not ok and kind is float and isinstance(value, float):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if not ok:
        raise ConfigTypeError(f"{where}: expected {kind.__name__}, got {value!r}")
    spec = meta.get("kind")
    if spec and spec[0] == "choice" and value not in spec[1]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(spec[1])}")
    if spec and spec[0] == "range":
        _, low, high, low_open, high_open = spec
        if (low is not None and (value < low or (low_open and value == low))) or \
                (high is not None and (value > high or (high_open and value == high))):
            raise ConfigError(f"{where}: {value!r} is out of range ({describe_range(spec)})")
    return value


def describe_range(spec):
    _, low, high, low_open, high_open = spec
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def from_dict(data, base=None):
    """A TrainConfig from nested dicts, on top of `base` (default: the defaults)."""
    cfg = dataclasses.replace(base) if base else TrainConfig()
    if not isinstance(data, dict):
        raise ConfigError("config: expected tables [model], [data], [optim], [schedule], [train]")
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section [{section}]; known: "
                              f"{', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of keys")
        fields = {f.name: f for f in keys(SECTIONS[section])}
        kinds = get_type_hints(SECTIONS[section])
        current = dataclasses.replace(getattr(cfg, section)) if section != "model" else \
            _replace_model(getattr(cfg, section))
        for key, value in values.items():
            key = OLD_KEYS.get(section, {}).get(key, key)
            if key not in fields:
                raise ConfigError(f"unknown key {key!r} in [{section}]; known: "
                                  f"{', '.join(fields)}")
            object.__setattr__(current, key, _coerce(f"[{section}] {key}", kinds[key], value,
                                                     fields[key].metadata))
        if section == "model":
            current.check()
        setattr(cfg, section, current)
    return cfg


def _replace_model(model):
    """A copy of a ModelConfig without its checks (they run once every key is set: embed =
    hidden may arrive one key at a time)."""
    copy = object.__new__(ModelConfig)
    for f in dataclasses.fields(ModelConfig):
        object.__setattr__(copy, f.name, getattr(model, f.name))
    return copy


def read_toml(path):
    """The tables of a TOML file, as written (ConfigError when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return tomllib.loads(data.decode("utf-8-sig"))     # Notepad's byte order mark too
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text)") from None


def load_toml(path):
    """Read a TOML config file into a TrainConfig."""
    data = read_toml(path)
    try:
        return from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def flag_table():
    """The table of every key, its flag and its default, as docs/training.md shows it."""
    rows = ["| key | flag | default | what |", "|---|---|---|---|"]
    for section, cls in SECTIONS.items():
        for f in keys(cls):
            name = "CORPUS (the argument)" if (section, f.name) == ("data", "corpus") else \
                flag(f.name)
            default = f.metadata.get("show") or (
                ("on" if f.default else "off") if isinstance(f.default, bool) else
                f"{f.default:g}" if isinstance(f.default, float) else
                f.default if f.default != "" else '""')
            rows.append(f"| `[{section}] {f.name}` | `{name}` | {default} | "
                        f"{f.metadata['help']} |")
    return "\n".join(rows)


def dump_toml(cfg):
    """The config as TOML text with each key's help as a comment (None values, meaning 'the
    default', are left out: the optimizer's own are named in a comment, a key left so for
    another optimizer to take its own)."""
    from rnnkit.model.optim import DEFAULTS

    lines = ["# Resolved rnnkit training config; `rnnkit train --config` reads it back."]
    for section, cls in SECTIONS.items():
        lines.append(f"\n[{section}]")
        for f in keys(cls):
            value = getattr(getattr(cfg, section), f.name)
            if value is not None:
                text = f"{f.name} = {_toml_value(value)}"
                lines.append(f"{text:<28} # {f.metadata['help']}")
            elif section == "optim" and f.name in DEFAULTS.get(cfg.optim.optimizer, {}):
                own = DEFAULTS[cfg.optim.optimizer][f.name]
                lines.append(f"# {f.name} unset: {cfg.optim.optimizer}'s own, {own!r}")
    return "\n".join(lines) + "\n"
