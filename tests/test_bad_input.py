"""Every command through a battery of bad inputs: one line on stderr, a non-zero exit, no
traceback, no new file and nothing that existed changed. (Full disks: tests/test_faults.py.)"""
import hashlib
import os
import shutil

import pytest
from click.testing import CliRunner

from rnnkit.cli.main import main
from tests.test_faults import flip_byte, flip_header
from tests.tiny_run import make_corpus, make_run


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder of good and bad inputs: text in UTF-8 and Latin-1, binary bytes, a corpus, a
    trained run, truncated and bit-flipped copies of both, a corpus with another vocabulary
    and one without a test split, bad config files, an empty folder, texts with byte order
    marks."""
    d = tmp_path_factory.mktemp("bad")
    corpus = make_corpus(d)
    run = make_run(d, corpus)
    (d / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))
    (d / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (d / "unknown.txt").write_text("line 1: the quick brown fox\nZebra\n", encoding="utf-8")
    (d / "bom.txt").write_text("line 1: the quick brown fox\n", encoding="utf-8-sig")
    (d / "utf16.txt").write_text("line 1: the quick brown fox\n", encoding="utf-16")
    other = d / "other"
    other.mkdir()
    make_corpus(other, text="xyz " * 200)
    shutil.copy(other / "char.h5", d / "other.h5")
    from rnnkit.corpus.preprocess import preprocess
    preprocess([str(d / "t.txt")], str(d / "novt.h5"), val_frac=0.1, test_frac=0.0)
    preprocess([str(d / "t.txt")], str(d / "trainonly.h5"), val_frac=0.0, test_frac=0.0)
    for name, src in (("corpus", corpus), ("ck", run / "latest.h5")):
        data = open(src, "rb").read()
        (d / f"{name}-cut.h5").write_bytes(data[:len(data) // 2])
        shutil.copy(src, d / f"{name}-flip.h5")
    flip_byte(d / "corpus-flip.h5", "train")
    flip_byte(d / "ck-flip.h5", "weights/embed")
    for name, src, member in (("ck-head", run / "latest.h5", "weights/embed"),
                              ("ck-root", run / "latest.h5", "/"),
                              ("corpus-head", corpus, "train")):
        shutil.copy(src, d / f"{name}.h5")
        flip_header(d / f"{name}.h5", member)
    (d / "bad.toml").write_text("[model\n")
    (d / "typo.toml").write_text("[model]\nhiden = 3\n")
    (d / "empty").mkdir()
    return d


def snapshot(folder):
    out = {}
    for root, dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
        out.update({os.path.join(root, name) + "/": "dir" for name in dirs})
    return out


SMALL = ["--batch-size", "4", "--seq-len", "8"]
CASES = [
    # preprocess
    (["preprocess", "{d}/nope.txt", "-o", "{d}/x.h5"], "no such file or folder", 1),
    (["preprocess", "{d}/empty", "-o", "{d}/x.h5"], "has no text files", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/x.h5", "--encoding", "bogus"], "unknown encoding", 1),
    (["preprocess", "{d}/latin1.txt", "-o", "{d}/x.h5"], "--encoding", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/char.h5"], "exists; use --force", 1),
    (["preprocess", "{d}/t.txt", "-o", "/dev/null", "-f"], "device", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/t.txt", "-f"], "also an input", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/x.h5", "--val-frac", "0.6", "--test-frac", "0.5"],
     "leaves no training data", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/x.h5", "--vocab-from", "{d}/corpus-cut.h5"],
     "truncated", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/x.h5", "--max-vocab", "2"], "--max-vocab", 2),
    (["preprocess", "{d}/bom.txt", "-o", "{d}/x.h5", "--encoding", "ascii"],
     "byte order mark: read it with --encoding utf-8-sig", 1),
    (["preprocess", "{d}/bom.txt", "-o", "{d}/x.h5", "--vocab-from", "{d}/char.h5"],
     "byte order mark: read it with --encoding utf-8-sig", 1),
    (["preprocess", "{d}/utf16.txt", "-o", "{d}/x.h5"], "--encoding utf-16", 1),
    # train
    (["train", "{d}/run/latest.h5", "-o", "{d}/r"], "a checkpoint", 1),
    (["train", "{d}/corpus-cut.h5", "-o", "{d}/r"], "truncated", 1),
    (["train", "{d}/corpus-flip.h5", "-o", "{d}/r", "--threads", "1", *SMALL], "checksum", 1),
    (["train", "{d}/nope.h5", "-o", "{d}/r"], "does not exist", 2),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--batch-size", "100000"], "too few", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--hidden", "0"], "--hidden", 2),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--hidden", "100000000", *SMALL], "needs about", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--lr", "-1"], "--lr", 2),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--max-time", "soon"], "not a duration", 2),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--dtype", "float16"], "--dtype", 2),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--embed", "8", "--hidden", "16",
      "--tie-weights"], "tie_weights needs embed == hidden", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--device", "gpu7"], "unknown device", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--device", ""], "unknown device", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--config", "{d}/bad.toml"], "not valid TOML", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--config", "{d}/typo.toml"], "unknown key", 1),
    (["train", "{d}/char.h5", "-o", "{d}/run"], "already holds a run", 1),
    (["train", "--resume", "{d}/empty"], "no latest.h5", 1),
    (["train", "--resume", "{d}/run", "--hidden", "32"], "comes from the checkpoint", 1),
    (["train", "--resume", "{d}/run", "--seed", "5"], "[train] seed comes from the checkpoint",
     1),
    (["train", "--resume", "{d}/run", "--new-corpus"], "--new-corpus takes the CORPUS", 2),
    # settings that would do nothing
    (["train", "{d}/char.h5", "-o", "{d}/r", *SMALL, "--cutoffs", "10"],
     "[model] cutoffs applies to softmax = adaptive only", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", *SMALL, "--warmup", "10"],
     "[schedule] warmup does not apply to the constant schedule (--warmup: cosine only)", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", *SMALL, "--schedule", "cosine", "--warmup", "100",
      "--max-steps", "50"], "--warmup 100 must be less than the cosine schedule's length, 50",
     1),
    (["train", "{d}/char.h5", "-o", "{d}/r", *SMALL, "--schedule", "step", "--max-decays", "2"],
     "[schedule] max_decays does not apply to the step schedule", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", *SMALL, "--val-split", "", "--eval-every", "5"],
     "[train] eval_every sets when and how much to validate", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", *SMALL, "--val-split", "", "--patience", "2"],
     "[train] patience stops when validation stops improving, and this run has none", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", *SMALL, "--val-split", "", "--schedule",
      "plateau"], "the plateau schedule decays on validation, and this run has none", 1),
    (["generate", "{d}/run/latest.h5", "--greedy", "--temperature", "0.5"],
     "--greedy takes the most likely token each step: --temperature", 2),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/t.txt", "--split", "val"],
     "--split chooses a split of a corpus", 2),
    (["train", "--resume", "{d}/run", "--max-steps", "30", "{d}/other.h5"],
     "another vocabulary", 1),
    (["train", "{d}/novt.h5", "-o", "{d}/r", "--train-split", "test"],
     "--train-split 'test': {d}/novt.h5 has no such split (it has train, val)", 1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--val-split", "nope"], "--val-split 'nope'", 1),
    (["train", "--resume", "{d}/run", "--init-from", "{d}/run/latest.h5"], "give one of them",
     1),
    (["train", "{d}/char.h5", "-o", "{d}/r", "--new-corpus"], "goes with --resume", 2),
    # generate
    (["generate", "{d}/char.h5"], "a corpus", 1),
    (["generate", "{d}/ck-cut.h5"], "truncated", 1),
    (["generate", "{d}/ck-flip.h5"], "checksum", 1),
    (["generate", "{d}/run/latest.h5", "--prime", "Zebra"], "line 1, column 1", 1),
    (["generate", "{d}/run/latest.h5", "--temperature", "0"], "--temperature", 2),
    (["generate", "{d}/run/latest.h5", "--length", "5", "-o", "{d}/newdir/"], "names a folder",
     1),
    (["generate", "{d}/run/latest.h5", "--temperature", "1e-310"], "--temperature", 2),
    (["generate", "{d}/run/latest.h5", "--seed", "4294967301"], "--seed", 2),
    (["generate", "{d}/run/latest.h5", "--beam", "2", "--length", "1" + "0" * 40], "--length",
     2),
    (["generate", "{d}/run/latest.h5", "--length", "-5"], "--length", 2),
    (["generate", "{d}/t.txt"], "not an HDF5 file", 1),
    # eval
    (["eval", "{d}/char.h5", "{d}/run/latest.h5"], "a corpus", 1),
    (["eval", "{d}/run/latest.h5", "{d}/other.h5"], "another vocabulary", 1),
    (["eval", "{d}/run/latest.h5", "{d}/novt.h5", "--split", "test"], "no 'test' split", 1),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/latin1.txt"], "--encoding", 1),
    (["eval", "{d}/run/latest.h5", "{d}/trainonly.h5"], "has no test or val split; --split "
     "train evaluates on the training text", 1),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/t.txt", "--encoding", "bogus"],
     "unknown encoding", 2),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/t.txt", "--encoding", "base64"],
     "'base64' is not a text encoding", 2),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/t.txt", "--encoding", "utf-16"],
     "t.txt is not valid utf-16: UTF-16 stream does not start with BOM", 1),
    (["score", "{d}/run/latest.h5", "{d}/t.txt", "--encoding", "rot13"],
     "'rot13' is not a text encoding", 2),
    (["score", "{d}/run/latest.h5", "{d}/t.txt", "--encoding", "utf-16"],
     "not valid utf-16", 1),
    (["generate", "{d}/run/latest.h5", "--prime", "a", "--encoding", "bogus"],
     "unknown encoding", 2),
    (["generate", "{d}/run/latest.h5", "--prime-file", "{d}/t.txt", "--encoding", "utf-16"],
     "not valid utf-16", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/x.h5", "--encoding", "utf-16"],
     "t.txt: not valid utf-16: UTF-16 stream does not start with BOM", 1),
    (["preprocess", "{d}/t.txt", "-o", "{d}/x.h5", "--encoding", "punycode"],
     "not valid punycode", 1),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/unknown.txt"], "line 2, column 1", 1),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/binary.bin"], "--encoding", 1),
    (["eval", "{d}/run/latest.h5", "{d}/corpus-flip.h5", "--split", "train"], "checksum", 1),
    (["eval", "{d}/run/latest.h5", "{d}/char.h5", "--text", "{d}/t.txt"], "give either CORPUS",
     2),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/bom.txt"], "--encoding utf-8-sig", 1),
    (["eval", "{d}/run/latest.h5", "--text", "{d}/utf16.txt"], "--encoding utf-16", 1),
    (["score", "{d}/run/latest.h5", "{d}/bom.txt"], "--encoding utf-8-sig", 1),
    # info, plot
    (["info", "{d}/t.txt"], "not an HDF5 file", 1),
    (["info", "{d}/corpus-cut.h5"], "truncated", 1),
    (["info", "--verify", "{d}/corpus-flip.h5"], "checksum", 1),
    # a damaged object header (metadata, not data)
    (["info", "{d}/ck-head.h5"], "dataset /weights/embed is damaged", 1),
    (["info", "--verify", "{d}/ck-head.h5"], "dataset /weights/embed is damaged", 1),
    (["info", "{d}/ck-root.h5"], "checksum", 1),
    (["generate", "{d}/ck-head.h5"], "dataset /weights/embed is damaged", 1),
    (["generate", "{d}/ck-root.h5"], "checksum", 1),
    (["eval", "{d}/ck-head.h5", "{d}/char.h5"], "dataset /weights/embed is damaged", 1),
    (["info", "{d}/corpus-head.h5"], "checksum", 1),
    (["eval", "{d}/run/latest.h5", "{d}/corpus-head.h5"], "checksum", 1),
    (["train", "{d}/corpus-head.h5", "-o", "{d}/r", "--threads", "1", *SMALL], "checksum", 1),
    (["info", "{d}/empty"], "not a run folder", 1),
    (["info", "{d}/nope.h5"], "does not exist", 2),
    (["plot", "{d}/empty"], "no metrics.jsonl", 1),
    (["plot", "{d}/t.txt"], "is a file", 2),
    (["plot", "{d}/run", "-o", "{d}/t.txt"], "exists; use --force", 1),
]


@pytest.mark.parametrize("args,message,code", CASES,
                         ids=[" ".join(a[:1] + a[2:3]) + f" {i}" for i, (a, _, _) in
                              enumerate(CASES)])
def test_one_line_and_nothing_changed(place, args, message, code):
    before = snapshot(place)
    result = CliRunner().invoke(main, [a.format(d=place) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert message.format(d=place) in errors[0], errors[0]
    assert snapshot(place) == before
