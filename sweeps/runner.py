"""Run a sweep's steps as submitit jobs, locally (the default) or on SLURM.

Locally, up to `parallel` jobs run at once, each in its own subprocess, and a step starts as soon as its
inputs are finished. On SLURM every
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
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import submitit

from core.parallel import Placement
from sweeps.checkpointing import CheckpointableStage
from sweeps.executors import Cluster, StageResources, make_executor
from sweeps.plan import Step, Sweep, total_steps
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
    status: str  # pending | running | submitted | done | skipped | failed | blocked
    job_id: str | None = None
    log: str | None = None
    error: str | None = None
    expected_s: float | None = None  # from the preset's measured rates (None: not measured)
    total_steps: int | None = None  # training steps, for progress from metrics.jsonl
    started: float | None = None
    ended: float | None = None
    inputs: list[str] = field(default_factory=list)  # keys of the steps it reads from, for the ETA's longest chain
    ranks: int = 1  # processes it runs as: its wall time is its expected CPU time over this

    @classmethod
    def from_dict(cls, data: dict) -> "StepRecord":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def state_path(root: Path, name: str) -> Path:
    return Path(root) / "sweeps" / f"{name}.json"


def _save(root: Path, sweep: Sweep, records: dict[str, StepRecord], meta: dict | None = None) -> None:
    path = state_path(root, sweep.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = meta if meta is not None else _META.get(path, {})
    _META[path] = meta
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"sweep": sweep.name, **meta, "steps": [asdict(r) for r in records.values()]}, indent=1))
    tmp.replace(path)


_META: dict[Path, dict] = {}  # per state file: cluster and parallelism, saved with every update
Progress = Callable[[list[StepRecord]], None]


def run_sweep(sweep: Sweep, root: str | Path, cluster: Cluster = "local",
              resources: dict[str, StageResources] | None = None, parallel: int = 1,
              expected: dict[str, float | None] | None = None, on_progress: Progress | None = None,
              every: float = 30.0) -> list[StepRecord]:
    """Run every unfinished step of `sweep` under `root`; return one record per step (never raises on a
    failed step: its dependents are marked blocked and the rest of the sweep carries on).

    `expected` (step key -> seconds) is kept with each record for ETAs; `on_progress` is called with the
    records every `every` seconds while jobs run (local or SLURM), and whenever a step ends."""
    if parallel < 1:
        raise ValueError(f"parallel: must be >= 1, got {parallel}")
    root = Path(root)
    resources = resources or {}
    expected = expected or {}
    records = {s.key: StepRecord(s.label, s.command, s.key, str(s.out_dir(root)),
                                 "skipped" if s.done(root) or s.adopt_twin(root) else "pending",
                                 expected_s=expected.get(s.key), total_steps=total_steps(s),
                                 inputs=[u.key for _, u in s.inputs], ranks=ranks_of(s, resources))
               for s in sweep.steps()}
    _save(root, sweep, records, {"cluster": cluster, "parallel": parallel, "started": time.time()})
    if cluster == "slurm":
        _run_on_slurm(sweep, root, resources, records, on_progress, every)
    else:
        _run_local(sweep, root, cluster, resources, parallel, records, on_progress, every)
    for step in sweep.steps():
        if records[step.key].status in ("pending", "running"):  # finished before we looked, or never reached
            records[step.key].status = "done" if step.done(root) else "blocked"
    _save(root, sweep, records)
    return list(records.values())


def stop_jobs_on_sigterm() -> None:
    """Make SIGTERM (a scheduler, `kill`) unwind like Ctrl-C, so the runner cancels its local jobs on the way out
    instead of leaving them to race a rerun; the process exits with 143.

    submitit cancels a local job with SIGINT. A runner started in the background (`nohup … &`, a non-interactive
    shell) inherits SIGINT ignored, and its jobs would too, so cancelling them would do nothing: SIGINT gets
    Python's default handler back here, and the jobs started after this inherit a SIGINT that works."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _executor(root: Path, cluster: Cluster, command: str, resources: dict[str, StageResources]):
    return make_executor(cluster, root / "logs" / command, resources.get(command, StageResources()))


def _run_local(sweep, root, cluster, resources, parallel, records, on_progress=None, every=30.0,
               poll: float = 0.5) -> None:
    """Keep up to `parallel` jobs running: a step starts as soon as its inputs are finished (not when its whole
    wave is), and a failure blocks only the steps downstream of it."""
    steps = sweep.steps()  # upstream before downstream
    running: list[tuple[Step, submitit.Job]] = []
    last = 0.0
    try:
        while True:
            changed = False
            for step in steps:
                record = records[step.key]
                failed = [u.label for _, u in step.inputs if records[u.key].status in ("failed", "blocked")]
                if record.status == "pending" and failed:
                    record.status, record.error = "blocked", f"upstream failed: {', '.join(failed)}"
                    changed = True
            ready = [s for s in steps if records[s.key].status == "pending"
                     and all(records[u.key].status in ("done", "skipped") for _, u in s.inputs)]
            for step in ready:
                # `parallel` counts processes: a data-parallel stage takes one slot per rank (alone if it has more
                # ranks than slots), so a 2-rank pre-training never shares 2 cores with another job.
                busy = sum(ranks_of(s, resources) for s, _ in running)
                if running and busy + ranks_of(step, resources) > parallel:
                    break
                # the local executor hands the parent's environment to its job
                os.environ["LAB_THREADS"] = str(resources.get(step.command, StageResources()).cpus_per_task)
                job = _executor(root, cluster, step.command, resources).submit(CheckpointableStage(), ENTRY,
                                                                               _argv(step, root, resources))
                running.append((step, job))
                record = records[step.key]
                record.status, record.started = "running", time.time()
                record.job_id, record.log = str(job.job_id), str(job.paths.stderr)
                changed = True
            for step, job in [(s, j) for s, j in running if j.done()]:
                _finish(records[step.key], job)
                running.remove((step, job))
                changed = True
            if changed:
                _save(root, sweep, records)
            if on_progress and (changed or time.time() - last >= every):
                on_progress(list(records.values()))
                last = time.time()
            if not running and not any(records[s.key].status == "pending" for s in steps):
                return
            time.sleep(poll)
    except BaseException:  # Ctrl-C or SIGTERM: local jobs would outlive us and race a rerun
        for _, job in running:
            job.cancel(check=False)
        raise


def ranks_of(step: Step, resources: dict[str, StageResources]) -> int:
    if not issubclass(STAGES[step.command].config_class(), Placement):
        return 1
    return resources.get(step.command, StageResources()).world_size


def _finish(record: StepRecord, job: submitit.Job) -> None:
    record.job_id, record.log = str(job.job_id), str(job.paths.stderr)
    try:
        job.result()
        record.status = "done"
    except Exception as err:  # a failed step is reported, never fatal to the sweep
        record.status = "failed"
        record.error = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    record.ended = time.time()


def _run_on_slurm(sweep, root, resources, records, on_progress=None, every=30.0, poll: float = 5.0) -> None:
    """Submit every wave at once (each job waits on its inputs' jobs through a SLURM dependency), then follow
    the jobs: a step's record changes, and the state file is saved, as soon as its job ends."""
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
                record.started = time.time()
    _save(root, sweep, records)
    waiting, last = dict(jobs), 0.0
    while waiting:
        ended = [key for key, job in waiting.items() if job.done()]
        for key in ended:
            _finish(records[key], waiting.pop(key))
            if records[key].status == "failed" and not Path(records[key].log).exists():
                records[key].status = "blocked"  # cancelled for an invalid dependency: it never started
        if ended:
            _save(root, sweep, records)
        if on_progress and (ended or time.time() - last >= every):
            on_progress(list(records.values()))
            last = time.time()
        if waiting:
            time.sleep(poll)


def read_state(root: str | Path, name: str) -> tuple[dict, list[StepRecord]]:
    path = state_path(root, name)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such sweep state (run the sweep first)")
    state = json.loads(path.read_text())
    return state, [StepRecord.from_dict(r) for r in state["steps"]]


def live_status(record: StepRecord, local: bool = False) -> tuple[str, float | None]:
    """(status, progress in [0, 1] or None) of a step as its output directory shows it now.

    Finished steps are found by their marker, so a sweep read while it runs, or after it was killed, or on
    SLURM (where only the scheduler knows a job is running), still shows what is really done; a submitted
    step whose directory exists has started."""
    out = Path(record.out_dir)
    if (out / STAGES[record.command].marker).exists():
        return ("skipped" if record.status == "skipped" else "done"), 1.0
    status = record.status
    if status == "submitted":
        status = "running" if out.exists() else "queued"
    elif status == "pending":
        status = "queued"
    elif status == "running" and local and not _alive(record.job_id):
        status = "stopped"  # the sweep was killed: a rerun resumes it
    progress = None
    if status == "running" and record.total_steps:
        step = _last_logged_step(out / "metrics.jsonl")
        progress = None if step is None else min(1.0, (step + 1) / record.total_steps)
    return status, progress


def _alive(job_id: str | None) -> bool:
    """Whether a local job (its id is its process id) still runs."""
    if not job_id or not job_id.isdigit():
        return True
    try:
        os.kill(int(job_id), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_logged_step(path: Path) -> int | None:
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            step = json.loads(line).get("step")
        except json.JSONDecodeError:
            continue  # the first line of the tail may be cut
        if step is not None:
            return int(step)
    return None


def summarize(records: list[StepRecord], parallel: int | None = 1, now: float | None = None,
              local: bool = False) -> str:
    """One line: counts per status and an ETA from the expected times of what is left (`parallel`: local job
    slots; None on SLURM, see `wall_estimate`)."""
    now = now or time.time()
    counts: dict[str, int] = defaultdict(int)
    left: dict[str, float] = {}
    unknown = 0
    for record in records:
        status, progress = live_status(record, local)
        counts[status] += 1
        if status in ("running", "queued"):
            if record.expected_s is None:
                unknown += 1
                continue
            if status == "running":
                elapsed = now - (record.started or now)
                remaining = record.expected_s * (1 - progress) if progress is not None else record.expected_s - elapsed
                left[record.key] = max(remaining, 0.0)
            else:
                left[record.key] = record.expected_s
    order = ("done", "skipped", "running", "queued", "stopped", "failed", "blocked")
    line = ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
    if not counts["running"] and not counts["queued"]:
        return f"{line}; nothing left to run"
    wall = wall_estimate(left, {r.key: r.ranks for r in records}, {r.key: r.inputs for r in records}, parallel)
    eta = f"ETA ~{duration(wall)}" if left or not unknown else "ETA unknown"
    if unknown:
        eta += f" (+ {unknown} step(s) without a measured rate)"
    return f"{line}; {eta}"


def wall_estimate(left: dict[str, float], ranks: dict[str, int], inputs: dict[str, list[str]],
                  parallel: int | None) -> float:
    """Seconds until the steps in `left` (key -> CPU seconds still to do) are done.

    At least their longest chain of dependencies, a step's wall time being its CPU time over its ranks; locally
    also at least their total CPU time over the `parallel` job slots. `parallel` None is SLURM, where the
    cluster's free nodes, not a slot count, bound how many run at once: the chain alone, a lower bound."""
    finish: dict[str, float] = {}

    def chain(key: str) -> float:
        if key not in finish:
            before = [chain(up) for up in inputs.get(key, ()) if up in left]
            finish[key] = left[key] / max(ranks.get(key, 1), 1) + max(before, default=0.0)
        return finish[key]

    longest = max((chain(key) for key in left), default=0.0)
    return longest if parallel is None else max(longest, sum(left.values()) / parallel)


def status_table(root: str | Path, name: str) -> str:
    """The sweep's steps with their live state (done / running with progress / queued / failed with its log),
    and a summary line with the ETA."""
    state, records = read_state(root, name)
    now, local = time.time(), state.get("cluster") == "local"
    lines = [f"{'step':<28} {'stage':<9} {'status':<9} {'progress':>8} {'elapsed':>8} {'expected':>8} "
             f"{'job':<10} output / log"]
    for r in records:
        status, progress = live_status(r, local)
        elapsed = ((r.ended or now) - r.started) if r.started and status not in ("queued", "skipped") else None
        where = r.out_dir if status in ("done", "skipped", "queued") else (r.log or r.out_dir)
        shown = f"{100 * progress:.0f}%" if progress is not None else ("100%" if status in ("done", "skipped") else "-")
        lines.append(f"{r.label:<28} {r.command:<9} {status:<9} {shown:>8} {duration(elapsed):>8} "
                     f"{duration(r.expected_s):>8} {r.job_id or '-':<10} {where}")
        if r.error and status in ("failed", "blocked"):
            lines.append(f"{'':<28} {'':<9} error: {r.error}")
    lines.append(summarize(records, None if state.get("cluster") == "slurm" else state.get("parallel", 1), now, local))
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
