import pytest

from rnnkit.model.config import ConfigError, TrainConfig
from rnnkit.model.config_file import dump_toml, from_dict, load_toml, parse_duration


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = TrainConfig()
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(cfg))
    assert load_toml(path) == cfg


def test_file_values_and_types(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\ncell = "gru"\nhidden = 32\n[optim]\nlr = 1\nweight_decay = 0.1\n'
                    '[train]\nmax_time = "1.5h"\n[data]\ncorpus = "a \\"b\\".h5"\n')
    cfg = load_toml(path)
    assert cfg.model.cell == "gru" and cfg.model.hidden == 32 and cfg.model.layers == 2
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.train.max_time == 5400.0
    again = tmp_path / "d.toml"
    again.write_text(dump_toml(cfg))
    assert load_toml(again) == cfg


@pytest.mark.parametrize("text,message", [
    ("[modle]\ncell = 'gru'\n", r"unknown config section \[modle\]"),
    ("[model]\nhiden = 3\n", "unknown key 'hiden' in \\[model\\]"),
    ("[model]\nhidden = 3.5\n", r"\[model\] hidden: expected int, got 3.5"),
    ("[model]\nhidden = true\n", r"\[model\] hidden: expected int"),
    ("[optim]\nlr = 'fast'\n", r"\[optim\] lr: expected float"),
    ("[optim]\nnesterov = 1\n", r"\[optim\] nesterov: expected bool"),
    ("[model]\ndiv_value = nan\n", r"\[model\] div_value: expected a finite number, got nan"),
    ("[optim]\nlr = inf\n", r"\[optim\] lr: expected a finite number, got inf"),
    ("[train]\nmax_time = 'soon'\n", "max_time: 'soon' is not a duration"),
    ("model = 3\n", r"\[model\] must be a table"),
    ("[model\n", "not valid TOML"),
])
def test_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_toml(path)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml(tmp_path / "nope.toml")


def test_overrides_on_top_of_a_base():
    base = from_dict({"model": {"hidden": 32}, "optim": {"lr": 0.5}})
    cfg = from_dict({"optim": {"lr": 0.1}}, base)
    assert cfg.model.hidden == 32 and cfg.optim.lr == 0.1
    assert base.optim.lr == 0.5                 # the base is not changed


def test_durations():
    assert parse_duration("90") == 90 and parse_duration("2m") == 120
    assert parse_duration(30) == 30.0 and parse_duration("1d") == 86400
    with pytest.raises(ValueError):
        parse_duration("-5m")
    # a time of several units, largest first (it was refused)
    assert parse_duration("1h30m") == 5400 and parse_duration("1d 2h") == 93600
    for bad in ("2h 1h", "1h30", "30m1h", "1h-30m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path):
    # before: "not valid TOML (Invalid statement (at line 1, column 1))" (Notepad's UTF-8)
    from rnnkit.model.config_file import read_toml

    (tmp_path / "c.toml").write_bytes(b"\xef\xbb\xbf[model]\nhidden = 8\n")
    assert read_toml(tmp_path / "c.toml") == {"model": {"hidden": 8}}


def test_every_key_is_a_flag_of_the_same_name_and_help():
    from rnnkit.cli.train import OPTIONS, command
    from rnnkit.model.config import SECTIONS, keys

    options = {p.name: p for p in command.params}
    for section, cls in SECTIONS.items():
        for f in keys(cls):
            if (section, f.name) == ("data", "corpus"):
                continue
            opt = options[f"opt_{section}_{f.name}"]
            assert "--" + f.name.replace("_", "-") in opt.opts
            assert opt.help == f.metadata["help"]
            assert opt.default == f.default
    assert len(OPTIONS) == sum(len(keys(c)) for c in SECTIONS.values()) - 1


def test_old_keys_still_load(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('[optim]\nname = "sgd"\n[schedule]\nname = "step"\nevery = 2\nstart = 3\n'
                    'factor = 0.25\ntotal = 9\nthreshold = 0.1\nmax_halvings = 2\n')
    cfg = load_toml(path)
    assert cfg.optim.optimizer == "sgd" and cfg.schedule.schedule == "step"
    s = cfg.schedule
    assert (s.lr_decay_every, s.lr_decay_start, s.lr_decay_factor, s.decay_steps,
            s.plateau_threshold, s.max_decays) == (2, 3, 0.25, 9, 0.1, 2)


def test_sections_refuse_unknown_attributes():
    cfg = TrainConfig()
    with pytest.raises(AttributeError):
        cfg.schedule.name = "cosine"            # a key of rnnkit 0.1: now `schedule`


def test_dumped_toml_carries_the_help_as_comments():
    text = dump_toml(TrainConfig())
    assert 'optimizer = "adam"' in text and "# Optimizer: PyTorch's equations" in text


def test_docs_table_of_keys_and_flags_is_current():
    from pathlib import Path

    from rnnkit.model.config_file import flag_table

    docs = (Path(__file__).parent.parent / "docs" / "training.md").read_text()
    assert flag_table() in docs, \
        "docs/training.md: paste rnnkit.model.config_file.flag_table() again"


def test_one_cutoff_may_be_a_number():
    """cutoffs = 50 in TOML or train(cutoffs=50): one cutoff (before: 'expected integers')."""
    cfg = from_dict({"model": {"softmax": "adaptive", "cutoffs": 50}})
    assert from_dict({"model": {"cutoffs": [50]}}).model.cutoffs == cfg.model.cutoffs


def test_a_path_in_a_config_file_may_start_with_the_home_folder(tmp_path, monkeypatch):
    # before: "no such corpus: ~/c.h5"
    from rnnkit.training.paths import locate

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.h5").write_bytes(b"")
    assert locate("~/c.h5", "/elsewhere") == str(tmp_path / "c.h5")
