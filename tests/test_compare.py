"""Runs side by side: `rnnkit plot RUN_A RUN_B ...` and `rnnkit info RUN_DIR`."""
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnkit.cli.main import main
from rnnkit.tools.plot import labels, read_metrics
from tests.tiny_run import make_corpus, make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    corpus = make_corpus(folder)
    (folder / "b").mkdir()
    return make_run(folder, corpus, steps=12), make_run(folder / "b", corpus, steps=6)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_reads_every_panel_and_names_the_runs(runs, tmp_path):
    curves = read_metrics(runs[0])
    assert set(curves) == {"train_loss", "val_loss", "lr", "grad_norm", "tokens_per_s"}
    assert [s for s, _, _ in curves["grad_norm"]] == list(range(1, 13))
    assert [s for s, _, _ in curves["val_loss"]] == [10, 12]
    assert all(t > 0 for _, t, _ in curves["train_loss"])
    assert labels([runs[0], tmp_path / "other"]) == ["run", "other"]
    assert labels(list(runs)) == [str(runs[0]), str(runs[1])]      # same name: the paths


def test_plot_overlays_runs(runs, tmp_path):
    pytest.importorskip("matplotlib")
    for x, name in (("step", "c.png"), ("time", "c.svg")):
        result = invoke("plot", *runs, "--x", x, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "c.svg").read_text()
    assert "training time (s)" in svg and "gradient norm" in svg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "c.svg"]


def test_plot_errors_are_one_line(runs, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "metrics.jsonl").write_text(json.dumps({"event": "start",
                                                                    "step": 0}) + "\n")
    result = invoke("plot", runs[0], tmp_path / "started", "-o", tmp_path / "c.png")
    assert result.exit_code == 0 and "started/metrics.jsonl has no metrics yet" in \
        result.stderr
    alone = invoke("plot", tmp_path / "started", "-o", tmp_path / "d.png")
    assert alone.exit_code == 1 and "no metrics to plot yet" in alone.output
    bad = invoke("plot", runs[0], "-o", tmp_path / "c.xyz")
    assert bad.exit_code == 1 and "unknown image type 'xyz'" in bad.output
    (tmp_path / "folder.png").mkdir()
    folder = invoke("plot", runs[0], "-o", tmp_path / "folder.png")
    assert folder.exit_code in (1, 2) and "Traceback" not in folder.output
    assert invoke("plot", "-o", tmp_path / "e.png").exit_code == 2      # no run given
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    missing = invoke("plot", *runs, "-o", tmp_path / "f.png")
    assert missing.exit_code == 1 and "pip install 'rnnkit[plot]'" in missing.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "folder.png", "started"]


def test_info_summarises_a_run(runs):
    result = invoke("info", runs[0])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    vals = [r for r in map(json.loads, open(runs[0] / "metrics.jsonl")) if "val_loss" in r]
    best = min(vals, key=lambda r: r["val_loss"])
    assert lines[1] == f"checkpoints: latest.h5 (step 12); best.h5 (step {best['step']})"
    assert lines[2].startswith(f"best validation: {best['val_loss']:.4f} nats/token at step "
                               f"{best['step']}")
    assert lines[3].startswith("training: step 12, epoch")
    assert lines[4].startswith("training time: ") and "in 1 session on cpu (" in lines[4] \
        and "); last stop: 12 steps done" in lines[4]
    config = lines[5]
    assert config.startswith("config: rnnkit train ") and f"char.h5 -o {runs[0]} --embed 8 " \
        "--hidden 16 --layers 1 --batch-size 4 --seq-len 8 --lr 0.02 --max-steps 12" in config
    assert "--cell" not in config and "--no-progress" in config     # defaults left out


def test_the_config_line_trains_the_same_config(runs, tmp_path):
    import shlex

    from rnnkit.training import checkpoint

    from rnnkit.training.paths import locate

    line = next(line for line in invoke("info", runs[1]).stdout.splitlines()
                if line.startswith("config: "))
    args = shlex.split(line[len("config: rnnkit "):])
    assert args[2:4] == ["-o", str(runs[1])]
    args[3] = str(tmp_path / "again")       # the same command, another folder
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    configs = [checkpoint.load(run / "latest.h5").config for run in (tmp_path / "again", runs[1])]
    corpora = [Path(locate(c["data"].pop("corpus"), run)).resolve()   # each from its folder
               for c, run in zip(configs, (tmp_path / "again", runs[1]))]
    assert configs[0] == configs[1] and corpora[0] == corpora[1]


def test_info_gives_the_checkpoints_step_when_the_log_is_behind(runs, tmp_path):
    """info said 'training: step N' for the last logged step, not latest.h5's."""
    import shutil
    run = tmp_path / "r"
    shutil.copytree(runs[0], run)
    lines = [line for line in open(run / "metrics.jsonl") if '"train_loss"' in line]
    last = json.loads(lines[-1])["step"]
    kept = [line for line in open(run / "metrics.jsonl")
            if json.loads(line).get("step", 0) < last or "train_loss" not in line]
    (run / "metrics.jsonl").write_text("".join(kept))
    shown = CliRunner().invoke(main, ["info", str(run)]).output
    assert f"training: step {last}; at the last logged step, " in shown


def test_info_says_what_each_session_ran_on(runs, tmp_path):
    """A run's start event records what it ran on and compiled for (the start of train's first
    line); info counts the sessions on each. Older runs' events recorded nothing."""
    import shutil

    from rnnkit.backends.cpu import CPUBackend

    here = CPUBackend().target()
    other = "cpu (avx2: haswell)" if "haswell" not in here else "cpu (avx512: skylake-avx512)"
    start = json.loads(open(runs[0] / "metrics.jsonl").readline())
    assert start == {"event": "start", "step": 0, "target": here}
    run = tmp_path / "r"
    shutil.copytree(runs[0], run)
    with open(run / "metrics.jsonl", "a") as f:
        for event in ({"event": "resume", "step": 12, "target": other},
                      {"event": "stop", "step": 12, "reason": "0 steps done"},
                      {"event": "resume", "step": 12},
                      {"event": "stop", "step": 12, "reason": "0 steps done"}):
            f.write(json.dumps(event) + "\n")
    shown = invoke("info", run).stdout
    assert f"in 3 sessions: 1 on {here}, 1 on {other}; last stop: " in shown
    old = tmp_path / "old"
    shutil.copytree(runs[0], old)
    text = (old / "metrics.jsonl").read_text()
    (old / "metrics.jsonl").write_text(text.replace(f', "target": {json.dumps(here)}', ""))
    assert "in 1 session; last stop: 12 steps done" in invoke("info", old).stdout


def test_info_does_not_give_an_earlier_sessions_stop_as_the_last(runs, tmp_path):
    import shutil
    run = tmp_path / "r"
    shutil.copytree(runs[0], run)
    with open(run / "metrics.jsonl", "a") as f:           # a session killed after it began
        f.write(json.dumps({"event": "resume", "step": 12}) + "\n")
    shown = CliRunner().invoke(main, ["info", str(run)]).output
    assert "running or killed" in shown and "last stop:" not in shown


def test_the_config_line_gives_each_float_whole():
    # before: --lr 0.0012345678 was shown as 0.00123457 (6 digits), another run's config
    from rnnkit.model.config import TrainConfig
    from rnnkit.tools.info import config_line

    cfg = TrainConfig()
    cfg.data.corpus, cfg.optim.lr, cfg.train.max_time = "c.h5", 0.0012345678, 4444.444444444444
    line = config_line(cfg.to_dict())
    assert "--lr 0.0012345678 " in line and "--max-time 4444.444444444444" in line, line


def test_a_run_of_one_logged_step_is_drawn(runs, tmp_path, monkeypatch):
    # before: a panel whose curve had one point was empty (a line alone draws nothing)
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    one = tmp_path / "one"
    one.mkdir()
    lines = (runs[1] / "metrics.jsonl").read_text().splitlines()
    (one / "metrics.jsonl").write_text(
        "".join(line + "\n" for line in lines if '"step": 1,' in line or '"event"' in line))
    drawn, real = [], Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda self, *a, **k: drawn.append(a[2]) or
                        real(self, *a, **k))
    result = invoke("plot", one, "-o", tmp_path / "one.png")
    assert result.exit_code == 0, result.output
    assert drawn and all("o" in style for style in drawn), drawn
