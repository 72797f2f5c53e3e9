"""Run a sweep's steps as submitit jobs, locally (the default) or on SLURM.

Locally, steps run one wave at a time, `parallel` jobs at once, each in its own subprocess. On SLURM every
pending step is submitted up front with `afterok` dependencies on the jobs it reads from; steps of one
wave that share a command and the same upstream steps go out as one job array, so a failure only blocks
the steps that really depend on it (`kill-on-invalid-dep` cancels them instead of leaving them pending).
Jobs are `Checkpointable`: on timeout or preemption SLURM requeues the same command, and the stage resumes
from its last checkpoint. The sweep's state (job ids, log paths) is saved under `ROOT/sweeps/` for
`lab sweep status`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import submitit

from core.parallel import Placement
from sweeps.checkpointing import CheckpointableStage
from sweeps.executors import Cluster, StageResources, make_executor
from sweeps.plan import Step, Sweep
from sweeps.stages import STAGES

ENTRY = "sweeps.runner:run_step"


def run_step(argv: list[str]) -> str:
    """Job body: run one `lab` command; a non-zero exit fails the job (and so blocks its dependents).

    torch would start one thread per core of the whole node; two such jobs on one machine slow each other
    down many times over, so a job uses the CPUs it was given (SLURM's allocation, or LAB_THREADS locally).
    """
    threads = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("LAB_THREADS")
    if threads:
        os.environ["OMP_NUM_THREADS"] = threads
    if _launches_ranks(argv) and os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        # Lightning's launcher starts the other ranks by re-running this process's command line, which here is
        # submitit's job runner: run the stage as its own `lab` process so that is what gets re-run.
        code = subprocess.run([sys.executable, "-m", "sweeps.cli", *argv]).returncode
    else:  # in-process; on SLURM every task is one rank and Lightning reads the allocation
        from sweeps.cli import main

        code = main(argv)
    if code != 0:
        raise RuntimeError(f"lab {' '.join(argv)} exited with status {code}")
    return argv[argv.index("--out") + 1]


def _launches_ranks(argv: list[str]) -> bool:
    flags = dict(zip(argv[1::2], argv[2::2]))
    return int(flags.get("--devices", 1)) * int(flags.get("--num_nodes", 1)) > 1


def _argv(step: Step, root: Path, resources: dict[str, StageResources]) -> list[str]:
    """The step's command line plus where its stage runs (left out of the step's key: placement changes how fast
    a result comes, not what it is)."""
    argv = step.argv(root)
    if issubclass(STAGES[step.command].config_class(), Placement):
        argv += resources.get(step.command, StageResources()).stage_flags()
    return argv


@dataclass
class StepRecord:
    label: str
    command: str
    key: str
    out_dir: str
    status: str  # done | failed | blocked | submitted | skipped
    job_id: str | None = None
    log: str | None = None
    error: str | None = None


def state_path(root: Path, name: str) -> Path:
    return Path(root) / "sweeps" / f"{name}.json"


def _save(root: Path, sweep: Sweep, records: dict[str, StepRecord]) -> None:
    path = state_path(root, sweep.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"sweep": sweep.name, "steps": [asdict(r) for r in records.values()]}, indent=1))
    tmp.replace(path)


def run_sweep(sweep: Sweep, root: str | Path, cluster: Cluster = "local",
              resources: dict[str, StageResources] | None = None, parallel: int = 1) -> list[StepRecord]:
    """Run every unfinished step of `sweep` under `root`; return one record per step (never raises on a
    failed step: its dependents are marked blocked and the rest of the sweep carries on)."""
    root = Path(root)
    resources = resources or {}
    records = {s.key: StepRecord(s.label, s.command, s.key, str(s.out_dir(root)), "skipped" if s.done(root) else "pending")
               for s in sweep.steps()}
    _save(root, sweep, records)
    if cluster == "slurm":
        _run_on_slurm(sweep, root, resources, records)
    else:
        _run_waves(sweep, root, cluster, resources, parallel, records)
    for step in sweep.steps():
        if records[step.key].status == "pending":  # finished before we looked, or never reached
            records[step.key].status = "done" if step.done(root) else "blocked"
    _save(root, sweep, records)
    return list(records.values())


def _executor(root: Path, cluster: Cluster, command: str, resources: dict[str, StageResources]):
    return make_executor(cluster, root / "logs" / command, resources.get(command, StageResources()))


def _run_waves(sweep, root, cluster, resources, parallel, records) -> None:
    for wave in sweep.waves():
        todo = [s for s in wave if records[s.key].status == "pending"]
        for step in todo:
            failed = [u.label for _, u in step.inputs if records[u.key].status in ("failed", "blocked")]
            if failed:
                records[step.key].status = "blocked"
                records[step.key].error = f"upstream failed: {', '.join(failed)}"
        runnable = [s for s in todo if records[s.key].status == "pending"]
        for start in range(0, len(runnable), parallel):
            batch = runnable[start:start + parallel]
            jobs = []
            for step in batch:  # the local executor hands the parent's environment to its job
                os.environ["LAB_THREADS"] = str(resources.get(step.command, StageResources()).cpus_per_task)
                executor = _executor(root, cluster, step.command, resources)
                jobs.append((step, executor.submit(CheckpointableStage(), ENTRY, _argv(step, root, resources))))
            try:
                for step, job in jobs:
                    _finish(records[step.key], job)
            except BaseException:  # Ctrl-C or SIGTERM: local jobs would outlive us and race a rerun
                for _, job in jobs:
                    job.cancel(check=False)
                raise
            _save(root, sweep, records)


def _finish(record: StepRecord, job: submitit.Job) -> None:
    record.job_id, record.log = str(job.job_id), str(job.paths.stderr)
    try:
        job.result()
        record.status = "done"
    except Exception as err:  # a failed step is reported, never fatal to the sweep
        record.status = "failed"
        record.error = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__


def _run_on_slurm(sweep, root, resources, records) -> None:
    jobs: dict[str, submitit.Job] = {}
    for wave in sweep.waves():
        groups: dict[tuple, list[Step]] = defaultdict(list)
        for step in wave:
            if records[step.key].status == "pending":
                upstream = tuple(sorted(u.key for _, u in step.inputs if u.key in jobs))
                groups[(step.command, upstream)].append(step)
        for (command, upstream), steps in groups.items():
            executor = _executor(root, "slurm", command, resources)
            extra = dict(resources.get(command, StageResources()).extra)
            if upstream:
                extra["dependency"] = "afterok:" + ":".join(str(jobs[k].job_id) for k in upstream)
                extra["kill-on-invalid-dep"] = "yes"
            executor.update_parameters(slurm_additional_parameters=extra)
            with executor.batch():
                submitted = [executor.submit(CheckpointableStage(), ENTRY, _argv(s, root, resources)) for s in steps]
            for step, job in zip(steps, submitted):
                jobs[step.key] = job
                record = records[step.key]
                record.status, record.job_id, record.log = "submitted", str(job.job_id), str(job.paths.stderr)
    _save(root, sweep, records)
    for key, job in jobs.items():
        _finish(records[key], job)
        if records[key].status == "failed" and not Path(records[key].log).exists():
            records[key].status = "blocked"  # cancelled for an invalid dependency: it never started
    _save(root, sweep, records)


def status_table(root: str | Path, name: str) -> str:
    """A table of the sweep's steps with their state on disk (finished runs are found by their marker)."""
    path = state_path(root, name)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such sweep state (run the sweep first)")
    rows = json.loads(path.read_text())["steps"]
    lines = [f"{'step':<28} {'stage':<9} {'status':<9} {'job':<10} output / log"]
    for r in rows:
        done = (Path(r["out_dir"]) / STAGES[r["command"]].marker).exists()
        status = "done" if done else r["status"]
        where = r["out_dir"] if status in ("done", "skipped") else (r["log"] or r["out_dir"])
        lines.append(f"{r['label']:<28} {r['command']:<9} {status:<9} {r['job_id'] or '-':<10} {where}")
        if r.get("error") and not done:
            lines.append(f"{'':<28} {'':<9} error: {r['error']}")
    return "\n".join(lines)

