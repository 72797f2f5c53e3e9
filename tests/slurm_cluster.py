"""A private, single-node SLURM cluster for tests, started from scratch in a temp dir.

Why it is shaped so: submitit's SLURM path is only exercised for real by talking to real
slurmctld/slurmd daemons, and those must not touch (or depend on) any system-wide SLURM or
munge set-up. So everything -- munge key and socket, slurm.conf, spool/state dirs, ports,
logs -- lives under one temp dir, the daemons run in the foreground as our own children,
and client commands (sbatch/squeue/sacct/scontrol, also the ones submitit runs inside jobs)
find the cluster through ``SLURM_CONF``.

There is no slurmdbd (accounting_storage/none), so the real ``sacct`` only answers "Slurm
accounting storage is disabled" -- and submitit 1.5.4 has no squeue fallback: its watcher
logs "Bypassing sacct error" and every job's state stays UNKNOWN. Results still arrive (jobs
are judged done by their result pickle), but ``job.state`` would be useless and a job killed
without a pickle would make ``job.wait()`` hang. So the cluster puts a small ``sacct`` first
on PATH that answers submitit's one query shape from ``squeue --states=all`` (real states from
slurmctld, kept MinJobAge seconds after a job ends) and passes anything else to the real one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO_ROOT / ".ci" / "install-slurm.sh"
NODE = "localhost"
PARTITION = "debug"
REQUIRED_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scontrol", "srun", "munged")

SACCT_SHIM = """#!/bin/bash
# submitit's SlurmInfoWatcher runs exactly: sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID...]
args=" $* "
if [[ $args != *" -o JobID,State,NodeList "* || $args != *" --parsable2 "* ]]; then
    exec {real} "$@"
fi
ids=()
while [ $# -gt 0 ]; do
    case "$1" in -j|--jobs) ids+=("$2"); shift 2 ;; *) shift ;; esac
done
echo "JobID|State|NodeList"
exec squeue --noheader --states=all --format='%i|%T|%N' --jobs="$(IFS=,; echo "${{ids[*]}}")"
"""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    partition: str = PARTITION
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def env(self) -> dict[str, str]:
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout


def skip_unless_ci(reason: str) -> None:
    """Skip the calling test, except in CI (CI=true), where a cluster that cannot be set up must fail the run: a
    skipped SLURM suite would otherwise pass CI having tested nothing."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true but the SLURM tests cannot run: {reason}")
    pytest.skip(reason)


def ensure_slurm() -> None:
    """Install slurm-wlm + munge if needed, or skip the calling test with the reason (fail it in CI)."""
    if all(shutil.which(b) for b in REQUIRED_BINARIES):
        return
    try:
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        skip_unless_ci(f"could not install slurm-wlm/munge via {INSTALL_SCRIPT}: {str(detail).strip()[-500:]}")
    missing = [b for b in REQUIRED_BINARIES if not shutil.which(b)]
    if missing:
        skip_unless_ci(f"SLURM install finished but binaries are missing: {missing}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware() -> str:
    """`slurmd -C` reports what slurmd itself will detect; declaring exactly that avoids the
    node being drained for "Low RealMemory"/CPU count mismatch."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0].split()
    return " ".join(word for word in first if not word.startswith("NodeName="))


def write_config(root: Path) -> Path:
    munge_socket = root / "munge" / "munge.socket"
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(
        f"""\
ClusterName=sweepstest
SlurmctldHost={NODE}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120s).
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job that asks no memory gets the whole node and array tasks run one by one.
DefMemPerCPU=256
SchedulerType=sched/backfill
# Schedule every couple of seconds instead of every 30-60s, so requeued jobs restart promptly.
SchedulerParameters=sched_interval=2,bf_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# A durable record of every job's final state, for post-mortems (`sacct -c` reads it).
JobCompType=jobcomp/filetxt
JobCompLoc={root / "log" / "jobcomp.log"}
ReturnToService=2
# Finished jobs stay visible to squeue (hence to the sacct stand-in) this long.
MinJobAge=120
KillWait=5
OverTimeLimit=0
InactiveLimit=0
NodeName={NODE} NodeAddr=127.0.0.1 {_node_hardware()} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _start_munged(root: Path, procs: dict[str, subprocess.Popen]) -> None:
    """A private munged with a fresh key: never depends on (or alters) /etc/munge."""
    mdir = root / "munge"
    mdir.mkdir(mode=0o700, exist_ok=True)
    key = mdir / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
    # --force: munged insists the socket dir be world-executable so any user can reach it; ours
    # sits in a 0700 pytest temp tree and only root (daemons and jobs) ever talks to it.
    # In the foreground munged logs to stderr, hence no --log-file.
    with open(root / "log" / "munged.log", "wb") as log:
        procs["munged"] = subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={mdir / 'munge.socket'}", f"--key-file={key}",
             f"--pid-file={mdir / 'munged.pid'}", f"--seed-file={mdir / 'munged.seed'}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _wait_for(lambda: (mdir / "munge.socket").exists(), 15, "munged socket", root, procs)


def _wait_for(ready, timeout: float, what: str, root: Path, procs: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [name for name, p in procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{dead} exited while waiting for {what}; logs in {root / 'log'}")
        if ready():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}; logs in {root / 'log'}")


def _node_idle(cluster: SlurmCluster) -> bool:
    res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=cluster.env, capture_output=True, text=True)
    return res.returncode == 0 and res.stdout.strip() == "idle"


def _write_sacct_shim(cluster: SlurmCluster) -> None:
    cluster.bin_dir.mkdir(exist_ok=True)
    shim = cluster.bin_dir / "sacct"
    shim.write_text(SACCT_SHIM.format(real=shutil.which("sacct")))
    shim.chmod(0o755)


def start(root: Path) -> SlurmCluster:
    conf = write_config(root)
    cluster = SlurmCluster(root=root, conf=conf)
    _write_sacct_shim(cluster)
    try:
        _start_munged(root, cluster.procs)
        # -D: stay in the foreground so the daemons are our children and die with us;
        # -i (slurmctld): ignore stale state, each cluster starts from nothing.
        for name, cmd in (("slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)]),
                          ("slurmd", ["slurmd", "-D", "-N", NODE, "-f", str(conf)])):
            with open(root / "log" / f"{name}.stdout", "wb") as out:
                cluster.procs[name] = subprocess.Popen(
                    cmd, env=cluster.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
        _wait_for(lambda: _node_idle(cluster), 60, "sinfo to report the node idle", root, cluster.procs)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def _pids_using(conf: Path) -> list[int]:
    """Processes whose environment names this cluster's config: job steps and slurmstepd."""
    needle = f"SLURM_CONF={conf}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def stop(cluster: SlurmCluster) -> None:
    """Cancel every job, stop the daemons, then kill whatever the jobs left behind."""
    if "slurmctld" in cluster.procs and cluster.procs["slurmctld"].poll() is None:
        cluster.run("scancel", "--user", "root", "--full", check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if not cluster.run("squeue", "-h", "-t", "PD,R,CG,S").strip():
                    break
            except RuntimeError:  # controller gone: nothing left to wait for
                break
            time.sleep(0.5)
    # slurmd before slurmctld before munged: each one still needs the next to shut down cleanly.
    for name in ("slurmd", "slurmctld", "munged"):
        proc = cluster.procs.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for pid in _pids_using(cluster.conf):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_cluster(root: Path) -> Iterator[SlurmCluster]:
    """Start a cluster under ``root`` and point client commands at it via SLURM_CONF.

    Skips without root or when SLURM cannot be installed (fails instead under CI=true); a cluster that is
    installed but does not come up is an error, not a skip, so a broken set-up is never silently passed over.
    """
    if os.geteuid() != 0:
        skip_unless_ci("a private SLURM cluster needs root (apt-get install, slurmd running jobs)")
    ensure_slurm()
    try:
        cluster = start(root)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        logs = "\n".join(f"--- {d}\n{_tail(root, d)}" for d in ("munged", "slurmctld", "slurmd"))
        raise RuntimeError(f"could not start the local SLURM cluster: {exc}\n{logs}") from exc
    # submitit runs sbatch/sacct/scancel through subprocess with the inherited environment.
    previous = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    os.environ.update({k: cluster.env[k] for k in previous})
    try:
        yield cluster
    finally:
        stop(cluster)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _tail(root: Path, daemon: str, lines: int = 15) -> str:
    path = root / "log" / f"{daemon}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"
