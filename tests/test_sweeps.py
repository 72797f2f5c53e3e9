"""Sweeps: DAG keys and sharing, local execution through submitit, failures, idempotent re-runs, SLURM."""

import json
from pathlib import Path

import pytest

from core.config import load, parse_overrides
from sweeps.plan import Step, Sweep
from sweeps.runner import run_sweep, status_table
from sweeps.stages import STAGES

TINY = {"splits": {"train": 120, "val": 10}, "shard_rows": 100}
TRAIN = {"tokens": 8192, "checkpoint_every": 2, "log_every": 1}


def corpus(label="corpus", **overrides):
    return Step.make("datagen", label, "smoke", {**TINY, **overrides})


def pretrain(data, label="base", **overrides):
    return Step.make("pretrain", label, "smoke", {**TRAIN, **overrides}, inputs={"--data": data})


def test_shared_upstream_runs_once_and_keys_track_config():
    data = corpus()
    arms = [pretrain(data, f"arm{i}", seed=i) for i in range(3)]
    sweep = Sweep("s", arms + [pretrain(corpus(), "arm0", seed=0)])
    steps = sweep.steps()
    assert [s.command for s in steps].count("datagen") == 1 and len(steps) == 4
    assert [len(w) for w in sweep.waves()] == [1, 3]
    assert len({s.key for s in arms}) == 3
    assert corpus().key == corpus().key != corpus(seed=1).key
    assert pretrain(corpus(seed=1)).key != pretrain(corpus()).key  # upstream change propagates


def test_argv_resolves_to_the_same_config(tmp_path):
    step = pretrain(corpus(), lr=0.002, model={"layers": 1, "hidden": 32, "ffn": 64, "heads": 2, "kv_heads": 1})
    argv = step.argv(tmp_path)
    assert argv[:3] == ["pretrain", "--preset", "smoke"] and "--data" in argv
    flags = argv[argv.index("--data") + 2:]
    info = STAGES["pretrain"]
    from core.config import to_dict
    assert to_dict(load(info.config_class(), "smoke", info.section, parse_overrides(flags))) == step.resolved


def test_placement_is_passed_to_the_stage_but_is_not_part_of_the_key(tmp_path):
    from sweeps.executors import StageResources
    from sweeps.runner import _argv

    step = pretrain(corpus())
    assert pretrain(corpus(), devices=2, threads=3).key == step.key  # same result, so the same directory
    resources = {"pretrain": StageResources(nodes=2, tasks_per_node=4)}
    argv = _argv(step, tmp_path, resources)
    assert argv[-4:] == ["--devices", "4", "--num_nodes", "2"]
    assert "--devices" not in _argv(corpus(), tmp_path, {"datagen": StageResources(tasks_per_node=4)})
    params = StageResources(nodes=2, tasks_per_node=4, gpus_per_node=4, account="lab", qos="high",
                            constraint="h100", partition="gpu", extra={"exclusive": ""}).to_submitit()
    assert params["nodes"] == 2 and params["tasks_per_node"] == 4 and params["gpus_per_node"] == 4
    assert (params["slurm_account"], params["slurm_qos"], params["slurm_constraint"]) == ("lab", "high", "h100")
    assert params["slurm_additional_parameters"] == {"exclusive": ""}


def test_local_sweep_runs_a_two_process_stage(tmp_path):
    """Off SLURM the job runs the stage as its own `lab` process, whose second rank Lightning starts."""
    from sweeps.executors import StageResources

    step = pretrain(corpus())
    records = run_sweep(Sweep("ddp", [step]), tmp_path, cluster="local",
                        resources={"pretrain": StageResources(tasks_per_node=2, timeout_min=10)})
    assert [r.status for r in records] == ["done", "done"], [r.error for r in records]
    summary = json.loads((step.out_dir(tmp_path) / "summary.json").read_text())
    assert summary["placement"]["devices"] == 2 and summary["placement"]["strategy"] == "DDPStrategy"


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    good, bad = corpus("good"), corpus("bad", ops=[{"lo": 200, "hi": 200}])
    sweep = Sweep("demo", [pretrain(good, "on-good"), pretrain(bad, "on-bad")])
    return root, sweep, run_sweep(sweep, root, cluster="local")


def test_local_sweep_runs_and_isolates_failures(local_sweep):
    root, sweep, records = local_sweep
    by_label = {r.label: r for r in records}
    assert by_label["good"].status == "done" and by_label["on-good"].status == "done"
    assert by_label["bad"].status == "failed" and by_label["bad"].log.endswith(".err")
    assert by_label["on-bad"].status == "blocked" and "bad" in by_label["on-bad"].error
    summary = json.loads((sweep.targets[0].out_dir(root) / "summary.json").read_text())
    assert summary["seed"] == 0 and summary["commit"]
    table = status_table(root, "demo")
    assert "failed" in table and by_label["bad"].log in table and "blocked" in table


def test_rerun_skips_finished_steps(local_sweep):
    root, sweep, _ = local_sweep
    marker = sweep.targets[0].out_dir(root) / "summary.json"
    before = marker.stat().st_mtime_ns
    again = {r.label: r.status for r in run_sweep(sweep, root, cluster="local")}
    assert again["good"] == "skipped" and again["on-good"] == "skipped"
    assert again["bad"] == "failed"
    assert marker.stat().st_mtime_ns == before


@pytest.mark.slurm
def test_slurm_sweep_with_arrays_and_dependencies(slurm_cluster, tmp_path):
    data = corpus("slurm-corpus")
    arms = [pretrain(data, f"arm{i}", seed=i) for i in range(2)]
    records = {r.label: r for r in run_sweep(Sweep("slurm", arms), tmp_path, cluster="slurm")}
    assert all(r.status == "done" for r in records.values()), records
    assert records["arm0"].job_id.split("_")[0] == records["arm1"].job_id.split("_")[0]  # one array
    assert "_" in records["arm0"].job_id
    for arm in arms:
        assert (arm.out_dir(tmp_path) / "model" / "config.json").exists()


@pytest.mark.parametrize("preset", ["smoke", "micro", "small", "paper"])
def test_every_finding_builds_a_dag_for_every_preset(preset):
    from sweeps.findings import FINDINGS

    for name, build in FINDINGS.items():
        finding = build(preset, seeds=(0, 1))
        steps = finding.sweep().steps()
        labels = [arm.label for arm in finding.arms]
        assert finding.base_label in labels and len(set(labels)) == len(labels), name
        assert [s.command for s in steps].count("eval") == len(finding.arms)
        assert all(arm.reference in labels for arm in finding.arms if arm.reference), name
        assert len({s.key for s in steps}) == len(steps)


def test_finding3_arms_split_one_budget():
    from sweeps.findings import finding3

    finding = finding3("micro")
    design = {arm.label: dict(arm.design) for arm in finding.arms if arm.label != "base"}
    assert sorted(d["beta"] for d in design.values()) == [0.0, 0.2, 0.5, 0.8, 1.0]
    all_mid = next(d for d in design.values() if d["beta"] == 0.0)
    all_rl = next(d for d in design.values() if d["beta"] == 1.0)
    assert all_mid["rl_steps"] == 0 and all_mid["mid_tokens"] == all_mid["budget"]
    assert all_rl["mid_tokens"] == 0 and all_rl["rl_steps"] > 0


def test_reproduce_finding1_smoke_end_to_end(tmp_path):
    """The plumbing of `lab reproduce` (not the science): sweep, evals, figures, report, status."""
    from sweeps.cli import main

    out = tmp_path / "rep"
    assert main(["reproduce", "finding1", "--preset", "smoke", "--out", str(out)]) == 0
    report = (out / "finding1" / "report.md").read_text()
    for arm in ("rl-ID-s0", "rl-mixed-s0", "rl-edge-s0", "rl-hard-s0"):
        assert f"**{arm} vs base**" in report
    assert "## This finding" in report and "## Sweep" in report
    assert (out / "finding1" / "finding1_split_bars.png").stat().st_size > 5000
    assert (out / "finding1" / "report_figures" / "training_curves.png").exists()
    assert main(["sweep", "status", "--out", str(out)]) == 0


@pytest.mark.slurm
def test_slurm_timeout_requeues_and_the_stage_resumes(slurm_cluster, tmp_path):
    """A real pre-training step is interrupted like a timeout; SLURM requeues it and it resumes from its checkpoint."""
    import time

    from sweeps.checkpointing import CheckpointableStage
    from sweeps.executors import StageResources, make_executor
    from sweeps.runner import ENTRY

    step = pretrain(corpus("requeue"), "long", tokens=200_000, checkpoint_every=5)
    run_sweep(Sweep("upstream", [step.inputs[0][1]]), tmp_path, cluster="local")
    executor = make_executor("slurm", tmp_path / "logs", StageResources(cpus_per_task=1, timeout_min=10))
    job = executor.submit(CheckpointableStage(), ENTRY, step.argv(tmp_path))
    ckpt = step.out_dir(tmp_path) / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while not ckpt.exists():
        assert time.time() < deadline and not job.done(), "no checkpoint before the deadline"
        time.sleep(0.5)
    job._interrupt(timeout=True)  # what SLURM sends before a time limit: USR2 -> checkpoint() -> requeue
    job.result()
    assert step.done(tmp_path)
    log = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
    assert "Requeued" in log, log[-2000:]  # submitit's checkpoint handler requeued the job
    assert "pretrain: resuming" in log, log[-2000:]  # and the second start resumed from last.ckpt


def test_sigterm_stops_local_jobs_and_rerun_finishes(tmp_path):
    """Stopping `lab reproduce` must not leave local jobs running (they would race a rerun)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "sweeps.cli", "reproduce", "finding4", "--preset", "smoke", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pretrain_dirs = out / "runs" / "pretrain"
    deadline = time.time() + 120
    while not (pretrain_dirs.exists() and any(pretrain_dirs.iterdir())):  # a training job is running
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    time.sleep(3)
    alive = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert [pid for pid in alive if int(pid) != os.getpid()] == []
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (out / "finding4" / "report.md").exists()
