"""End-to-end pre-training on CPU: the loss falls, the HF export round-trips, reruns are idempotent, and a run
killed (SIGKILL, then SIGTERM) and rerun ends with the weights of an uninterrupted run."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from datagen.tokenizer import vocab_fingerprint
from pretrain.cli import main
from pretrain.metrics import read_metrics
from pretrain.recipe import Recipe
from tests.test_pretrain_helpers import TINY, corpus, tiny_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 40-step tiny run logging every step, its Recipe kept so the in-memory model can be compared with
    the export."""
    out = tmp_path_factory.mktemp("run") / "run"
    recipe = Recipe("pretrain", tiny_config(40, log_every=1), corpus(), out, progress=False)
    recipe.setup()
    recipe.train()
    recipe.save()
    recipe.cleanup()
    return recipe


# The first losses of the seeded tiny run (smoke corpus, seed 0, one thread), pinned: any change to the data order,
# packing, masking, initialisation, loss or optimizer moves them. If a deliberate change does (a new corpus
# generator, say), re-pin them from the assertion message, and say why in the commit.
FIRST_LOSSES = [6.776907, 6.771226, 6.680412, 6.570637, 6.437154]


def test_smoke_run_loss_falls(finished):
    metrics = read_metrics(finished.out)
    loss = metrics["train/loss"].dropna()
    vocab = len(finished.tokenizer)
    assert abs(loss.iloc[0] - math.log(vocab)) < 0.3  # starts near uniform over the vocabulary
    first = loss.iloc[: len(FIRST_LOSSES)].round(6).tolist()
    assert first == pytest.approx(FIRST_LOSSES, abs=2e-5), f"first losses now {first}"
    assert list(loss.index) == list(range(40))  # every step logged, none twice
    assert loss.iloc[-5:].mean() < loss.iloc[:5].mean() - 1.0  # and it keeps falling (~6.7 -> ~4.9 nats)
    assert metrics["train/loss_solution"].notna().all() and metrics["train/loss_all"].notna().all()


def test_metrics_lr_schedule_and_tokens(finished):
    metrics = read_metrics(finished.out)
    cfg = finished.cfg
    lr = metrics["lr-AdamW/pg1"].dropna()
    # Closed form of linear warmup then cosine to min_lr, evaluated at every optimizer step the run took.
    warmup = round(cfg.warmup * cfg.steps)
    expected = [cfg.lr * s / warmup if s < warmup else
                cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (cfg.steps - warmup)))
                for s in range(cfg.steps)]
    assert warmup == 2 and list(lr.index) == list(range(cfg.steps))
    assert lr.tolist() == pytest.approx(expected, rel=1e-9, abs=1e-15)
    tokens = metrics["train/tokens"].dropna()
    assert tokens.iloc[-1] == cfg.steps * cfg.tokens_per_step
    assert metrics["train/device/items_per_sec"].dropna().gt(0).all()  # tokens/s


def test_summary_and_run_directory(finished):
    summary = json.loads((finished.out / "summary.json").read_text())
    params = finished.module.model.num_parameters()
    assert summary["params"] == params and summary["tokens"] == 40 * finished.cfg.tokens_per_step
    assert summary["flops"] == 6 * params * summary["tokens"]
    for key in ("wall_s", "hardware", "seed", "commit", "config", "python", "final_loss"):
        assert key in summary
    assert summary["config"]["model"]["hidden"] == 32 and summary["stage"] == "pretrain"
    assert not (finished.out / "checkpoints").exists()  # keep_checkpoints: false
    assert not list(finished.out.glob(".*tmp*"))


def test_hf_round_trip(finished):
    model_dir = finished.out / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert vocab_fingerprint(tok) == vocab_fingerprint(finished.tokenizer)
    assert model.config.tie_word_embeddings and model.config.model_type == "qwen2"
    ids = tok("<question> how many ? </question> <solution>", return_tensors="pt")["input_ids"]
    trained = finished.module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, trained(ids).logits, rtol=0, atol=1e-6)


def test_rerun_of_a_finished_run_does_nothing(finished, capsys):
    summary = finished.out / "summary.json"
    before = summary.stat().st_mtime_ns
    args = ["--data", str(corpus()), "--out", str(finished.out), "--quiet", *TINY, "--tokens", str(finished.cfg.tokens),
            "--log_every", "1"]
    assert main(args) == 0
    assert "already finished" in capsys.readouterr().out
    assert summary.stat().st_mtime_ns == before
    assert main([*args, "--lr", "0.1"]) == 2  # another config in the same directory is refused
    assert "different config" in capsys.readouterr().err


def test_solution_only_loss(tmp_path):
    out = tmp_path / "run"
    assert main(["--data", str(corpus()), "--out", str(out), "--quiet", *TINY, "--tokens", "2048",
                 "--loss", "solution", "--log_every", "3"]) == 0
    metrics = read_metrics(out)  # 4 steps, logged once (after step 3)
    assert len(metrics["train/loss"].dropna()) == 1
    assert (metrics["train/loss"] == metrics["train/loss_solution"]).all()
    assert (metrics["train/loss"] != metrics["train/loss_all"]).all()
    # The final (4th, unlogged) step's loss still reaches the summary.
    final = json.loads((out / "summary.json").read_text())["final_loss"]
    assert final is not None and final != metrics["train/loss"].iloc[-1]


def test_a_run_that_does_not_read_a_curriculum_corpus_once_warns(tmp_path):
    # 4 steps of 2 sequences against ~98 sequences in the corpus's epoch: its hardest ops would never be seen.
    with pytest.warns(UserWarning, match=r"curriculum corpus is meant to be read once, and this run reads 0\.08 "):
        assert main(["--data", str(corpus("curriculum")), "--out", str(tmp_path / "run"), "--quiet", *TINY,
                     "--tokens", "2048"]) == 0


@pytest.mark.parametrize("case, message", [
    ("no corpus", "manifest.json: missing"),
    ("corrupt shard", "checksum mismatch"),
    ("tokenizer", "tokenizer does not match the manifest"),
])
def test_bad_corpus_fails_before_training(case, message, tmp_path, capsys):
    data = tmp_path / "corpus"
    if case != "no corpus":
        shutil.copytree(corpus(), data)
    if case == "corrupt shard":
        shard = next(data.glob("train-*.parquet"))
        shard.write_bytes(shard.read_bytes()[:-10])
        message = f"{shard.name}: {message}"
    if case == "tokenizer":
        manifest = json.loads((data / "manifest.json").read_text())
        manifest["tokenizer"]["fingerprint"] = "0" * 64
        (data / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    assert main(["--data", str(data), "--out", str(out), "--quiet", *TINY]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("lab pretrain: error:")
    assert not out.exists()


def _command(out: Path, steps: int) -> list[str]:
    cfg = tiny_config(steps)
    return [sys.executable, "-m", "sweeps.cli", "pretrain", "--preset", "smoke", "--data", str(corpus()),
            "--out", str(out), "--quiet", *TINY, "--tokens", str(cfg.tokens), "--checkpoint_every", "10",
            "--log_every", "1"]  # every step logs, so the step that SIGTERM interrupts must log too


def _wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"run ended (rc {proc.returncode}) before it could be interrupted"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_killed_and_rerun_equals_uninterrupted(tmp_path):
    steps = 40
    reference = tmp_path / "reference"
    assert main(_command(reference, steps)[4:]) == 0  # in-process, uninterrupted

    out = tmp_path / "killed"
    last = out / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # the reference ran on one thread too
    # 1. SIGKILL as soon as the first checkpoint exists: no chance to save anything.
    proc = subprocess.Popen(_command(out, steps), cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    _wait_for(last.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    # A checkpoint is never ahead of the metrics: every step before the one it resumes at is already logged.
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert set(range(killed_at)) <= set(read_metrics(out)["train/loss"].dropna().index)
    # 2. Resume; SIGTERM once it has written another checkpoint: it checkpoints at the next step and exits 143.
    proc = subprocess.Popen(_command(out, steps), cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    first = last.stat().st_mtime_ns
    _wait_for(lambda: last.stat().st_mtime_ns != first, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 10 < step < steps
    # 3. Resume to the end (in-process: the same command line).
    assert main(_command(out, steps)[4:]) == 0

    ref = load_file(reference / "model" / "model.safetensors")
    got = load_file(out / "model" / "model.safetensors")
    assert ref.keys() == got.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6, msg=name)
    # Metrics from all three processes survive; the surviving trajectory's values match the reference's.
    ref_loss = read_metrics(reference)["train/loss"].dropna()
    got_loss = read_metrics(out)["train/loss"].dropna()
    assert list(got_loss.index) == list(ref_loss.index)
    torch.testing.assert_close(torch.tensor(got_loss.values), torch.tensor(ref_loss.values), rtol=1e-4, atol=1e-5)
    assert json.loads((out / "summary.json").read_text())["tokens"] == steps * tiny_config(steps).tokens_per_step


class _Killed(BaseException):
    """What the fault injection raises in place of the SIGKILL that would end the process mid-write."""


def test_a_kill_during_the_sigterm_save_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    """SLURM sends SIGKILL KillWait seconds after SIGTERM, possibly while the SIGTERM checkpoint is being written
    (Lightning's fsspec save moves a temp file into place, a copy when the run directory is on another file
    system). That write must not be to last.ckpt: the previous checkpoint has to stay loadable."""
    from lightning.fabric.plugins.io import torch_io

    saves = []
    real_save = torch_io._atomic_save

    def faulty_save(checkpoint, path):
        saves.append(Path(path))
        if len(saves) == 1:  # CheckpointEvery's step-10 save: whole; SIGTERM arrives during the next step
            real_save(checkpoint, path)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        Path(path).write_bytes(b"torn: half a checkpoint")  # the SIGTERM save, killed mid-copy
        raise _Killed()

    monkeypatch.setattr(torch_io, "_atomic_save", faulty_save)
    out = tmp_path / "run"
    with pytest.raises(_Killed):
        main(_command(out, 40)[4:])
    assert len(saves) == 2
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 10
    monkeypatch.setattr(torch_io, "_atomic_save", real_save)
    assert main(_command(out, 40)[4:]) == 0  # and the run resumes from it to the end
    assert (out / "summary.json").exists()
