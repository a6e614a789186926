"""The command group: version, help, and one-line usage errors."""
from click.testing import CliRunner

from rnnkit import __version__
from rnnkit.cli.main import main


def test_version_and_help():
    runner = CliRunner()
    assert __version__ in runner.invoke(main, ["--version"]).output
    result = runner.invoke(main, ["-h"])
    assert result.exit_code == 0 and "preprocess" in result.output and "train" in result.output


def test_bad_value_is_one_line():
    result = CliRunner().invoke(main, ["preprocess", "x.txt", "-o", "x.h5", "--val-frac", "1.5"],
                                prog_name="rnnkit")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "--val-frac" in lines[0]
    assert "rnnkit preprocess -h" in lines[0]


def test_group_usage_errors_are_one_line():
    """Mistakes before the command's name: one line too, with a guess at a misspelt name."""
    for args, says in ((["bogus"], "No such command 'bogus'. (see 'rnnkit -h')"),
                       (["--bogus"], "No such option '--bogus'"),
                       (["preprocss", "x.txt"], "did you mean 'preprocess'?"),
                       (["evaluate"], "did you mean 'eval'?")):
        result = CliRunner().invoke(main, args, prog_name="rnnkit")
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("Error:") and says in lines[0], lines[0]


def test_the_flags_and_commands_of_other_tools_are_named_as_rnnkit_names_them():
    # before: --rnn_size got no hint, --tied "did you mean --patience", -rnn_size "No such
    # option '-r'", `rnnkit sample` nothing, `rnnkit help train` "No such command"
    for args, says in ((["train", "c.h5", "--rnn_size", "32"], "--rnn_size; rnnkit calls it "
                                                               "--hidden"),
                       (["train", "c.h5", "--tied"], "--tied; rnnkit calls it --tie-weights"),
                       (["train", "c.h5", "--learning-rate", "1"], "rnnkit calls it --lr"),
                       (["train", "c.h5", "-rnn_size", "32"], "No such option: -rnn_size; "
                        "rnnkit's flags take two dashes: --hidden"),
                       (["generate", "m.h5", "--start_text", "x"], "rnnkit calls it --prime"),
                       (["sample", "m.h5"], "did you mean 'generate'?")):
        result = CliRunner().invoke(main, args, prog_name="rnnkit")
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert says in lines[0], lines[0]
    result = CliRunner().invoke(main, ["help", "train"], prog_name="rnnkit")
    assert result.exit_code == 0 and "Usage: rnnkit train" in result.output


def test_pytorch_s_cell_names_are_taken():
    from rnnkit.cli.train import NamedChoice

    cells = NamedChoice(["rnn-tanh", "rnn-relu", "lstm", "gru"])
    assert [cells.convert(v, None, None) for v in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")] == \
        ["lstm", "gru", "rnn-tanh", "rnn-relu"]


def test_closed_streams_and_a_bad_numba_num_threads_are_not_internal_errors(tmp_path):
    # before: with stderr closed (2>&-, cron), eval was an internal error ('NoneType' has no
    # isatty); NUMBA_NUM_THREADS=0 an internal error ("a bug in rnnkit")
    import os
    import subprocess
    import sys

    from tests.tiny_run import make_corpus, make_run

    run = make_run(tmp_path, make_corpus(tmp_path), steps=2)
    cmd = f"{sys.executable} -m rnnkit eval {run / 'latest.h5'} --text {tmp_path / 't.txt'}"
    done = subprocess.run(["sh", "-c", cmd + " 2>&-"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "loss " in done.stdout, done.stdout
    done = subprocess.run([sys.executable, "-m", "rnnkit", "info", str(run)],
                          env={**os.environ, "NUMBA_NUM_THREADS": "0"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("Error: NUMBA_NUM_THREADS='0'") \
        and "internal error" not in done.stderr, done.stderr


def test_a_closed_stdout_fails_the_commands_whose_product_is_their_output(tmp_path):
    # before: `rnnkit info RUN >&-` and `rnnkit --version >&-` exited 0, their output lost;
    # `rnnkit --version > /dev/full` was a traceback
    import shlex
    import subprocess
    import sys

    from tests.tiny_run import make_corpus, make_run

    run = make_run(tmp_path, make_corpus(tmp_path), steps=2)
    rnnkit = [sys.executable, "-m", "rnnkit"]
    for args, code in ((["info", str(run)], 1), (["--version"], 1), (["train", "-h"], 1),
                       (["export", str(run / "latest.h5"), "-o", str(tmp_path / "e.safetensors")],
                        0)):
        done = subprocess.run(["sh", "-c", shlex.join(rnnkit + args) + " >&-"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == code, (args, done.stderr)
        if code:
            assert done.stderr == "Error: standard output is closed: nothing printed\n", \
                done.stderr
    assert (tmp_path / "e.safetensors").exists()
    done = subprocess.run(["sh", "-c", shlex.join(rnnkit + ["--version"]) + " > /dev/full"],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr) == (1, "Error: standard output: No space left on "
                                                 "device\n")
    # a command with -o says so; a full stdout is named
    done = subprocess.run(["sh", "-c", shlex.join(rnnkit + ["generate", str(run / "latest.h5"),
                                                            "--length", "5"]) + " >&-"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.endswith(
        "Error: standard output is closed: nothing printed (write to a file with -o)\n"), \
        done.stderr
    done = subprocess.run(["sh", "-c", shlex.join(rnnkit + ["info", str(run)]) + " > /dev/full"],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr) == (1, "Error: standard output: No space left on "
                                                 "device\n")


def test_a_full_stderr_stops_the_printing_not_the_training(tmp_path):
    # before: train 2>/dev/full (a log on a full disk) stopped at its first line, exit 1,
    # nothing trained; a full log mid-run lost the steps since the last checkpoint
    import shlex
    import subprocess
    import sys

    from tests.tiny_run import make_corpus

    corpus = make_corpus(tmp_path)
    args = [sys.executable, "-m", "rnnkit", "train", str(corpus), "-o", str(tmp_path / "run"),
            "--hidden", "8", "--embed", "8", "--layers", "1", "--batch-size", "4", "--seq-len",
            "8", "--max-steps", "3", "--threads", "1"]
    done = subprocess.run(["sh", "-c", shlex.join(args) + " 2>/dev/full"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout
    from rnnkit.training import checkpoint

    assert checkpoint.read_meta(tmp_path / "run" / "latest.h5")["step"] == 3
