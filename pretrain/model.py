"""The model: a stock HF Qwen2 decoder, built from `ModelConfig` or loaded from a finished run.

Stock `Qwen2ForCausalLM` rather than a hand-written GPT, so every checkpoint is an ordinary HF directory that
evaluation, RL and anyone else load with `AutoModelForCausalLM` and no project code. Loading an init checkpoint
checks it against the corpus *before* training: a model whose tokenizer differs from the corpus's would train
happily on wrong token ids, so the mismatch must be an error, not a silent bad run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from core.rundir import InputError
from datagen.tokenizer import load_tokenizer, vocab_fingerprint
from pretrain.config import ModelConfig


def model_dir_of(path: str | Path) -> Path:
    """The HF model directory of `path`: a finished run directory (its `model/`) or a model directory itself."""
    path = Path(path)
    # The run directory first: it has a config.json of its own (the stage's config), which is no model.
    for candidate in (path / "model", path):
        if (candidate / "config.json").exists() and (candidate / "tokenizer.json").exists():
            return candidate
    if not path.exists():
        raise InputError(f"{path}: does not exist (no finished run to start from)")
    raise InputError(f"{path}: no finished run to start from (no model with its tokenizer here or in {path / 'model'})")


def build_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.ffn,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_len,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def check_same_vocabulary(model_dir: Path, tokenizer: PreTrainedTokenizerFast) -> None:
    """The checkpoint's tokenizer must map tokens to the ids the corpus uses: same-sized vocabularies with other
    ids would train or sample fluent nonsense, so the maps themselves are compared."""
    try:
        checkpoint_tokenizer = load_tokenizer(model_dir)
    except (OSError, ValueError) as err:
        raise InputError(f"{model_dir}: checkpoint has no usable tokenizer ({err})") from None
    if vocab_fingerprint(checkpoint_tokenizer) != vocab_fingerprint(tokenizer):
        raise InputError(f"{model_dir}: checkpoint tokenizer does not match the corpus tokenizer "
                         "(vocabulary fingerprints differ)")


def load_init(model_dir: str | Path, tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """The model saved in `model_dir` (a run's `model/`), after checking it fits `tokenizer` (the corpus's)."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise InputError(f"{model_dir}: no model checkpoint (config.json missing); is the init run finished?")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (ValueError, AttributeError):
        raise InputError(f"{config_path}: not a valid model config (corrupt JSON)") from None
    if model_type != "qwen2":
        raise InputError(f"{model_dir}: incompatible checkpoint (model_type {model_type!r}, expected 'qwen2')")
    check_same_vocabulary(model_dir, tokenizer)
    try:
        model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # truncated or corrupt weights
        raise InputError(f"{model_dir}: cannot load checkpoint weights ({err})") from None
    if model.config.vocab_size != len(tokenizer):
        raise InputError(f"{model_dir}: checkpoint vocab_size {model.config.vocab_size} != "
                         f"corpus tokenizer size {len(tokenizer)}")
    return model.train()  # from_pretrained returns eval mode, and Lightning keeps whatever mode it is given
