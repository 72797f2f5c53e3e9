"""The RL stage end to end on CPU: reward rises on a toy task, exact resume, ledger, filter, bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrain.metrics import read_metrics
from rl.cli import main
from rl.rewards import REWARDS

REPO = Path(__file__).resolve().parents[1]
STEPS = 6


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A smoke corpus with an RL pool and a smoke pre-trained model on it."""
    from datagen.cli import main as datagen
    from pretrain.cli import main as pretrain

    root = tmp_path_factory.mktemp("rl")
    assert datagen(["--preset", "smoke", "--out", str(root / "corpus"), "--quiet"]) == 0
    assert pretrain(["--preset", "smoke", "--data", str(root / "corpus"), "--out", str(root / "base"), "--quiet"]) == 0
    return root


def rl_args(base, out, *extra):
    return ["--preset", "smoke", "--data", str(base / "corpus"), "--init", str(base / "base"), "--out", str(out),
            "--quiet", "--steps", str(STEPS), *extra]


def test_reward_rises_on_a_toy_task(base, tmp_path, monkeypatch):
    # Toy task: finish the answer within 12 words. A barely trained model does so ~30% of the time; GRPO
    # must push that up within a few steps if advantages, loss and updates point the right way.
    monkeypatch.setitem(REWARDS, "brevity", lambda v, text, alpha: float("</answer>" in text and len(text.split()) <= 12))
    out = tmp_path / "toy"
    assert main(rl_args(base, out, "--steps", "16", "--prompts_per_step", "8", "--rollouts", "8",
                        "--mini_batch_prompts", "8", "--micro_batch", "64", "--lr", "1e-3",
                        "--max_new_tokens", "32", "--reward", "{name: brevity}", "--kl_coef", "0")) == 0
    reward = read_metrics(out)["rl/reward"].dropna()
    assert len(reward) == 16
    assert reward.iloc[-3:].mean() > reward.iloc[:2].mean() + 0.3
    assert reward.iloc[-3:].mean() > 0.5


def test_summary_metrics_and_completions(base, tmp_path):
    out = tmp_path / "run"
    assert main(rl_args(base, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    ledger = summary["ledger"]
    assert summary["stage"] == "rl" and summary["steps"] == STEPS and summary["seed"] == 0 and summary["commit"]
    assert ledger["samples"] == STEPS * 4 * 4 and ledger["steps"] == STEPS
    assert ledger["reference_flops"] > 0 and ledger["flops"] == pytest.approx(
        ledger["rollout_flops"] + ledger["reference_flops"] + ledger["policy_flops"])
    assert ledger["paper_token_equivalents"] == pytest.approx(5 / 3 * STEPS * 16 * 2048)
    metrics = read_metrics(out)
    for name in ("rl/reward", "rl/verified", "rl/zero_var_all0", "rl/zero_var_all1", "rl/entropy", "rl/kl",
                 "rl/response_length", "rl/clip_frac", "rl/tokens_generated"):
        assert name in metrics and metrics[name].notna().sum() == STEPS, name
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rows} == {0, 2, 4} and all("completion" in r and "error" in r for r in rows)
    assert (out / "model" / "config.json").exists() and (out / "model" / "tokenizer.json").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "completions.jsonl", "config.json", "metrics.jsonl", "model", "summary.json"]  # no checkpoint left over
    assert main(rl_args(base, out)) == 0  # finished: nothing to do


def test_micro_batches_do_not_change_the_update(base, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    common = ("--steps", "1", "--mini_batch_prompts", "4", "--lr", "1e-3")
    assert main(rl_args(base, one, *common, "--micro_batch", "16")) == 0
    assert main(rl_args(base, many, *common, "--micro_batch", "3")) == 0
    a, b = load_file(one / "model" / "model.safetensors"), load_file(many / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)


def test_killed_and_rerun_equals_uninterrupted(base, tmp_path):
    reference = tmp_path / "reference"
    assert main(rl_args(base, reference)) == 0
    out = tmp_path / "killed"
    last = out / "checkpoints" / "last.ckpt"
    command = [sys.executable, "-m", "sweeps.cli", "rl", *rl_args(base, out)]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not last.exists():
        assert proc.poll() is None, "finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert main(rl_args(base, out)) == 0
    ref, got = load_file(reference / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6, msg=name)
    ref_ledger = json.loads((reference / "summary.json").read_text())["ledger"]
    got_ledger = json.loads((out / "summary.json").read_text())["ledger"]
    assert got_ledger == ref_ledger


def test_edge_filter_selects_and_is_logged(base, tmp_path):
    out = tmp_path / "filter"
    assert main(rl_args(base, out, "--edge_filter", "{enabled: true, k: 4, candidates: 8, refresh_every: 2}")) == 0
    metrics = read_metrics(out)
    kept, active = metrics["filter/kept"], metrics["filter/active"]
    assert len(kept) == STEPS and (kept <= 8).all()
    pool = 40  # the smoke preset's rl split
    assert ((active == kept) | ((kept == 0) & (active == pool))).all()
    assert json.loads((out / "summary.json").read_text())["ledger"]["generated_tokens"] > 0


def test_bad_inputs_fail_before_training(base, tmp_path, capsys):
    from datagen.cli import main as datagen

    no_pool = tmp_path / "no-pool"
    assert datagen(["--preset", "smoke", "--out", str(no_pool), "--quiet", "--splits", "{train: 10}"]) == 0
    out = tmp_path / "x"
    assert main(["--preset", "smoke", "--data", str(no_pool), "--init", str(base / "base"), "--out", str(out)]) == 2
    assert "split 'rl' is empty" in capsys.readouterr().err and not out.exists()
    assert main(rl_args(base, out, "--reward", "{name: vibes}")) == 2
    assert "rl.reward.name" in capsys.readouterr().err
    assert main(["--preset", "smoke", "--data", str(base / "corpus"), "--init", str(tmp_path), "--out", str(out)]) == 2
    assert "no finished run" in capsys.readouterr().err and not out.exists()


def test_delta_schedule_switches_from_dense_to_binary(base, tmp_path):
    out = tmp_path / "delta"
    assert main(rl_args(base, out, "--reward", "{name: strict, dense: process, switch_step: 2}")) == 0
    dense = read_metrics(out)["rl/dense_reward"]
    assert dense.tolist() == [1.0, 1.0] + [0.0] * (STEPS - 2)


def test_plan_budget_cli(base, capsys):
    from rl.plan import main as plan

    assert plan(["--preset", "paper", "--total-tokens", "1.05e9"]) == 0
    table = capsys.readouterr().out
    assert "one RL step = 20,971,520" in table and "40.0 mid-training steps" in table
    assert plan(["--preset", "smoke", "--total-tokens", "1e6", "--data", str(base / "corpus")]) == 0
    assert "beta" in capsys.readouterr().out
    assert plan(["--preset", "smoke", "--total-tokens", "1e6", "--betas", "2"]) == 2
