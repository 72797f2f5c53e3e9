"""Sweeps: DAG keys and sharing, local execution through submitit on two-step DAGs (failures, progress, ETA,\nidempotent re-runs, SIGTERM), the findings' wiring, bad input, one whole smoke reproduction, SLURM."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from core.config import load, parse_overrides
from datagen.corpus import has_graphs
from sweeps.plan import Step, Sweep
from sweeps.runner import run_sweep, status_table
from sweeps.reproduce import plan_state
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
    """Off SLURM the job runs the stage as its own `lab` process, whose second rank Lightning starts; it takes
    two of `parallel`'s slots."""
    from sweeps.executors import StageResources

    step = pretrain(corpus())
    # A bigger corpus is still being built when the 2-rank stage is ready: with 2 slots it must wait for it.
    other = corpus("other", splits={"train": 6000, "val": 10}, shard_rows=3000)
    records = run_sweep(Sweep("ddp", [step, other]), tmp_path, cluster="local", parallel=2,
                        resources={"pretrain": StageResources(tasks_per_node=2, timeout_min=10)})
    assert [r.status for r in records] == ["done", "done", "done"], [r.error for r in records]
    by_label = {r.label: r for r in records}
    assert by_label["base"].started >= by_label["other"].ended  # 2 ranks + 1 job would oversubscribe 2 slots
    summary = json.loads((step.out_dir(tmp_path) / "summary.json").read_text())
    assert summary["placement"]["devices"] == 2 and summary["placement"]["strategy"] == "DDPStrategy"


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """Two two-step DAGs (corpus -> pre-training): one succeeds, one has a corpus that cannot be built."""
    root = tmp_path_factory.mktemp("sweep")
    good, bad = corpus("good"), corpus("bad", ops=[{"lo": 200, "hi": 200}])
    sweep = Sweep("demo", [pretrain(good, "on-good"), pretrain(bad, "on-bad")])
    seen = []  # every status the progress callback was shown, per step
    expected = {step.key: 10.0 for step in sweep.steps()}
    records = run_sweep(sweep, root, cluster="local", parallel=2, expected=expected, every=0.2,
                        on_progress=lambda rs: seen.append({r.label: r.status for r in rs}))
    return root, sweep, records, seen


def test_local_sweep_runs_and_isolates_failures(local_sweep):
    root, sweep, records, _ = local_sweep
    by_label = {r.label: r for r in records}
    assert by_label["good"].status == "done" and by_label["on-good"].status == "done"
    assert by_label["bad"].status == "failed" and by_label["bad"].log.endswith(".err")
    assert by_label["on-bad"].status == "blocked" and "bad" in by_label["on-bad"].error
    summary = json.loads((sweep.targets[0].out_dir(root) / "summary.json").read_text())
    assert summary["seed"] == 0 and summary["commit"]
    table = status_table(root, "demo")
    assert "failed" in table and by_label["bad"].log in table and "blocked" in table
    assert table.splitlines()[-1] == "2 done, 1 failed, 1 blocked; nothing left to run"


def test_progress_callback_sees_steps_run_and_end(local_sweep):
    root, sweep, records, seen = local_sweep
    assert {"good": "running", "bad": "running"}.items() <= seen[0].items()  # parallel=2: both corpora at once
    assert any(s["on-good"] == "running" for s in seen)  # started once its corpus was done, not after "bad"
    assert seen[-1] == {"good": "done", "bad": "failed", "on-good": "done", "on-bad": "blocked"}
    for r in records:
        assert r.expected_s == 10.0
        if r.status != "blocked":
            assert r.started <= r.ended
    assert {r.label: r.total_steps for r in records}["on-good"] == 4  # 8,192 tokens / (8 x 256) per step


def test_live_status_reads_progress_and_eta_from_the_run_dir(tmp_path):
    from sweeps.runner import StepRecord, live_status, summarize

    out = tmp_path / "run"
    out.mkdir()
    lines = [json.dumps({"step": s, "train/loss": 1.0}) for s in (0, 1, 2)] + ['{"step": 3, "tra']  # cut mid-write
    (out / "metrics.jsonl").write_text("\n".join(lines))
    running = StepRecord("base", "pretrain", "k1", str(out), "running", expected_s=100.0, total_steps=10,
                         started=1000.0)
    queued = StepRecord("rl", "rl", "k2", str(tmp_path / "absent"), "pending", expected_s=50.0)
    unknown = StepRecord("eval", "eval", "k3", str(tmp_path / "absent2"), "pending")
    assert live_status(running) == ("running", pytest.approx(0.3))  # steps 0..2 logged of 10
    assert live_status(queued) == ("queued", None)
    # 70 s left of the running step + 50 s queued: one at a time 120 s; two at a time the running step's 70 s
    assert summarize([running, queued], parallel=1, now=1010.0) == "1 running, 1 queued; ETA ~2m"
    assert summarize([running, queued], parallel=2, now=1010.0) == "1 running, 1 queued; ETA ~70s"
    queued.inputs = ["k1"]  # it reads the running step's output: the chain is 70 + 50 s, however many slots
    assert summarize([running, queued], parallel=2, now=1010.0).endswith("ETA ~2m")
    assert summarize([running, queued], parallel=None, now=1010.0).endswith("ETA ~2m")  # SLURM: the chain
    queued.inputs, running.ranks = [], 2  # a 2-rank step: 70 CPU-s left are 35 s of wall
    assert summarize([running, queued], parallel=None, now=1010.0).endswith("ETA ~50s")
    assert "1 step(s) without a measured rate" in summarize([running, unknown], now=1010.0)
    (out / "summary.json").write_text("{}")
    assert live_status(running) == ("done", 1.0)


def test_a_step_named_twice_runs_once(tmp_path):
    """Two findings may name one computation differently (same key, other label): the second adopts the first."""
    first = corpus("first")
    assert [r.status for r in run_sweep(Sweep("a", [first]), tmp_path)] == ["done"]
    twin = corpus("twin")
    assert twin.key == first.key and twin.out_dir(tmp_path) != first.out_dir(tmp_path)
    assert twin.finished_twin(tmp_path) == first.out_dir(tmp_path)
    assert plan_state(twin, tmp_path) == f"done as {first.out_dir(tmp_path).name}"  # the plan says so
    assert plan_state(corpus("other", seed=3), tmp_path) == "to run"
    records = run_sweep(Sweep("b", [twin]), tmp_path)
    assert [r.status for r in records] == ["skipped"]
    assert twin.out_dir(tmp_path).resolve() == first.out_dir(tmp_path).resolve() and twin.done(tmp_path)
    assert [r.status for r in run_sweep(Sweep("c", [corpus("other", seed=3)]), tmp_path)] == ["done"]  # no twin


def test_rerun_skips_finished_steps(local_sweep):
    root, sweep, _, _ = local_sweep
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
    seen = []  # the live status follows the jobs as they end, as it does for local jobs
    records = {r.label: r for r in run_sweep(Sweep("slurm", arms), tmp_path, cluster="slurm", every=1.0,
                                             on_progress=lambda rs: seen.append({r.label: r.status for r in rs}))}
    assert all(r.status == "done" for r in records.values()), records
    assert seen[0]["slurm-corpus"] == "submitted" and seen[-1] == {label: "done" for label in records}
    assert any(state["slurm-corpus"] == "done" and state["arm0"] != "done" for state in seen)  # one ended first
    assert "3 done" in status_table(tmp_path, "slurm")
    assert records["arm0"].job_id.split("_")[0] == records["arm1"].job_id.split("_")[0]  # one array
    assert "_" in records["arm0"].job_id
    for arm in arms:
        assert (arm.out_dir(tmp_path) / "model" / "config.json").exists()


@pytest.mark.parametrize("preset", ["smoke", "micro", "small", "paper"])
def test_every_finding_builds_a_dag_for_every_preset(preset):
    from analysis.claims import group_of
    from sweeps.findings import FINDINGS

    for name, build in FINDINGS.items():
        finding = build(preset, seeds=(0, 1))
        steps = finding.sweep().steps()
        labels = [arm.label for arm in finding.arms]
        assert finding.base_label in labels and len(set(labels)) == len(labels), name
        assert [s.command for s in steps].count("eval") == len(finding.arms)
        assert all(arm.reference in labels for arm in finding.arms if arm.reference), name
        assert len({s.key for s in steps}) == len(steps)
        for step in steps:  # every RL run draws each prompt of its pool at most once ...
            if step.command == "rl":
                rl, pool = spec(step), spec(dict(step.inputs)["--data"])
                assert pool.splits["rl"] >= rl.steps * rl.prompts_per_step, step.label
                for context in pool.contexts:  # ... and the pool is built in full: no op's rows are left out
                    assert all(has_graphs(pool, "rl", context.name, op) for op in pool.op_weights(context)), step.label
        groups = {group_of(label) for label in labels}
        for claim in finding.claims:  # every claim compares arms the finding runs
            assert {claim.arm, claim.reference} <= groups, (name, claim.id)
            assert set(claim.splits) <= {"ID", "edge", "hard"}
        assert len({c.id for c in finding.claims}) == len(finding.claims)


def test_uniform_ranges_weigh_every_op_alike():
    from datagen.spec import CorpusSpec
    from sweeps.findings import uniform_ranges

    assert uniform_ranges([4, 5, 6]) == [{"lo": 4, "hi": 6}]
    ranges = uniform_ranges([2, 4, 5, 6, 9])
    assert ranges == [{"lo": 2, "hi": 2, "weight": 1}, {"lo": 4, "hi": 6, "weight": 3}, {"lo": 9, "hi": 9, "weight": 1}]
    corpus = load(CorpusSpec, "micro", "datagen", {"ops": ranges})
    assert corpus.op_weights(corpus.contexts[0]) == pytest.approx({op: 0.2 for op in (2, 4, 5, 6, 9)})


def spec(step):
    from sweeps.plan import step_config

    return step_config(step)


def test_findings_are_wired_as_the_paper_ran_them():
    from rl.config import RLConfig
    from sweeps.findings import finding1, finding2, finding3, sizes

    rl = load(RLConfig, "micro", "rl")
    f2 = finding2("micro")
    arm = next(a for a in f2.arms if a.label == "rl-B1-s0")
    pool = dict(dict(arm.eval.inputs)["--model"].inputs)["--data"]
    base = dict(dict(arm.eval.inputs)["--model"].inputs)["--init"]
    corpus = spec(dict(base.inputs)["--data"])
    zoo, teachers = corpus.contexts
    assert (zoo.share, teachers.share) == (0.99, 0.01)  # row shares, as the paper's 0.99zoo+0.01teacher
    assert [(r.lo, r.hi) for r in corpus.ops] == [(2, 20)]  # A on every op of the micro ladder (the paper's 2-20)
    assert [(r.lo, r.hi) for r in teachers.ops] == [(2, 2)]  # B only atomic
    assert spec(pool).splits == {"rl": rl.steps * rl.prompts_per_step}  # each prompt drawn once
    assert {c.name: c.share for c in spec(pool).contexts} == {"zoo": 0.5, "teachers": 0.5}
    # RL over every op of the ladder, but op 2 and 3 have no reasoning graph in the RL split's hash bucket (their
    # rows would be left out and the pool come up short), so the pool is uniform over op 4-20
    assert [(r.lo, r.hi) for r in spec(pool).ops] == [(4, 20)]
    assert not any(has_graphs(spec(pool), "rl", "zoo", op) for op in (2, 3))

    f1 = finding1("paper", seeds=(0, 1))  # micro skips the headroom sweep (an hour-long base per share)
    shares = sorted({dict(a.design)["top_share_pct"] for a in f1.arms})
    assert shares == [0.1, 5.0, 20.0, 33.3, 50.0]
    base = dict(next(a for a in f1.arms if a.label == "base-top5").eval.inputs)["--model"]
    ops = {(r.lo, r.hi): r.weight for r in spec(dict(base.inputs)["--data"]).ops}
    # the paper's ID 2-10 in thirds 2-4 / 5-7 / 8-10; 5 % on the top third, the other 95 % split 2 : 3
    assert ops == {(2, 4): pytest.approx(0.38), (5, 7): pytest.approx(0.57), (8, 10): pytest.approx(0.05)}
    assert {a.label for a in f1.arms} >= {"rl-edge-top5-s1", "rl-ID-s0", "rl-hard-s1"}

    for arm in sizes("micro").arms:
        model = dict(arm.eval.inputs)["--model"]
        if model.command == "rl":
            assert spec(model).edge_filter.enabled  # each size RL'd at its own measured edge

    # The paper's RL arms use the outcome reward even where the preset's standalone RL uses another (micro: strict
    # after a dense process-reward phase): an arm's reward replaces the preset's whole, schedule included.
    assert (rl.reward.name, rl.reward.dense) == ("strict", "process")
    arms = f1.arms + finding1("micro").arms + f2.arms + finding3("micro").arms
    rl_steps = [dict(a.eval.inputs)["--model"] for a in arms]
    assert {(spec(step).reward.name, spec(step).reward.dense) for step in rl_steps if step.command == "rl"} == {
        ("outcome", None)}


def test_finding3_arms_split_one_budget():
    from midtrain.config import MidtrainConfig
    from pretrain.config import PretrainConfig
    from sweeps.plan import step_work, total_steps
    from sweeps.findings import finding3, planned_rl_step_cost, scaled_budgets

    finding = finding3("micro")
    (budget,) = scaled_budgets("micro")
    tokens = load(PretrainConfig, "micro", "pretrain").tokens
    assert budget == round(1.05e9 * tokens / 10e9)  # the paper's 1.05B at micro's pre-training tokens / 10B
    step_cost = planned_rl_step_cost("micro", *finding.ladder["edge"])  # RL on the edge of micro's ladder
    mid_step = load(MidtrainConfig, "micro", "midtrain").tokens_per_step
    plans = {arm.label: dict(arm.plan) for arm in finding.arms if arm.plan}
    assert sorted(dict(a.design)["beta"] for a in finding.arms if a.plan) == [0.0, 0.2, 0.5, 0.8, 1.0]
    for label, plan in plans.items():
        spent = plan["mid_tokens"] + plan["rl_steps"] * step_cost
        assert abs(spent - budget) <= (mid_step + step_cost) / 2, label  # within half a step of each kind
        model = dict(next(a for a in finding.arms if a.label == label).eval.inputs)["--model"]
        if plan["rl_steps"]:  # RL spends its share of the budget, however many steps that takes
            rl = spec(model)
            assert rl.compute_budget == pytest.approx(plan["rl_steps"] * step_cost) and rl.budget_l_mode == "measured"
            assert rl.steps > plan["rl_steps"]  # room for completions shorter than the plan's pilot
            # ... while the plan's CPU time and the live progress count the steps the budget should buy
            assert step_work(model) == (plan["rl_steps"] * rl.prompts_per_step * rl.rollouts, "samples")
            assert total_steps(model) == plan["rl_steps"]
    all_mid = next(p for p in plans.values() if p["rl_steps"] == 0)
    assert all_mid["mid_tokens"] == pytest.approx(budget, rel=0.01)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "abc"], "--seeds"), (["--parallel", "0"], "--parallel"), (["--parallel", "-1"], "--parallel"),
    (["--seeds", "1,1"], "--seeds"), (["--ladder", "/no/such/ladder.yaml"], "--ladder"),
])
def test_reproduce_refuses_bad_input_and_writes_nothing(tmp_path, capsys, args, message):
    from sweeps.cli import main

    out = tmp_path / "rep"
    assert main(["reproduce", "finding1", "--preset", "smoke", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    from sweeps.cli import main
    from sweeps.findings import finding4

    out = tmp_path / "rep"
    assert main(["reproduce", "finding4", "--preset", "micro", "--out", str(out), "--seeds", "0,1", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    for step in finding4("micro", (0, 1)).sweep().steps():
        assert f" {step.label} " in text
    # the base's CPU time: micro's pre-training tokens at its measured tokens per core-second + job start-up
    from pretrain.config import PretrainConfig
    from sweeps.findings import FindingsConfig
    from sweeps.runner import duration

    tokens, rates = load(PretrainConfig, "micro", "pretrain").tokens, load(FindingsConfig, "micro", "findings").rates
    expected = duration(tokens / rates.pretrain_tokens_per_s + rates.job_overhead_s)
    assert re.search(rf"base +pretrain +{tokens:,} tokens +{re.escape(expected)} ", text), expected
    assert "Expected CPU time of the steps to run" in text and "Logs:" in text and "lab sweep status" in text
    # on SLURM the wall time is the longest chain: the base (its CPU time over its 2 ranks) and what follows it
    assert main(["reproduce", "finding4", "--preset", "micro", "--out", str(out), "--cluster", "slurm",
                 "--dry-run"]) == 0
    wall = re.search(r"on SLURM: about (\S+) of wall time if the cluster starts every ready job at once",
                     capsys.readouterr().out)
    base_wall = (tokens / rates.pretrain_tokens_per_s + rates.job_overhead_s) / 2
    assert wall and base_wall < _seconds(wall.group(1)) < 2 * base_wall


def _seconds(shown: str) -> float:
    """Seconds of a `duration` string (12s, 34m, 1.5h), to the precision it shows."""
    return float(shown[:-1]) * {"s": 1, "m": 60, "h": 3600}[shown[-1]]


def test_reproduce_finding3_smoke_end_to_end(tmp_path, capsys):
    """The one whole reproduction: plan, live status, sweep, evals, claims, compute check, figures, sweep status."""
    from sweeps.cli import main

    out = tmp_path / "rep"
    assert main(["reproduce", "finding3", "--preset", "smoke", "--out", str(out), "--parallel", "2",
                 "--every", "5"]) == 0
    printed = capsys.readouterr().out
    assert "Expected CPU time" in printed and " done in " in printed and "ETA" in printed
    report = (out / "finding3" / "report.md").read_text()
    for heading in ("## The paper's claims", "## Compute check", "## This finding", "## Sweep"):
        assert heading in report
    claims = pd.read_csv(out / "finding3" / "claims.csv")
    assert set(claims["verdict"]) <= {"supports", "contradicts", "inconclusive"}  # every arm finished
    assert "mid-training + RL beats RL alone" in report and "+10.8" in report
    compute = pd.read_csv(out / "finding3" / "compute.csv").set_index("arm")
    for label, row in compute.iterrows():  # realised compute is read from the runs' own summaries
        mid = next(out.glob(f"runs/midtrain/mid-*-b{row.name.split('beta')[1].split('-')[0]}-*/summary.json"), None)
        if row.planned_mid:
            assert mid is not None and json.loads(mid.read_text())["tokens"] == row.realised_mid
        assert row.realised == pytest.approx(row.realised_mid + row.realised_rl)
        if row.planned_rl:  # RL stopped on its ledger: short by at most half a mean step, over by at most one
            rl = json.loads(next(out.glob(f"runs/rl/{label}-*/summary.json")).read_text())
            mean_step = row.realised_rl / rl["steps"]
            assert row.planned_rl - mean_step / 2 - 1e-6 <= row.realised_rl <= row.planned_rl + mean_step, label
        assert row.check == ("ok" if abs(row.error) <= 0.05 else "OFF")
    assert (out / "finding3" / "finding3_budget_split.png").stat().st_size > 5000
    assert main(["sweep", "status", "--out", str(out)]) == 0
    assert "done" in capsys.readouterr().out


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


STOPPABLE = """
import sys
from pathlib import Path
from sweeps.plan import Step, Sweep
from sweeps.runner import run_sweep, stop_jobs_on_sigterm
stop_jobs_on_sigterm()
data = Step.make("datagen", "c", "smoke", {"splits": {"train": 120, "val": 10}, "shard_rows": 100})
if sys.argv[2] == "pretrain":
    step = Step.make("pretrain", "long", "smoke", {"tokens": 120000, "checkpoint_every": 5}, inputs={"--data": data})
else:  # a corpus built by a pool of workers, forked from the submitit job (they inherit its signal handlers)
    step = Step.make("datagen", "long", "smoke", {"splits": {"train": 60000}, "shard_rows": 500, "workers": 2})
records = run_sweep(Sweep("stop", [step]), Path(sys.argv[1]))
sys.exit(0 if all(r.status in ("done", "skipped") for r in records) else 1)
"""


@pytest.mark.parametrize("stage", ["pretrain", "datagen"])
def test_sigterm_stops_local_jobs_and_rerun_finishes(tmp_path, stage):
    """Stopping a sweep must not leave local jobs (nor their worker processes) running: they would race a rerun.
    The rerun resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "stopped"
    command = [sys.executable, "-c", STOPPABLE, str(out), stage]
    # started as `nohup … &` starts it: with SIGINT ignored, the signal submitit cancels local jobs with
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 300  # job start-up alone takes a minute or more on a loaded 2-core machine
    while not list((out / stage).glob("*long*/**/*.parquet" if stage == "datagen" else "long*")):  # job running
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    deadline = time.time() + 5  # submitit's local controller kills a job that ignores SIGINT after 1 s
    while (alive := [pid for pid in subprocess.run(["pgrep", "-f", str(out)], capture_output=True,
                                                   text=True).stdout.split() if int(pid) != os.getpid()]):
        assert time.time() < deadline, f"processes still running after the sweep was stopped: {alive}"
        time.sleep(0.2)
    assert "stopped" in status_table(out, "stop")  # its process is gone: a rerun resumes it
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert status_table(out, "stop").splitlines()[-1].startswith("1 done" + (", 1 skipped" if stage == "pretrain" else ""))


def test_a_calibrated_ladder_moves_every_op_range(tmp_path):
    from sweeps.findings import finding1
    from sweeps.reproduce import read_ladder

    path = tmp_path / "ladder.yaml"
    path.write_text("ladder:\n  ID: {lo: 2, hi: 5}\n  edge: {lo: 6, hi: 8}\n  hard: {lo: 9, hi: 12}\n")
    finding = finding1("micro", ladder=read_ladder(path))
    edge_arm = next(a for a in finding.arms if a.label == "rl-edge-s0")
    pool = dict(dict(edge_arm.eval.inputs)["--model"].inputs)["--data"]
    assert [(r.lo, r.hi) for r in spec(pool).ops] == [(6, 8)]
    assert edge_arm.eval.resolved["ladder"]["edge"] == {"lo": 6, "hi": 8}  # evals split by the same ladder
    assert spec(dict(edge_arm.eval.inputs)["--data"]).ops[0].hi == 12
    assert finding.ladder == {"ID": (2, 5), "edge": (6, 8), "hard": (9, 12)}
    # ... but not the base it was measured on: pre-training stays on the preset's ID range (2-10), same step
    model = dict(next(a for a in finding.arms if a.label == "base").eval.inputs)["--model"]
    assert model.key == dict(next(a for a in finding1("micro").arms if a.label == "base").eval.inputs)["--model"].key
    assert [(r.lo, r.hi) for r in spec(dict(model.inputs)["--data"]).ops] == [(2, 4), (5, 7), (8, 10)]
    path.write_text("edge: {lo: 6, hi: 8}\n")
    with pytest.raises(ValueError, match="--ladder"):
        read_ladder(path)


def test_a_preset_names_its_measured_ladder_and_findings_follow_it(tmp_path, capsys):
    """`findings.calibrated_ladder` (a file beside the preset) moves RL and eval ranges without --ladder, the plan
    says so, and a missing file is an error naming it."""
    import yaml

    from core.config import PRESET_DIR, ConfigError
    from sweeps.findings import finding1
    from sweeps.reproduce import plan_text

    preset = yaml.safe_load((PRESET_DIR / "micro.yaml").read_text())
    preset["findings"]["calibrated_ladder"] = "measured.yaml"
    path = tmp_path / "calibrated.yaml"
    path.write_text(yaml.safe_dump(preset))
    (tmp_path / "measured.yaml").write_text("ladder:\n  ID: {lo: 2, hi: 9}\n  edge: {lo: 10, hi: 12}\n"
                                            "  hard: {lo: 14, hi: 20}\n")
    finding = finding1(str(path))
    assert finding.ladder == {"ID": (2, 9), "edge": (10, 12), "hard": (14, 20)}
    edge_pool = dict(dict(next(a for a in finding.arms if a.label == "rl-edge-s0").eval.inputs)["--model"].inputs)
    assert [(r.lo, r.hi) for r in spec(edge_pool["--data"]).ops] == [(10, 12)]
    plan = plan_text(finding, str(path), tmp_path, 1)[0]
    assert "Op ladder: ID 2–9, edge 10–12, hard 14–20 (measured on the base: measured.yaml" in plan
    given = finding1(str(path), ladder={"ID": {"lo": 2, "hi": 5}, "edge": {"lo": 6, "hi": 8},
                                        "hard": {"lo": 9, "hi": 12}})
    assert given.ladder["edge"] == (6, 8) and given.ladder_source == "given"  # --ladder wins
    (tmp_path / "measured.yaml").unlink()
    with pytest.raises(ConfigError, match="measured.yaml"):
        finding1(str(path))


def test_pretraining_seeds_repeat_every_base_and_pool_into_claim_groups(tmp_path):
    import yaml

    from analysis.claims import group_of
    from core.config import PRESET_DIR
    from sweeps.findings import finding4

    preset = yaml.safe_load((PRESET_DIR / "smoke.yaml").read_text())
    preset["findings"]["pretrain_seeds"] = [0, 1]
    path = tmp_path / "two-seeds.yaml"
    path.write_text(yaml.safe_dump(preset))
    finding = finding4(str(path), seeds=(0, 1))
    one = finding4("smoke", seeds=(0, 1))
    labels = {a.label: a for a in finding.arms}
    assert len(finding.arms) == 2 * len(one.arms)
    assert {a.label for a in one.arms} < set(labels)  # seed 0 keeps the plain labels (and the same steps)
    assert labels["rl-strict-p1-s0"].reference == "base-p1"
    base_p1 = dict(labels["rl-strict-p1-s0"].eval.inputs)["--model"]
    assert spec(dict(base_p1.inputs)["--init"]).seed == 1
    assert sum(group_of(label) == "rl-strict" for label in labels) == 4  # 2 pre-training x 2 RL seeds


def test_finding1_report_draws_the_headroom_sweep(tmp_path, monkeypatch):
    """The headroom sweep (paper scale: five shares of op 8-10 in pre-training, then RL on the edge) gets its own
    figure: pass@k of each base and its edge RL against the share, one point per share."""
    from analysis.evaldir import Evaluation
    from analysis.tables import results_table
    from sweeps.findings import finding1
    from sweeps.reproduce import finding_section
    from tests.test_plots import synthetic_samples

    finding = finding1("paper", seeds=(0,))
    # skill grows with the share of op 8-10, and edge RL adds to it
    skills = {arm.label: 6.0 + 0.02 * dict(arm.design).get("top_share_pct", 0.0) + 1.5 * ("rl-edge" in arm.label)
              for arm in finding.arms}
    samples = synthetic_samples(skills, n_problems=3, n_samples=4).assign(mode="sampled")
    evals = {}
    for label in skills:
        mine = samples[samples["checkpoint"] == label]
        evals[label] = Evaluation(tmp_path / label, mine, results_table(mine, finding.ladder, n_boot=50),
                                  pd.DataFrame(), {"checkpoint": label, "request": {"ladder": finding.ladder}})
    from analysis import plots

    drawn = []  # what the real figure function is given, to check the points it draws
    real = plots.plot_exposure
    monkeypatch.setattr(plots, "plot_exposure", lambda table, **kw: drawn.append((table, kw)) or real(table, **kw))
    parts = finding_section(finding, evals, tmp_path, seed=0)
    assert any(p.startswith("![headroom](finding1_headroom.png)") for p in parts), parts
    assert (tmp_path / "finding1_headroom.png").stat().st_size > 5000
    table, kw = next((t, kw) for t, kw in drawn if kw["out"].name == "finding1_headroom")
    assert kw["xlabel"] == "share of op 8–10 in pre-training (%)"
    for arm in ("base", "RL edge"):  # one point per share for each base and its edge RL
        assert sorted(table.loc[table["arm"] == arm, "exposure_pct"].unique()) == [0.1, 5.0, 20.0, 33.3, 50.0]


def test_finding4_report_draws_the_variants_in_the_findings_order(tmp_path, monkeypatch):
    """The reward-variant bars follow the finding (base, outcome, then the process rewards), not the alphabet."""
    from analysis import plots
    from analysis.evaldir import Evaluation
    from analysis.tables import results_table
    from sweeps.findings import finding4
    from sweeps.reproduce import finding_section
    from tests.test_plots import synthetic_samples

    finding = finding4("smoke", seeds=(0,))
    samples = synthetic_samples({arm.label: 6.0 for arm in finding.arms}, n_problems=3, n_samples=4)
    evals = {}
    for arm in finding.arms:
        mine = samples[samples["checkpoint"] == arm.label].assign(mode="sampled")
        evals[arm.label] = Evaluation(tmp_path / arm.label, mine, results_table(mine, finding.ladder, n_boot=50),
                                      pd.DataFrame(), {"checkpoint": arm.label, "request": {"ladder": finding.ladder}})
    drawn = []
    real = plots.plot_reward_variants
    monkeypatch.setattr(plots, "plot_reward_variants", lambda table, **kw: drawn.append(kw) or real(table, **kw))
    parts = finding_section(finding, evals, tmp_path, seed=0)
    assert any(p.startswith("![reward_variants](finding4_reward_variants.png)") for p in parts), parts
    assert drawn[0]["order"] == ["base", "outcome", "alpha0.2", "alpha0.5", "strict"]
