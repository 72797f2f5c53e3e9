"""Data parallelism on CPU: real 2-process Lightning DDP runs (gloo, one thread per process) of every stage.

Each run is the `lab` command in a subprocess, as a user starts it; Lightning's launcher starts the second rank
by re-running that command line. Tolerances are stated where the two computations legitimately differ.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from core.parallel import Placement, choose_threads
from pretrain.metrics import read_metrics
from tests.test_pretrain_helpers import TINY, corpus

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
STEPS = 16
# 4 sequences of 256 tokens per optimizer step whatever the number of processes (2 per rank on 2 ranks).
PRETRAIN = [*TINY, "--batch_size", "4", "--tokens", str(STEPS * 4 * 256), "--log_every", "1", "--checkpoint_every", "4"]
# Per-step loss tolerance between 1 and 2 processes. One process averages the loss over the tokens of its 4
# sequences; DDP averages the two ranks' per-token means (gradients likewise), which weights tokens slightly
# differently when the ranks' sequences hold different numbers of targets. Measured: at most 0.01 over 30 steps.
LOSS_TOLERANCE = 0.03


def lab(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", *argv], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    runs = {}
    for devices in (1, 2):
        runs[devices] = root / f"pretrain-{devices}"
        lab("pretrain", "--preset", "smoke", "--data", str(corpus()), "--out", str(runs[devices]), "--quiet",
            *PRETRAIN, "--devices", str(devices))
    return runs


def test_two_processes_follow_the_single_process_loss_curve(pretrained):
    one = read_metrics(pretrained[1])["train/loss"].dropna()
    two = read_metrics(pretrained[2])["train/loss"].dropna()
    assert list(one.index) == list(two.index) == list(range(STEPS))
    gap = (one - two).abs()
    assert gap.max() <= LOSS_TOLERANCE, gap.to_dict()
    assert one.iloc[-1] < one.iloc[0] - 0.5  # it learned, so the curves agree on more than the initial loss


def test_a_ddp_run_writes_each_record_once(pretrained):
    run = pretrained[2]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [record["step"] for record in records if "train/loss" in record]
    assert sorted(logged) == list(range(STEPS))  # each step once: rank 0 alone logs
    summary = json.loads((run / "summary.json").read_text())
    assert summary["placement"]["devices"] == 2 and summary["placement"]["threads"] == 1
    assert summary["placement"]["strategy"] == "DDPStrategy"
    assert summary["tokens"] == STEPS * 4 * 256  # the global batch, not a rank's
    # Placement is not part of the run's identity: both runs record the same config.
    configs = [json.loads((pretrained[d] / "config.json").read_text())["config"] for d in (1, 2)]
    assert configs[0] == configs[1] and "devices" not in configs[0]
    assert not (run / "checkpoints").exists() and not list(run.glob(".*tmp*"))


def test_interrupted_ddp_run_resumes_to_the_weights_of_an_uninterrupted_one(pretrained, tmp_path):
    """SIGKILL of the whole process group (what SLURM and a terminal do), then SIGTERM to rank 0 alone (which
    passes it on to the rank it started), each followed by the same command."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "sweeps.cli", "pretrain", "--preset", "smoke", "--data", str(corpus()),
            "--out", str(out), "--quiet", *PRETRAIN, "--devices", "2"]
    last = out / "checkpoints" / "last.ckpt"

    def start_and_wait(ready) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no checkpoint within the time limit"
            time.sleep(0.05)
        return proc

    proc = start_and_wait(last.exists)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = last.stat().st_mtime_ns
    proc = start_and_wait(lambda: last.stat().st_mtime_ns != first)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert 4 < torch.load(last, map_location="cpu", weights_only=False)["global_step"] < STEPS
    assert not (out / "summary.json").exists()
    lab(*argv[3:])
    ref = load_file(pretrained[2] / "model" / "model.safetensors")
    got = load_file(out / "model" / "model.safetensors")
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6, msg=name)


def test_midtraining_runs_on_two_processes_from_a_single_process_run(pretrained, tmp_path):
    out = tmp_path / "mid"
    lab("midtrain", "--preset", "smoke", "--data", str(corpus()), "--init", str(pretrained[1]), "--out", str(out),
        "--quiet", "--batch_size", "4", "--tokens", str(4 * 4 * 256), "--devices", "2")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["placement"]["devices"] == 2
    assert summary["init"] == str(pretrained[1].resolve())


def test_evaluation_on_two_ranks_gives_the_single_process_table(pretrained, tmp_path):
    tables = {}
    for devices in (1, 2):
        out = tmp_path / f"eval-{devices}"
        lab("eval", "--preset", "smoke", "--model", str(pretrained[1]), "--data", str(corpus()), "--out", str(out),
            "--quiet", "--devices", str(devices), "--samples", "4", "--problems_per_op", "3",
            "--batch_prompts", "2", "--greedy_batch_prompts", "2")
        tables[devices] = {name: pd.read_parquet(out / name) for name in
                           ("samples.parquet", "results.parquet", "taxonomy.parquet")}
        assert json.loads((out / "summary.json").read_text())["model"]["processes"] == devices
    for name, table in tables[1].items():
        pd.testing.assert_frame_equal(tables[2][name], table, obj=name)


def test_rl_on_two_ranks_trains_one_model(pretrained, tmp_path):
    out = tmp_path / "rl"
    lab("rl", "--preset", "smoke", "--data", str(corpus()), "--init", str(pretrained[1]), "--out", str(out),
        "--quiet", "--devices", "2", "--completions_every", "1")
    metrics = read_metrics(out)
    assert list(metrics.index) == [0, 1, 2, 3]
    # All 4 prompts x 4 rollouts of each step are in the logs, although each rank sampled half of them.
    completions = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert sorted(c["step"] for c in completions) == [s for s in range(4) for _ in range(4)]
    # Every step ran its updates: both ranks took the same number of DDP backward passes, or this would hang.
    assert metrics["rl/entropy"].notna().all() and metrics["rl/clip_frac"].notna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ledger"]["samples"] == 4 * 4 * 4 and summary["placement"]["devices"] == 2


def test_threads_come_from_the_flag_then_the_scheduler_then_the_default(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("LAB_THREADS", raising=False)
    assert choose_threads(Placement(threads=3)) == (3, "--threads")
    monkeypatch.setenv("LAB_THREADS", "2")
    assert choose_threads(Placement()) == (2, "LAB_THREADS")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert choose_threads(Placement(threads=1))[0] == 1
    assert choose_threads(Placement()) == (4, "SLURM_CPUS_PER_TASK")
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.delenv("LAB_THREADS")
    if not torch.cuda.is_available():
        assert choose_threads(Placement(devices=2))[0] == 1


def test_placement_that_cannot_split_the_global_batch_is_refused_by_name():
    from core.config import ConfigError, load
    from pretrain.config import PretrainConfig

    cfg = load(PretrainConfig, "smoke", "pretrain", {"devices": 2, "accumulate": 4})
    assert cfg.rank_batch() == (8, 2)  # fewer accumulation steps first: a device keeps its micro-batch
    assert load(PretrainConfig, "smoke", "pretrain", {"devices": 4}).rank_batch() == (2, 1)
    with pytest.raises(ConfigError, match=r"pretrain\.devices: 3 processes"):
        load(PretrainConfig, "smoke", "pretrain", {"devices": 3})
    with pytest.raises(ConfigError, match=r"pretrain\.num_nodes: must be >= 1"):
        load(PretrainConfig, "smoke", "pretrain", {"num_nodes": 0})
