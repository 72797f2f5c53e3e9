"""Bad input through the real `lab` CLI: every case exits 2 with a message naming the field or file, never a
traceback, and leaves no output behind. The artifacts are real: a smoke corpus, a finished tiny pre-training run
and an evaluation of it, built once for the module."""

import json

import pytest

from sweeps.cli import main
from tests.test_pretrain_helpers import TINY, corpus

EVAL = ["--problems_per_op", "1", "--samples", "2", "--max_new_tokens", "8", "--n_boot", "10", "--quiet"]


def lab(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = corpus()
    assert main(["pretrain", "--data", str(data), "--out", str(root / "run"), *TINY, "--tokens", "1024",
                 "--quiet"]) == 0
    assert main(["eval", "--model", str(root / "run"), "--data", str(data), "--out", str(root / "eval"),
                 *EVAL]) == 0
    return {"data": data, "run": root / "run", "eval": root / "eval"}


def test_each_directory_records_its_stage(artifacts):
    assert json.loads((artifacts["run"] / "config.json").read_text())["stage"] == "pretrain"
    assert json.loads((artifacts["run"] / "summary.json").read_text())["stage"] == "pretrain"
    assert json.loads((artifacts["eval"] / "summary.json").read_text())["stage"] == "eval"


@pytest.mark.parametrize("stage, given, found", [
    ("pretrain", "eval", "eval"), ("midtrain", "run", "pretrain"), ("rl", "eval", "eval"),
    ("pretrain", "data", "datagen"), ("eval", "run", "pretrain")])
def test_a_directory_of_another_stage_is_refused(stage, given, found, artifacts, capsys):
    a = artifacts
    before = sorted(p.name for p in a[given].iterdir())
    args = {"pretrain": ["--data", a["data"], *TINY], "midtrain": ["--data", a["data"], "--init", a["run"]],
            "rl": ["--data", a["data"], "--init", a["run"]], "eval": ["--data", a["data"], "--model", a["run"]]}
    code, err = lab(capsys, stage, *args[stage], "--out", a[given], "--quiet")
    assert code == 2
    assert f"{a[given]}: holds the output of another stage ({found}), not of lab {stage}" in err
    assert sorted(p.name for p in a[given].iterdir()) == before


def test_infinite_lr_is_refused_by_name(artifacts, tmp_path, capsys):
    code, err = lab(capsys, "pretrain", "--data", artifacts["data"], "--out", tmp_path / "run", *TINY, "--lr", "inf")
    assert code == 2 and "pretrain.lr: must be finite" in err and not (tmp_path / "run").exists()


def test_divergence_stops_the_run_and_keeps_the_last_finite_checkpoint(artifacts, tmp_path, capsys):
    """A huge learning rate overflows the weights within a few steps: the run fails with exit 1, writes neither
    model/ nor summary.json, and the checkpoint it leaves holds only finite values (every step checkpoints)."""
    import torch

    out = tmp_path / "run"
    code, err = lab(capsys, "pretrain", "--data", artifacts["data"], "--out", out, *TINY, "--tokens", "8192",
                    "--lr", "1e30", "--min_lr", "1e29", "--warmup", "0.25", "--checkpoint_every", "1", "--quiet")
    assert code == 1, err
    assert "lab pretrain: error: non-finite" in err and "Traceback" not in err
    assert not (out / "model").exists() and not (out / "summary.json").exists()
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] >= 1
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_rl_divergence_stops_the_run(artifacts, tmp_path, capsys):
    out = tmp_path / "rl"
    code, err = lab(capsys, "rl", "--data", artifacts["data"], "--init", artifacts["run"], "--out", out,
                    "--steps", "2", "--max_new_tokens", "8", "--lr", "inf", "--quiet")
    assert code == 1, err
    assert "lab rl: error: non-finite" in err and "Traceback" not in err
    assert not (out / "model").exists() and not (out / "summary.json").exists()
