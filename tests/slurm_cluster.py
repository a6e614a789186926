"""A one-node SLURM cluster for tests: munge, slurmctld and slurmd started as root from a
config in a temporary folder, on ports of its own (Debian's slurm-wlm and munge; .ci/run
installs them)."""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF = """ClusterName=rnnkit-test
SlurmctldHost={host}
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ReturnToService=2
MpiDefault=pmi2
JobRequeue=1
FirstJobId={first}
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing():
    """Why a cluster cannot start here, or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("slurmctld", "slurmd", "sbatch", "scontrol", "munged"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"no {tool} (apt-get install slurm-wlm munge; .ci/run does)"
    return None


def _munge():
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(1024))
    for folder in ("/etc/munge", "/var/run/munge", "/var/lib/munge", "/var/log/munge"):
        os.makedirs(folder, exist_ok=True)
        subprocess.run(["chown", "-R", "munge:munge", folder], capture_output=True)
    os.chmod(key, 0o400)
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode:
        munged = shutil.which("munged") or "/usr/sbin/munged"
        if subprocess.run(["runuser", "-u", "munge", "--", munged], capture_output=True).returncode:
            subprocess.run([munged, "--force"], check=True)


class Cluster:
    def __init__(self, folder):
        self.d = Path(folder)
        self.env = dict(os.environ, SLURM_CONF=str(self.d / "slurm.conf"))

    def start(self):
        for sub in ("state", "spool"):
            (self.d / sub).mkdir(parents=True, exist_ok=True)
        # job ids of their own: MPICH names its shared memory after the job step, and a
        # step left by an earlier cluster must not meet this one's
        (self.d / "slurm.conf").write_text(CONF.format(host=socket.gethostname(), d=self.d,
                                                       cpus=os.cpu_count(),
                                                       first=1000 + os.getpid() % 1000000))
        _munge()
        for daemon in ("slurmctld", "slurmd"):
            path = shutil.which(daemon) or f"/usr/sbin/{daemon}"
            subprocess.run([path, "-f", str(self.d / "slurm.conf")], env=self.env, check=True)
        deadline = time.monotonic() + 60
        while "idle" not in self.run("sinfo", "-h", "-o", "%T").stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster's node did not come up: "
                                   + (self.d / "slurmctld.log").read_text()[-2000:])
            time.sleep(0.5)
        return self

    def stop(self):
        # the jobs first: their steps outlive slurmd
        self.run("scancel", "--full", "--signal=KILL", "--partition=main")
        deadline = time.monotonic() + 20
        while self.run("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)
        for name in ("slurmd", "slurmctld"):
            pid = self.d / f"{name}.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().split()[0]), 15)
                except (OSError, ValueError):
                    pass

    def run(self, *cmd, env=None, **kw):
        return subprocess.run(list(cmd), env=env or self.env, capture_output=True, text=True,
                              **kw)

    def state(self, job):
        out = self.run("scontrol", "show", "job", str(job)).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        return fields.get("JobState"), int(fields.get("Restarts", "0"))
