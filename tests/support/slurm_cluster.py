"""A real one-node SLURM cluster on localhost for the tests (Debian's slurm-wlm + munge).

``bash setup.sh test`` installs the packages; this module only starts and stops daemons.
slurm.conf goes to /etc/slurm/slurm.conf because the SLURM executor's job-step plugin
strips SLURM_CONF from the environment of the inner ``srun`` (a real cluster's config
lives there too); an existing file that this module did not write is never touched.
Daemons are stopped by PID afterwards; munged only if this module started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by traitlens tests/support/slurm_cluster.py"
TOOLS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun")
PARTITION = "debug"


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def slurm_conf(work: Path, host: str, cpus: int, memory_mb: int) -> str:
    return f"""{MARKER}
ClusterName=traitlens-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldPort=16817
SlurmdPort=16818
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _munge_works() -> bool:
    try:
        encoded = subprocess.run([_tool("munge"), "-n"], capture_output=True, timeout=10)
        if encoded.returncode != 0:
            return False
        decoded = subprocess.run(
            [_tool("unmunge")], input=encoded.stdout, capture_output=True, timeout=10
        )
        return decoded.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_munged() -> int | None:
    """Start munged as the munge user unless one already answers; its PID if started."""
    if _munge_works():
        return None
    for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", _tool("munged")], check=True)
    for _ in range(50):
        if _munge_works():
            return int(Path("/run/munge/munged.pid").read_text())
        time.sleep(0.1)
    raise RuntimeError("munged started but munge -n | unmunge fails")


def _read_pid(path: Path, timeout: float) -> int:
    """A daemon writes its PID file after it has forked: wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear within {timeout} s")


def _wait_idle(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            [_tool("sinfo"), "-h", "-o", "%t"], capture_output=True, text=True, timeout=10
        )
        state = out.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise RuntimeError(f"the SLURM node did not become idle within {timeout} s (state {state!r})")


class Cluster:
    """Start with :meth:`start`, always :meth:`stop` (a context manager does both)."""

    def __init__(self, work: Path):
        self.work = work
        self.pids: list[int] = []
        self.wrote_conf = False

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()  # nothing half-started is left behind
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if CONF.exists() and MARKER not in CONF.read_text():
            raise RuntimeError(f"{CONF} exists and is not ours: not replacing a real cluster's")
        for sub in ("state", "spool"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(slurm_conf(self.work, host, os.cpu_count() or 1, memory_mb))
        self.wrote_conf = True
        munged = _start_munged()
        if munged:
            self.pids.append(munged)
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([_tool(daemon)], check=True)
            self.pids.append(_read_pid(self.work / f"{daemon}.pid", 20))
        _wait_idle(60)

    def stop(self) -> None:
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for pid in self.pids:
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
        self.pids = []
        if self.wrote_conf and CONF.exists() and MARKER in CONF.read_text():
            CONF.unlink()
        self.wrote_conf = False

    def log_tail(self, n: int = 30) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.work / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-n:]))
        return "\n".join(parts)


def shorten_plugin_pacing(max_check_interval: float = 2.0) -> None:
    """In the Snakemake process of the SLURM test (``run_snakemake(prelude=...)``): drop the
    SLURM executor plugin's pacing, which a one-node cluster on localhost does not need.

    The plugin sleeps 5 s before every sbatch, and after each status check that finds no
    job finished it waits 10 s longer for the next (up to 180 s): both spare a busy
    production controller. On the tiny demo they were most of the test's minutes (24
    submissions). Submission, the job scripts, the job steps and the status queries stay
    the plugin's own; only the waits between them go. The profile's users keep them.
    """
    import time as real_time
    import types

    import snakemake_executor_plugin_slurm as plugin

    # the plugin's module-level ``time``: everything as before but the pause
    no_pause = types.SimpleNamespace(
        **{name: getattr(real_time, name) for name in dir(real_time) if not name.startswith("_")}
    )
    no_pause.sleep = lambda seconds: None
    plugin.time = no_pause
    backoff = plugin.Executor.next_seconds_between_status_checks  # the base class property

    def capped(executor, seconds):
        backoff.fset(executor, None if seconds is None else min(seconds, max_check_interval))

    plugin.Executor.next_seconds_between_status_checks = property(backoff.fget, capped)
