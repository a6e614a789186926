"""examples/slurm/train.sbatch on a real one-node SLURM cluster: two MPI ranks under srun,
SIGUSR1 from the scheduler reaching rnnkit, exit 75 and a requeue, and the requeued job
resuming to the end."""
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from rnnkit.training import checkpoint
from tests.slurm_cluster import Cluster, missing
from tests.tiny_run import make_corpus

SCRIPT = Path(__file__).parent.parent / "examples" / "slurm" / "train.sbatch"
pytestmark = [pytest.mark.skipif(missing() is not None, reason=f"no SLURM here: {missing()}"),
              pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("slurm")).start()
    yield c
    c.stop()


def wait(predicate, seconds, what, log):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}; the job's log:\n{log()}"
        time.sleep(0.2)


def test_signal_requeue_resume(cluster, tmp_path):
    corpus = make_corpus(tmp_path)
    rnnkit = shutil.which("rnnkit", path=os.path.dirname(sys.executable))
    # steps slow enough (tens of ms) that the job is still training when the signal comes
    env = dict(cluster.env, RUN=str(tmp_path / "run"), CORPUS=corpus, RNNKIT=rnnkit,
               TRAIN_ARGS="--batch-size 8 --seq-len 64 --hidden 256 --embed 16 --max-steps 300 --epochs 1000 "
                          "--checkpoint-every 20 --threads 1 -q")

    def log():
        return "".join(p.read_text() for p in tmp_path.glob("rnnkit-*.out"))

    submitted = cluster.run("sbatch", "--export=ALL", f"--chdir={tmp_path}", str(SCRIPT),
                            env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split()[-1]
    latest = tmp_path / "run" / "latest.h5"
    wait(lambda: latest.exists() and checkpoint.read_meta(latest)["step"] >= 20, 300,
         "the first checkpoint", log)
    cluster.run("scancel", "--signal=USR1", job)         # what --signal=USR1@120 sends
    # the first run's end (FAILED: exit 75) shows for a moment before the job is pending again
    wait(lambda: cluster.state(job)[1] >= 1 and cluster.state(job)[0] in ("PENDING", "REQUEUED",
         "REQUEUE_HOLD", "CONFIGURING", "RUNNING", "COMPLETING"), 120, "the requeue", log)

    # SLURM delays a requeued job's start; skip that, but not within the second the first
    # run's credential was revoked: slurmd refuses a credential made in that second
    time.sleep(2)

    def started():
        if cluster.state(job)[0] == "PENDING":
            cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
        return "resuming" in log()

    wait(started, 120, "the requeued job to start", log)
    wait(lambda: cluster.state(job)[0] in ("COMPLETED", "FAILED", "CANCELLED"), 300,
         "the resumed job to end", log)
    text = log()
    assert cluster.state(job) == ("COMPLETED", 1), text
    assert "2 ranks" in text and "stopped by SIGUSR1" in text and "exit code 75" in text, text
    assert "resuming" in text and "300 steps done" in text and "Traceback" not in text, text
    assert checkpoint.read_meta(latest)["step"] == 300
