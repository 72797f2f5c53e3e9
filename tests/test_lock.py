"""The output lock (core.lock) with real processes: one holder at a time, the refused process told who holds it,
every stage's CLI refused while another process holds its output, and a killed holder's lock taken over."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.lock import LockError, exclusive, lock_path

REPO = Path(__file__).resolve().parent.parent

# Takes the lock on argv[1], says so, then holds it until argv[2] exists (exit 3 if refused).
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from core.lock import LockError, exclusive
    try:
        with exclusive(sys.argv[1]):
            print("held", flush=True)
            while not Path(sys.argv[2]).exists():
                time.sleep(0.05)
    except LockError as err:
        print(err, file=sys.stderr)
        sys.exit(3)
""")


def _holder(out: Path, release: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(release)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def held(tmp_path):
    """A live process holding the lock on tmp_path/out until the test ends."""
    out, release = tmp_path / "out", tmp_path / "release"
    proc = _holder(out, release)
    assert proc.stdout.readline().strip() == "held"
    yield out, proc
    release.touch()
    assert proc.wait(timeout=60) == 0
    assert not lock_path(out).exists()  # the holder cleans up after itself


def test_concurrent_takers_exactly_one_wins(tmp_path):
    out, release = tmp_path / "out", tmp_path / "release"
    procs = [_holder(out, release) for _ in range(4)]
    refused = []
    for proc in procs:  # everyone but the winner exits 3 on its own; the winner waits for `release`
        try:
            refused.append((proc.wait(timeout=60), proc.stderr.read()))
        except subprocess.TimeoutExpired:
            pass
    if len(refused) != 3:  # kill what is left before failing, so nothing outlives the test
        release.touch()
    assert [code for code, _ in refused] == [3, 3, 3]
    winner = next(p for p in procs if p.returncode is None)
    for _, message in refused:
        assert f"pid {winner.pid} on {socket.gethostname()}" in message and "command:" in message
    release.touch()
    assert winner.wait(timeout=60) == 0


def test_in_process_refusal_names_the_holder(held):
    out, proc = held
    with pytest.raises(LockError, match=rf"in use by pid {proc.pid} on .* since \d{{4}}-\d\d-\d\dT.*command: .*-c"):
        with exclusive(out):
            pass
    assert not out.exists()


@pytest.mark.parametrize("stage", ["datagen", "pretrain", "midtrain", "rl", "eval"])
def test_every_stage_refuses_an_output_another_process_holds(stage, held, tmp_path):
    out, proc = held
    args = {"datagen": [], "pretrain": ["--data", str(tmp_path / "c")],
            "midtrain": ["--data", str(tmp_path / "c"), "--init", str(tmp_path / "i")],
            "rl": ["--data", str(tmp_path / "c"), "--init", str(tmp_path / "i")],
            "eval": ["--data", str(tmp_path / "c"), "--model", str(tmp_path / "i")]}[stage]
    result = subprocess.run([sys.executable, "-m", "sweeps.cli", stage, "--out", str(out), *args, "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"lab {stage}: error: {out}: in use by pid {proc.pid}" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_reproduce_refuses_a_tree_another_process_holds_but_dry_run_does_not(held):
    out, proc = held
    lab = [sys.executable, "-m", "sweeps.cli", "reproduce", "finding1", "--preset", "smoke", "--out", str(out)]
    result = subprocess.run(lab, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"lab reproduce: error: {out}: in use by pid {proc.pid}" in result.stderr and not out.exists()
    planned = subprocess.run([*lab, "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr  # a plan writes nothing, so it needs no lock
    assert "finding1" in planned.stdout and not out.exists()


def test_lock_of_a_killed_holder_is_taken_over(tmp_path, capsys):
    out, release = tmp_path / "out", tmp_path / "release"
    proc = _holder(out, release)
    assert proc.stdout.readline().strip() == "held"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert lock_path(out).exists()  # a killed holder cannot clean up
    with exclusive(out):
        assert f"taking over the lock of pid {proc.pid}" in capsys.readouterr().err
        assert str(os.getpid()) in lock_path(out).read_text()
    assert not lock_path(out).exists()


def test_out_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LockError, match="a parent path is a file"):
        with exclusive(tmp_path / "file" / "out"):
            pass


def test_other_ranks_of_a_distributed_run_share_rank_zeros_lock(held):
    out, proc = held
    enter = "import sys; from core.lock import exclusive\nwith exclusive(sys.argv[1]): print('entered')"
    for rank in ("LOCAL_RANK", "RANK", "SLURM_PROCID"):
        result = subprocess.run([sys.executable, "-c", enter, str(out)], cwd=REPO, env={**os.environ, rank: "1"},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout == "entered\n", result.stderr
    refused = subprocess.run([sys.executable, "-c", enter, str(out)], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "LOCAL_RANK": "0"}, timeout=120)
    assert refused.returncode == 1 and f"in use by pid {proc.pid}" in refused.stderr
    assert proc.poll() is None and lock_path(out).exists()  # rank 0's lock untouched
