"""Training configs: every preset's pretrain/midtrain section loads, lengths follow from tokens, bad values
name the field."""

import pytest
import torch

from core import config
from core.config import ConfigError
from datagen.tokenizer import build_tokenizer
from midtrain.config import MidtrainConfig
from pretrain.config import PretrainConfig
from pretrain.model import build_model


@pytest.mark.parametrize("name", config.preset_names())
def test_every_preset_has_loadable_pretrain_and_midtrain_sections(name):
    pre = config.load(PretrainConfig, name, "pretrain")
    mid = config.load(MidtrainConfig, name, "midtrain")
    assert pre.steps >= 1 and mid.steps >= 1
    assert mid.warmup > pre.warmup  # mid-training warms up longer (paper: 15% vs 5%)


def test_preset_model_sizes():
    tok = build_tokenizer()

    def params(name):
        with torch.device("meta"):
            return build_model(config.load(PretrainConfig, name, "pretrain").model, tok, 0).num_parameters()

    assert params("smoke") < 0.5e6
    assert 1e6 <= params("micro") <= 3e6
    assert 10e6 <= params("small") <= 30e6
    assert 90e6 <= params("paper") <= 120e6  # "about 100M"


def test_paper_preset_follows_the_paper():
    cfg = config.load(PretrainConfig, "paper", "pretrain")
    m = cfg.model
    assert (m.layers, m.hidden, m.ffn, m.heads, m.kv_heads, m.max_len) == (12, 768, 3072, 12, 2, 2048)
    assert (m.rope_theta, m.norm_eps, m.tie_embeddings) == (1e6, 1e-6, True)
    assert cfg.tokens_per_step == 512 * 1024 and cfg.tokens == 10**10
    assert (cfg.lr, cfg.min_lr, cfg.warmup, cfg.weight_decay) == (2e-4, 3e-5, 0.05, 0.1)
    mid = config.load(MidtrainConfig, "paper", "midtrain")
    assert (mid.lr, mid.min_lr, mid.warmup) == (1e-4, 3e-5, 0.15)


def test_dataclass_defaults_are_the_papers_schedules():
    assert (PretrainConfig().lr, PretrainConfig().min_lr, PretrainConfig().warmup) == (2e-4, 3e-5, 0.05)
    assert (MidtrainConfig().lr, MidtrainConfig().min_lr, MidtrainConfig().warmup) == (1e-4, 3e-5, 0.15)


def test_steps_are_derived_from_tokens():
    cfg = config.load(PretrainConfig, "smoke", "pretrain", {"tokens": 10_001, "batch_size": 2, "accumulate": 3,
                                                             "seq_len": 100})
    assert cfg.tokens_per_step == 600 and cfg.steps == 17


@pytest.mark.parametrize("override, field", [
    ({"seq_len": 512}, "pretrain.seq_len"),  # beyond model.max_len
    ({"model.heads": 3}, "pretrain.model.heads"),
    ({"model.kv_heads": 3}, "pretrain.model.kv_heads"),
    ({"min_lr": 1.0}, "pretrain.min_lr"),
    ({"warmup": 1.5}, "pretrain.warmup"),
    ({"loss": "answer"}, "pretrain.loss"),
    ({"lr_typo": 1.0}, "pretrain.lr_typo"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        config.load(PretrainConfig, "smoke", "pretrain", override)


def test_midtrain_has_no_architecture():
    with pytest.raises(ConfigError, match="midtrain.model"):
        config.load(MidtrainConfig, "smoke", "midtrain", {"model.layers": 2})
