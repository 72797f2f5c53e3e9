"""Bad input through the real `lab` CLI: every case exits 2 with a message naming the field or file, never a
traceback, and leaves no output behind. The artifacts are real: a smoke corpus, a finished tiny pre-training run
and an evaluation of it, built once for the module."""

import hashlib
import json
import shutil

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
                    "--steps", "3", "--max_new_tokens", "8", "--lr", "1e30", "--quiet")
    assert code == 1, err
    assert "lab rl: error: non-finite" in err and "Traceback" not in err
    assert not (out / "model").exists() and not (out / "summary.json").exists()


@pytest.fixture(scope="module")
def damaged(artifacts, tmp_path_factory):
    """Real artifacts broken the ways a disk, a kill or a hand edit breaks them."""
    root = tmp_path_factory.mktemp("damaged")
    (root / "file").write_text("not a directory\n")
    run = shutil.copytree(artifacts["run"], root / "truncated-model")
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad_json = shutil.copytree(artifacts["data"], root / "bad-manifest")
    (bad_json / "manifest.json").write_text((bad_json / "manifest.json").read_text()[:-40])
    truncated = shutil.copytree(artifacts["data"], root / "truncated-shard")
    manifest = json.loads((truncated / "manifest.json").read_text())
    shard = truncated / manifest["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    manifest["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()  # the checksum agrees
    (truncated / "manifest.json").write_text(json.dumps(manifest))
    return root


# (command line with {data} {run} {eval} {file} {root} {new} placeholders, words the error must contain)
CASES = {
    "pretrain-out-is-a-file": ("pretrain --data {data} --out {file}", "{file}: is a file"),
    "midtrain-out-is-a-file": ("midtrain --data {data} --init {run} --out {file}", "{file}: is a file"),
    "rl-out-is-a-file": ("rl --data {data} --init {run} --out {file}", "{file}: is a file"),
    "eval-out-is-a-file": ("eval --data {data} --model {run} --out {file}", "{file}: is a file"),
    "plot-out-is-a-file": ("plot --eval {eval} --out {file}", "{file}: cannot be a figure directory, {file} is a file"),
    "plot-out-inside-a-file": ("plot --eval {eval} --out {file}/figs", "{file}/figs: cannot be a figure directory"),
    "datagen-out-inside-a-file": ("datagen --out {file}/corpus", "{file}/corpus: cannot be created, a parent path"),
    "midtrain-truncated-model": ("midtrain --data {data} --init {root}/truncated-model --out {new}",
                                 "truncated-model/model: cannot load checkpoint weights"),
    "rl-truncated-model": ("rl --data {data} --init {root}/truncated-model --out {new}",
                           "truncated-model/model: cannot load checkpoint weights"),
    "eval-truncated-model": ("eval --data {data} --model {root}/truncated-model --out {new}",
                             "truncated-model/model: cannot load checkpoint weights"),
    "manifest-not-json": ("pretrain --data {root}/bad-manifest --out {new}", "bad-manifest/manifest.json: not valid JSON"),
    "truncated-shard-matching-checksum": ("pretrain --data {root}/truncated-shard --out {new}",
                                          "not a readable parquet shard"),
    "sub-field-of-a-plain-value": ("datagen --out {new} --seed.x 1", "datagen.seed: is a plain value (0), it has no field 'x'"),
    "plan-budget-nan": ("plan-budget --total-tokens nan", "--total-tokens: must be a finite number > 0, got nan"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_a_clear_message(case, artifacts, damaged, tmp_path, capsys):
    command, expected = CASES[case]
    places = {"data": artifacts["data"], "run": artifacts["run"], "eval": artifacts["eval"],
              "file": damaged / "file", "root": damaged, "new": tmp_path / "new"}
    quiet = ["--quiet"] if command.split()[0] in ("datagen", "pretrain", "midtrain", "rl", "eval") else []
    code, err = lab(capsys, *command.format(**places).split(), *quiet)
    assert code == 2, err
    assert expected.format(**places) in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()
    assert (damaged / "file").read_text() == "not a directory\n"


def test_rl_infinite_lr_is_refused_by_name(artifacts, tmp_path, capsys):
    code, err = lab(capsys, "rl", "--data", artifacts["data"], "--init", artifacts["run"], "--out", tmp_path / "rl",
                    "--lr", "inf", "--quiet")
    assert code == 2 and "rl.lr: must be finite and > 0, got inf" in err and not (tmp_path / "rl").exists()


def test_the_guard_tells_huge_from_non_finite():
    import lightning as L
    import torch

    from core.rundir import NonFiniteError, StopOnNonFinite

    trainer, guard = L.Trainer(logger=False, enable_progress_bar=False), StopOnNonFinite()
    module = L.LightningModule()
    module.weight = torch.nn.Parameter(torch.full((4, 4), 3e38))  # finite; its squares overflow float32
    guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.0)}, None, 0)
    for bad in (float("inf"), float("nan")):
        with torch.no_grad():
            module.weight[1, 2] = bad
        with pytest.raises(NonFiniteError, match="non-finite weights"):
            guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.0)}, None, 0)
    with pytest.raises(NonFiniteError, match="non-finite loss"):
        guard.on_train_batch_end(trainer, L.LightningModule(), {"loss": torch.tensor(float("nan"))}, None, 0)
