"""Sampling: the probability transforms, seeding, primes, and `rnnkit generate`."""
import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.cli.main import main
from rnnkit.tools.generate import generate
from rnnkit.backends.sampling import probabilities
from rnnkit.tools.load import load_model
from tests.tiny_run import make_corpus, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen")
    return make_run(folder, make_corpus(folder))


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("genword")
    return make_run(folder, make_corpus(folder, "word"), steps=5)


def test_probabilities():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    np.testing.assert_allclose(probabilities(logits), [[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(probabilities(logits, top_k=2), [[0, 0, 3 / 7, 4 / 7]])
    np.testing.assert_allclose(probabilities(logits, top_p=0.65), [[0, 0, 3 / 7, 4 / 7]])
    np.testing.assert_allclose(probabilities(logits, top_p=0.75), [[0, 2 / 9, 3 / 9, 4 / 9]])
    np.testing.assert_allclose(probabilities(logits, top_p=0.01), [[0, 0, 0, 1]])
    hot = probabilities(logits, temperature=0.01)
    assert hot[0, 3] > 0.999
    flat = probabilities(logits, temperature=100.0)
    assert np.ptp(flat) < 0.01


def test_same_seed_same_text(run):
    model, codec, _ = load_model(run / "latest.h5")
    a = "".join(generate(model, codec, 60, prime="line", seed=5))
    b = "".join(generate(model, codec, 60, prime="line", seed=5))
    c = "".join(generate(model, codec, 60, prime="line", seed=6))
    assert a == b != c and a.startswith("line") and len(a) == 64
    greedy = "".join(generate(model, codec, 30, greedy=True))
    assert greedy == "".join(generate(model, codec, 30, greedy=True, seed=9))


def test_cli_streams_text(run):
    runner = CliRunner()
    args = ["generate", str(run / "latest.h5"), "--length", "40", "--prime", "the ",
            "--seed", "3", "--temperature", "0.7", "--top-k", "5", "--top-p", "0.9"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("the ") and len(first.stdout) == 4 + 40 + 1
    assert runner.invoke(main, args).stdout == first.stdout
    two = runner.invoke(main, args[:-8] + ["--num-samples", "2"])
    assert two.exit_code == 0 and "--- sample 2 of 2 ---\n" in two.stdout
    fresh = runner.invoke(main, ["generate", str(run / "latest.h5"), "--length", "5"])
    assert fresh.exit_code == 0 and fresh.stderr.startswith("seed ")


@pytest.mark.parametrize("args,message", [
    (["--prime", "Zebra"], "character 'Z' (U+005A) at line 1, column 1 of the prime is not in the model's vocab"),
    (["--temperature", "0"], "Invalid value for '--temperature'"),
    (["--top-p", "1.5"], "Invalid value for '--top-p'"),
])
def test_cli_errors(run, args, message):
    result = CliRunner().invoke(main, ["generate", str(run / "latest.h5")] + args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and result.stdout == ""
    # before: a fresh seed was said ahead of the prime's error: two lines, one promised
    assert "seed " not in result.output


def test_eval_names_standard_input(run):
    # before: "/dev/stdin has 0 token(s)"
    result = CliRunner().invoke(main, ["eval", str(run / "latest.h5"), "--text", "-"], input="")
    assert result.exit_code == 1 and "standard input has 0 token(s)" in result.output


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.h5").write_text("no")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and "not an HDF5 file" in result.output


def test_word_model_maps_unknown_words_to_unk(word_run):
    result = CliRunner().invoke(main, ["generate", str(word_run / "latest.h5"), "--prime",
                                       "the zebra", "--length", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the <unk>")


def gen(*args, input=None):
    return CliRunner().invoke(main, ["generate", *[str(a) for a in args]], input=input)


def test_stop_strings_cut_across_pieces():
    from rnnkit.tools.generate import StopStrings

    stops = StopStrings(["bc", "xyz"])
    assert stops.cut("ab") == ("ab", False)
    assert stops.cut("cd") == ("c", True)              # "bc" spans the two pieces
    assert StopStrings(["xyz", "b"]).cut("abxyz") == ("ab", True)    # the first to end
    assert StopStrings(["b"]).cut("aaa") == ("aaa", False)


def test_stop_ends_the_text_at_the_first_match(run):
    args = [run / "latest.h5", "--greedy", "--prime", "the", "--length", "60"]
    full = gen(*args).stdout[len("the"):-1]
    stop = full[12:14]                          # a string the greedy text reaches
    end = full.index(stop) + len(stop)
    result = gen(*args, "--stop", stop, "--stop", "not in it")
    assert result.exit_code == 0, result.output
    assert result.stdout == "the" + full[:end] + ("" if full[end - 1] == "\n" else "\n")
    empty = gen(*args, "--stop", "")
    assert empty.exit_code == 2 and "stop string must not be empty" in empty.output


def test_until_eos_at_word_level(word_run, run):
    args = [word_run / "latest.h5", "--seed", "4", "--prime", "the", "--length", "200"]
    full = gen(*args).stdout
    assert full.count("\n") > 1
    line = gen(*args, "--until-eos")
    assert line.exit_code == 0 and line.stdout == full[:full.index("\n") + 1]
    char = gen(run / "latest.h5", "--until-eos")
    assert char.exit_code == 1 and "--until-eos needs a word-level model" in char.output
    assert "Traceback" not in char.output and char.stdout == ""


def test_output_file_and_prime_file(run, tmp_path, monkeypatch):
    (tmp_path / "p.txt").write_text("line 1: the")
    args = [run / "latest.h5", "--length", "30", "--seed", "3"]
    shown = gen(*args, "--prime", "line 1: the").stdout
    result = gen(*args, "--prime-file", tmp_path / "p.txt", "-o", tmp_path / "out.txt")
    assert result.exit_code == 0 and result.stdout == "" and "wrote" in result.stderr
    assert (tmp_path / "out.txt").read_text() == shown
    again = gen(*args, "-o", tmp_path / "out.txt")
    assert again.exit_code == 1 and "exists; use --force" in again.output
    assert (tmp_path / "out.txt").read_text() == shown
    both = gen(*args, "--prime", "x", "--prime-file", tmp_path / "p.txt")
    assert both.exit_code == 2 and "not both" in both.output

    import rnnkit.tools.generate

    def broken(*a, **k):                        # fails half-way through the text
        yield "some text"
        raise ValueError("the model broke")

    monkeypatch.setattr(rnnkit.tools.generate, "generate", broken)
    failed = gen(*args, "-o", tmp_path / "new.txt")
    assert failed.exit_code == 1 and "the model broke" in failed.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "p.txt"]  # no part


def test_interactive_reads_a_prime_per_line(run):
    args = [run / "latest.h5", "--length", "12", "--seed", "7", "--interactive"]
    result = gen(*args, input="the \nZebra\nline 2")
    assert result.exit_code == 1 and "1 prime(s) could not be used" in result.output
    assert "input line 2: character 'Z'" in result.stderr and "Traceback" not in result.output
    model, codec, _ = load_model(run / "latest.h5")

    def continuation(prime, seed):
        alone = "".join(generate(model, codec, 12, prime, seed=seed, echo=False))
        return alone + ("" if alone.endswith("\n") else "\n")

    # line 2 failed: an empty line in its place; the seeds go on
    assert result.stdout == continuation("the ", [7, 0, 0]) + "\n" + \
        continuation("line 2", [7, 2, 0])
    three = gen(*args, "--num-samples", "2", "--separator", "#{n}", input="Zebra\nthe \n")
    assert three.exit_code == 1
    assert three.stdout == "#1\n\n#2\n\n" + "#1\n" + continuation("the ", [7, 1, 0]) + \
        "#2\n" + continuation("the ", [7, 1, 1])
    mixed = gen(*args, "--prime", "x")
    assert mixed.exit_code == 2 and "--interactive reads its primes" in mixed.output
    # input that is not valid in the encoding: that line's answer is empty, as above
    bad = gen(*args, input=b"caf\xe9\nthe \n")
    assert bad.exit_code == 1 and "input line 1 is not valid utf-8 at byte 3" in bad.stderr
    assert bad.stdout == "\n" + continuation("the ", [7, 1, 0])


@pytest.mark.slow               # a fresh process on a terminal
def test_interactive_on_a_terminal(run):
    """Through a pseudo-terminal: a prompt, a continuation per line, Ctrl-D ends it."""
    import fcntl
    import os
    import pty
    import select
    import subprocess
    import sys
    import termios
    import time

    master, seen = None, b""

    def read_until(prompts, timeout=120):
        """Read until `prompts` prompts were shown, or the child ended; True in the first case."""
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen.count(b"> ") < prompts and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:                 # the child closed the terminal
                    break
        return seen.count(b"> ") >= prompts

    def own_terminal():         # the pty as the child's terminal: ^C is its SIGINT
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    def session(args, talk, **popen):
        """generate -i `args` on a fresh pty, `talk(proc)` to it; what it showed."""
        nonlocal master, seen
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "generate",
                                 str(run / "latest.h5"), "-i", *args], stdin=slave,
                                stdout=slave, stderr=slave, close_fds=True, **popen)
        os.close(slave)
        seen = b""
        try:
            talk(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        return seen.decode().replace("\r\n", "\n")

    def lines(proc):
        assert read_until(1), seen
        os.write(master, b"the \n")
        assert read_until(2, 60), seen
        os.write(master, b"\x04")               # Ctrl-D: end of input
        assert proc.wait(timeout=60) == 0
        read_until(3, 1)

    out = session(["--length", "8", "--seed", "5", "--greedy"], lines)
    model, codec, _ = load_model(run / "latest.h5")
    text = "".join(generate(model, codec, 8, "the ", greedy=True, echo=False))
    assert f"the \n{text}\n> " in out           # the typed line (echoed), its continuation

    def ctrl_c(proc):
        assert read_until(1), seen
        os.write(master, b"\x03")
        assert proc.wait(timeout=60) == 130
        read_until(2, 1)

    # Ctrl-C at the prompt: before, "> ^Cinterrupted" on the prompt's line
    out = session(["--length", "8", "--greedy"], ctrl_c, preexec_fn=own_terminal)
    assert out.endswith("\ninterrupted\n"), out


def test_device_and_threads(run):
    result = gen(run / "latest.h5", "--length", "5", "--seed", "1", "--threads", "1")
    assert result.exit_code == 0 and len(result.stdout) == 6
    for command in (["generate"], ["eval", "--text", run / "metrics.jsonl"]):
        bad = CliRunner().invoke(main, [*command[:1], str(run / "latest.h5"),
                                        *map(str, command[1:]), "--device", "cuda"])
        assert bad.exit_code == 1 and "cuda" in bad.output and "Traceback" not in bad.output


def test_interactive_through_a_pipe_answers_each_line_at_once(run):
    """A program that writes a prime, waits for its answer, then writes the next: a bad
    prime's answer is an empty line, and every answer comes while the pipe stays open."""
    import select
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "generate", str(run / "latest.h5"),
                             "-i", "--length", "30", "--greedy", "--stop", "\n"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def answer(prime, timeout=120):
        proc.stdin.write(prime + b"\n")
        proc.stdin.flush()
        assert select.select([proc.stdout], [], [], timeout)[0], f"no answer to {prime}"
        return proc.stdout.readline()

    try:
        first = answer(b"the ")
        assert first.endswith(b"\n") and first.count(b"\n") == 1
        assert answer(b"\x01bad") == b"\n"
        assert answer(b"the ") == first          # greedy: the same prime, the same text
    finally:
        proc.stdin.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert code == 1 and "Traceback" not in err
    assert "input line 2: character '\\x01'" in err and "1 prime(s) could not be used" in err


def test_num_samples_separators_on_stdout_and_in_the_file(run, tmp_path):
    args = [run / "latest.h5", "--length", "10", "--seed", "2", "--num-samples", "3"]
    model, codec, _ = load_model(run / "latest.h5")
    samples = []
    for n in range(3):
        text = "".join(generate(model, codec, 10, seed=[2, n]))
        samples.append(text + ("" if text.endswith("\n") else "\n"))
    shown = gen(*args)
    assert shown.exit_code == 0
    assert shown.stdout == "".join(f"--- sample {n + 1} of 3 ---\n{s}"
                                   for n, s in enumerate(samples))
    written = gen(*args, "-o", tmp_path / "out.txt")
    assert written.exit_code == 0 and (tmp_path / "out.txt").read_text() == shown.stdout
    custom = gen(*args, "--separator", "<{n}/{N}>")
    assert custom.stdout == "".join(f"<{n + 1}/3>\n{s}" for n, s in enumerate(samples))
    assert gen(*args, "--separator", "").stdout == "".join(samples)
    one = gen(run / "latest.h5", "--length", "10", "--seed", "2")
    assert "sample" not in one.stdout + one.stderr


@pytest.mark.parametrize("stop, symbol", [("\u65e5\u672c", "'\u65e5' (U+65E5)"),
                                          ("ok\x01", "'\\x01' (U+0001)")])
def test_a_stop_string_the_model_cannot_write_is_an_error(run, stop, symbol):
    result = gen(run / "latest.h5", "--length", "10", "--stop", "e", "--stop", stop)
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and symbol in lines[0] and "--stop" in lines[0], lines
    model, codec, _ = load_model(run / "latest.h5")
    with pytest.raises(ValueError, match="can never match"):
        next(generate(model, codec, 10, stop=[stop]))


def test_stop_strings_a_word_model_can_write(word_run):
    ok = gen(word_run / "latest.h5", "--length", "5", "--seed", "1", "--stop", "the fox\n")
    assert ok.exit_code == 0, ok.output
    bad = gen(word_run / "latest.h5", "--length", "5", "--stop", "fox!")
    assert bad.exit_code == 1 and "'!'" in bad.stderr


def test_a_stop_of_eos_at_word_level_is_refused(word_run):
    """<eos> is written as a line break: such a stop never matched, and the run went on to
    its full length."""
    result = CliRunner().invoke(main, ["generate", str(word_run / "latest.h5"), "--stop",
                                       "<eos>", "--length", "5"])
    assert result.exit_code == 1 and "use --until-eos" in result.output


def test_a_dash_is_standard_input_and_output(run, tmp_path):
    # before: "File '-' does not exist" for --prime-file - and eval --text -, and -o - wrote
    # a file named '-'
    import subprocess
    import sys

    def rnnkit(*args, text):
        return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)], input=text,
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)

    piped = rnnkit("generate", run / "latest.h5", "--prime-file", "-", "--length", 20,
                   "--seed", 1, "-o", "-", "--threads", 1, text="line 1")
    given = rnnkit("generate", run / "latest.h5", "--prime", "line 1", "--length", 20,
                   "--seed", 1, "--threads", 1, text="")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == given.stdout and not (tmp_path / "-").exists()
    (tmp_path / "t.txt").write_text("line 1: the quick brown fox\n")
    piped = rnnkit("eval", run / "latest.h5", "--text", "-", "-q", "--threads", 1,
                   text="line 1: the quick brown fox\n")
    named = rnnkit("eval", run / "latest.h5", "--text", tmp_path / "t.txt", "-q",
                   "--threads", 1, text="")
    assert piped.returncode == 0, piped.stderr
    lines = lambda out: [line for line in out.splitlines()
                         if not line.startswith(("source", "seconds", "tokens_per_s"))]
    assert lines(piped.stdout) == lines(named.stdout)
