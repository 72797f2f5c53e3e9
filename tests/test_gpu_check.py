"""The GPU path, guarded on a CPU: the one-GPU check runs end to end at smoke scale, and every stage uses the
precision it is configured with (bf16 on a GPU by default, fp32 on a CPU, or what the config says)."""

import sys

import pytest

from benchmarks import gpu_check
from core.config import load
from pretrain.config import PretrainConfig
from pretrain.recipe import Recipe
from tests.test_pretrain_helpers import TINY, corpus


def test_gpu_check_runs_every_part_at_smoke_scale(tmp_path, monkeypatch):
    out = tmp_path / "gpu.md"
    monkeypatch.setattr(sys, "argv", ["gpu_check", "--preset", "smoke", "--out", str(out)])
    assert gpu_check.main() == 0
    text = out.read_text()
    for row in ("| pre-training", "| sampler, ours", "| sampler, HF `generate`", "| evaluation", "| RL steps"):
        assert row in text
    assert "Not reached" not in text and "6·N + 12·L·d·T" in text


@pytest.mark.parametrize("precision,expected", [("auto", "32-true"), ("bf16-mixed", "bf16-mixed")])
def test_training_precision_is_the_configured_one(precision, expected, tmp_path):
    from core.config import parse_overrides

    cfg = load(PretrainConfig, "smoke", "pretrain", parse_overrides(TINY) | {"precision": precision})
    recipe = Recipe("pretrain", cfg, corpus(), tmp_path / "run", progress=False)
    recipe.setup()
    assert recipe.trainer.precision == expected  # on this CPU: auto means fp32
    assert recipe.trainer.strategy.root_device.type == "cpu"


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns_and_still_runs_it(native, monkeypatch):
    import warnings

    import torch

    from pretrain.recipe import resolve_precision

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("bf16-mixed") == "bf16-mixed"
        assert resolve_precision("auto") == "32-true"  # auto never picks bf16 on a CPU, native or not
    emulated = [w for w in caught if "no native bf16" in str(w.message)]
    assert len(emulated) == (0 if native else 1)
    assert not emulated or "--precision 32-true" in str(emulated[0].message)
