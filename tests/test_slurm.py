"""End-to-end checks of the execution layer against a real (private, single-node) SLURM.

Why it is shaped so: the failure modes that matter -- array bookkeeping, error propagation
from a sibling task, and timeout -> checkpoint -> requeue -> resume -- live in the interplay
of submitit with slurmctld/slurmd, so they are exercised with real daemons rather than
mocks. Job functions live in this module and are pickled by reference, so the jobs import it
too (PYTHONPATH is pointed at its import root). The preemption signal is sent with submitit's
own ``job._interrupt(timeout=True)`` instead of waiting out a real time limit: slurmctld only
checks limits every ~30s, which would make the test slow and its timing loose.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import submitit

from sweeps.checkpointing import CheckpointableStage
from sweeps.executors import StageResources, make_executor

IMPORT_ROOT = Path(__file__).resolve().parents[__name__.count(".")]
SMALL = {"mem_gb": 0.25, "timeout_min": 5}


def square(x: int) -> int:
    return x * x


def fail_on_negative(x: int) -> int:
    if x < 0:
        raise ValueError(f"refusing negative input {x}")
    return x + 100


def resumable_stage(workdir: str, total: int) -> int:
    """Counts to `total` in 0.3s steps, persisting progress like a real stage checkpoint.

    Appends the progress it started from to `starts`, and returns it: a resumed run returns > 0.
    """
    work = Path(workdir)
    progress = work / "progress"
    done = int(progress.read_text()) if progress.exists() else 0
    with open(work / "starts", "a") as f:
        f.write(f"{done}\n")
    for step in range(done, total):
        time.sleep(0.3)
        tmp = work / "progress.tmp"
        tmp.write_text(str(step + 1))
        tmp.replace(progress)
    return done


@pytest.fixture
def job_env(monkeypatch):
    """Jobs inherit our environment (sbatch --export=ALL), so they can import this module."""
    paths = [str(IMPORT_ROOT), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))


def wait_all(jobs: list[submitit.Job], timeout_s: float) -> None:
    # job.wait() has no timeout; a stuck job must fail the test, not hang the suite.
    deadline = time.monotonic() + timeout_s
    while not all(job.done() for job in jobs):
        if time.monotonic() > deadline:
            states = {job.job_id: job.state for job in jobs}
            pytest.fail(f"jobs not done after {timeout_s}s: {states}")
        time.sleep(0.5)


def final_state(job: submitit.Job, timeout_s: float = 30) -> str:
    """SLURM's terminal state for the job, polled the way submitit does it (through sacct).

    A result pickle exists a moment before SLURM has the job COMPLETED, hence the wait.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        state = job.get_info(mode="force").get("State", "UNKNOWN")
        if job.watcher.is_done(job.job_id, mode="cache") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slurm
def test_map_array_runs_on_slurm(slurm_cluster, job_env, tmp_path):
    resources = StageResources(partition=slurm_cluster.partition, array_parallelism=2,
                               extra={"comment": "sweeps-test"}, **SMALL)
    executor = make_executor("slurm", tmp_path, resources)
    jobs = executor.map_array(square, range(5))
    wait_all(jobs, 90)

    assert [job.result() for job in jobs] == [x * x for x in range(5)]
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(5)]
    # State polling goes through `sacct`, i.e. the cluster's squeue-backed stand-in.
    assert {final_state(job) for job in jobs} == {"COMPLETED"}
    sbatch = (tmp_path / f"{array_id}_submission.sh").read_text()
    for line in ("--array=0-4%2", f"--partition={slurm_cluster.partition}", "--mem=256MB",
                 "--cpus-per-task=1", "--time=5", "--comment=sweeps-test"):
        assert f"#SBATCH {line}" in sbatch
    assert "--gpus-per-node" not in sbatch


@pytest.mark.slurm
def test_failing_task_does_not_stop_siblings(slurm_cluster, job_env, tmp_path):
    executor = make_executor("slurm", tmp_path, StageResources(partition=slurm_cluster.partition, **SMALL))
    jobs = executor.map_array(fail_on_negative, [1, -7, 2])
    wait_all(jobs, 90)

    assert jobs[0].result() == 101 and jobs[2].result() == 102
    error = jobs[1].exception()
    assert isinstance(error, submitit.core.utils.FailedJobError)
    assert "ValueError: refusing negative input -7" in str(error)
    with pytest.raises(submitit.core.utils.FailedJobError):
        jobs[1].result()
    stderr_path = jobs[1].paths.stderr
    assert stderr_path.exists() and str(stderr_path) in str(error)
    assert "refusing negative input -7" in stderr_path.read_text()
    assert final_state(jobs[1]) == "FAILED"


@pytest.mark.slurm
def test_interrupted_stage_is_requeued_and_resumes(slurm_cluster, job_env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    total = 30
    resources = StageResources(partition=slurm_cluster.partition, **SMALL)
    executor = make_executor("slurm", tmp_path / "jobs", resources)
    job = executor.submit(CheckpointableStage(), f"{__name__}:resumable_stage", str(work), total)

    progress = work / "progress"
    wait_for(lambda: progress.exists() and int(progress.read_text()) >= 3, 60, "the stage to make progress")
    job._interrupt(timeout=True)  # USR2 to the job step, as SLURM sends before a time limit
    wait_all([job], 120)

    resumed_from = job.result()
    starts = [int(line) for line in (work / "starts").read_text().split()]
    assert len(starts) >= 2, f"job was not restarted: starts={starts}"
    assert starts[0] == 0 and resumed_from == starts[-1] >= 3, f"restarted from zero: starts={starts}"
    assert int(progress.read_text()) == total
    # SLURM's own view: the same job id ran again after a requeue.
    assert "Restarts=0" not in slurm_cluster.run("scontrol", "show", "job", job.job_id)
    assert f"Requeued job {job.job_id}" in job.paths.stdout.read_text()
    assert final_state(job) == "COMPLETED"


def test_local_executor_runs_in_a_subprocess(job_env, tmp_path):
    executor = make_executor("local", tmp_path, StageResources(timeout_min=2, mem_gb=0.25))
    job = executor.submit(CheckpointableStage(), "os:getpid")
    wait_all([job], 60)
    pid = job.result()
    assert isinstance(pid, int) and pid != os.getpid()


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_cluster_that_cannot_start_fails_in_ci_and_skips_elsewhere(ci, outcome, monkeypatch):
    from tests.slurm_cluster import skip_unless_ci

    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="needs root"):
        skip_unless_ci("a private SLURM cluster needs root")
