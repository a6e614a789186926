"""examples/slurm/train.sbatch on a real one-node SLURM cluster: two MPI ranks under srun,
SIGUSR1 from the scheduler reaching rnnkit, exit 75 and a requeue, and the requeued job
resuming to the end."""
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from rnnkit import checkpoint
from tests.slurm_cluster import Cluster, missing
from tests.tiny_run import make_corpus

SCRIPT = Path(__file__).parent.parent / "examples" / "slurm" / "train.sbatch"
pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no SLURM here: {missing()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("slurm")).start()
    yield c
    c.stop()


def wait(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.5)


def test_signal_requeue_resume(cluster, tmp_path):
    corpus = make_corpus(tmp_path)
    rnnkit = shutil.which("rnnkit", path=os.path.dirname(sys.executable))
    env = dict(cluster.env, RUN=str(tmp_path / "run"), CORPUS=corpus, RNNKIT=rnnkit,
               TRAIN_ARGS="--batch-size 4 --seq-len 8 --hidden 16 --embed 8 --max-steps 300 "
                          "--checkpoint-every 20 --threads 1 -q")
    submitted = cluster.run("sbatch", "--export=ALL", f"--chdir={tmp_path}", str(SCRIPT),
                            env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split()[-1]
    latest = tmp_path / "run" / "latest.h5"
    wait(lambda: latest.exists() and checkpoint.read_meta(latest)["step"] >= 20, 300,
         "the first checkpoint")
    cluster.run("scancel", "--signal=USR1", job)         # what --signal=USR1@120 sends
    wait(lambda: cluster.state(job)[1] >= 1, 120, "the requeue")
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")   # skip the delay
    wait(lambda: cluster.state(job)[0] in ("COMPLETED", "FAILED", "CANCELLED"), 300,
         "the resumed job to end")
    log = "".join(p.read_text() for p in tmp_path.glob("rnnkit-*.out"))
    assert cluster.state(job) == ("COMPLETED", 1), log
    assert "2 ranks" in log and "stopped by SIGUSR1" in log and "exit code 75" in log
    assert "resuming" in log and "300 steps done" in log and "Traceback" not in log
    assert checkpoint.read_meta(latest)["step"] == 300
