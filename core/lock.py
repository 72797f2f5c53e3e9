"""One exclusive lock per output directory, taken by every stage (and a reproduction) before it looks at its output.

Without it two processes given the same `--out` both pass the "same config?" check and interleave their files: two
identical runs log every metric twice, two different ones end with one's config and the other's weights. The lock
is an advisory `flock` on a hidden file beside the output (`.NAME.lock`), because the output may not exist yet or may
be renamed into place at the end. The kernel drops a `flock` when its holder dies, however it dies, so a lock file
left by a killed process is simply taken over, with no guessing from pids or hosts; the holder's pid, host, start
time and command are written into the file only so that a refused process can say who holds it. An output written
through a temporary sibling (`.NAME.tmp-PID`: a corpus, an evaluation) leaves that sibling behind when its writer is
killed; the next holder of the lock removes it, since no live process can own it then. A multi-process (DDP) run
starts every rank with the same command line, so only global rank 0 takes the lock; the other ranks run under it.
Apart from `core.rundir` so that `lab datagen` locks its corpus without importing torch.

    with exclusive(out):      # raises LockError naming the holder, or the parent path that is a file
        ...check, resume or skip, write...
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockError(ValueError):
    """The output cannot be taken: another live process holds it, or its path cannot exist. Nothing was touched."""


def lock_path(out: str | Path) -> Path:
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


@contextmanager
def exclusive(out: str | Path) -> Iterator[Path]:
    """Hold the lock on output `out` for the body (yields the lock file's path)."""
    out = Path(os.path.abspath(out))  # "runs/c/", "." and "a/../c" must all name the lock beside the same directory
    path = lock_path(out)
    if _secondary_rank():
        yield path
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LockError(f"{out}: cannot be created, a parent path is a file") from None
    fd = _acquire(out, path)
    stale = _describe(fd) if os.fstat(fd).st_size else None
    if stale is not None:
        print(f"{out}: taking over the lock of {stale}, which has exited", file=sys.stderr)
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    for leftover in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        yield path
    finally:
        os.unlink(path)  # before letting go, so a waiter that opened this file notices (see _acquire)
        os.close(fd)


def _secondary_rank() -> bool:
    """Whether this process is a rank other than 0 of a distributed run (torchrun / Lightning's launcher / srun)."""
    for name in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(name, "0")
        if value.isdigit() and int(value) != 0:
            return True
    return False


def _acquire(out: Path, path: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise LockError(f"{out}: in use by {holder}; wait for it to finish, or choose another --out") from None
        # The previous holder unlinks the file as it lets go; a lock on that unlinked file would guard nothing.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _describe(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 65536, 0))
        return f"pid {holder['pid']} on {holder['host']} since {holder['started']} (command: {holder['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process (it has not recorded itself yet)"
