"""Shared by the pretrain/midtrain tests: tiny real corpora (built once per process), a tiny training config, and
one torch thread.

Corpora are cached per process rather than as a session fixture because several test modules use them and a
fixture imported into two modules would be built twice. Tiny models run on one thread: on a shared 2-core machine
two OpenMP threads contending with other processes make each step ~20x slower.
"""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from core import config
from datagen.corpus import build_corpus
from datagen.spec import CorpusSpec
from pretrain.config import PretrainConfig

_ROOT = Path(tempfile.mkdtemp(prefix="pretrain-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)

# "pre": the smoke preset's corpus; "mid": another mixture (harder ops, other seed) for mid-training;
# "curriculum": the smoke corpus in op-curriculum order, in four shards.
CORPORA = {"pre": {}, "mid": {"seed": 1, "ops": [{"lo": 5, "hi": 8}], "splits": {"train": 150, "val": 20}},
           "curriculum": {"curriculum": 0.5, "shard_rows": 100}}

# ~0.3M parameters (mostly the embedding); a step takes tens of milliseconds on one core.
TINY = ["--model.layers", "2", "--model.hidden", "32", "--model.ffn", "64", "--model.heads", "2",
        "--model.kv_heads", "1", "--seq_len", "256", "--batch_size", "2", "--log_every", "2"]



def corpus(name: str = "pre") -> Path:
    return _build(name)


@functools.cache
def _build(name: str) -> Path:
    data = config.load_preset_section("smoke", "datagen") | CORPORA[name]
    out = _ROOT / name
    build_corpus(config.build(CorpusSpec, data, "datagen"), out, progress=False)
    return out


def tiny_config(steps: int, **overrides) -> PretrainConfig:
    cfg = config.load(PretrainConfig, "smoke", "pretrain", config.parse_overrides(TINY) | overrides)
    cfg.tokens = steps * cfg.tokens_per_step
    return cfg


def test_tiny_config_fits_the_corpus():
    from pretrain.data import length_stats

    cfg = tiny_config(1)
    assert cfg.steps == 1
    assert length_stats(corpus(), "train", cfg.seq_len)["truncated"] == 0
