"""Sweeps: DAG keys and sharing, local execution through submitit, failures, idempotent re-runs, SLURM."""

import json

import pytest

from datagen.config import load, parse_overrides
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
    from datagen.config import to_dict
    assert to_dict(load(info.config_class(), "smoke", info.section, parse_overrides(flags))) == step.resolved


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
