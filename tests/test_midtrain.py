"""Mid-training: continues a finished pre-training run on another mixture with its own schedule, and refuses
bad inputs (missing or incompatible checkpoint, mismatched tokenizer, corrupt shard) before training."""

import json
import math
import shutil

import pytest

from midtrain.cli import main
from pretrain.metrics import read_metrics
from pretrain.recipe import run
from tests.test_pretrain_helpers import corpus, tiny_config

SHAPE = ["--seq_len", "256", "--batch_size", "2", "--log_every", "2", "--quiet"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "run"
    run("pretrain", tiny_config(30), corpus("pre"), out, progress=False)
    return out


def args(init, out, data=None, steps=10):
    return ["--data", str(data or corpus("mid")), "--init", str(init), "--out", str(out), *SHAPE,
            "--tokens", str(steps * 2 * 256)]


def test_midtrain_continues_from_the_pretrained_model(pretrained, tmp_path):
    out = tmp_path / "mid"
    assert main(args(pretrained, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stage"] == "midtrain" and summary["init"] == str(pretrained.resolve())
    assert summary["steps"] == 10 and summary["config"]["warmup"] == 0.15
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "tokenizer.json").exists()

    metrics = read_metrics(out)
    vocab = json.loads((pretrained / "model" / "config.json").read_text())["vocab_size"]
    pre_first = read_metrics(pretrained)["train/loss"].dropna().iloc[0]
    # It starts where pre-training ended, far below a fresh model's ~ln(V) ...
    assert metrics["train/loss"].dropna().iloc[0] < min(pre_first, math.log(vocab)) - 1.0
    # ... with a fresh schedule of its own: warmup (15% of 10 steps) to the mid-training peak, then cosine down.
    lr = metrics["lr-AdamW/pg1"].dropna()
    assert lr.iloc[0] < lr.max() <= 1e-3 and lr.max() > 0.7e-3 and lr.iloc[-1] < lr.max()
    assert main(args(pretrained, out)) == 0  # finished: nothing to do


def _corrupt_shard(tmp_path):
    data = tmp_path / "corrupt"
    shutil.copytree(corpus("mid"), data)
    shard = data / json.loads((data / "manifest.json").read_text())["shards"][0]["file"]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    return data, shard.name


def _other_tokenizer(pretrained, tmp_path):
    init = tmp_path / "other-tok"
    shutil.copytree(pretrained, init)
    tok = json.loads((init / "model" / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[-2:]
    vocab[first], vocab[second] = vocab[second], vocab[first]  # same size, two ids swapped
    (init / "model" / "tokenizer.json").write_text(json.dumps(tok))
    return init


def _incompatible(pretrained, tmp_path):
    init = tmp_path / "gpt2"
    shutil.copytree(pretrained, init)
    config = json.loads((init / "model" / "config.json").read_text())
    (init / "model" / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    return init


@pytest.mark.parametrize("case, message", [
    ("missing", "no finished run"),
    ("unfinished", "no finished run"),
    ("incompatible", "incompatible checkpoint"),
    ("tokenizer", "tokenizer does not match"),
    ("corrupt", "checksum mismatch"),
])
def test_bad_inputs_fail_before_training(case, message, pretrained, tmp_path, capsys):
    init, data = pretrained, None
    if case == "missing":
        init = tmp_path / "nowhere"
    elif case == "unfinished":
        init = tmp_path / "unfinished"
        (init / "checkpoints").mkdir(parents=True)
    elif case == "incompatible":
        init = _incompatible(pretrained, tmp_path)
    elif case == "tokenizer":
        init = _other_tokenizer(pretrained, tmp_path)
    elif case == "corrupt":
        data, shard = _corrupt_shard(tmp_path)
        message = f"{shard}: {message}"
    out = tmp_path / "out"
    assert main(args(init, out, data)) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("lab midtrain: error:")
    assert not out.exists()  # nothing was started


def test_init_is_required():
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(corpus("mid")), "--out", "x"])
    assert exc.value.code == 2
