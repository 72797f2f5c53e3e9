"""Typed configs for next-token training; `presets/*.yaml` section `pretrain:` builds into `PretrainConfig`.

`TrainConfig` holds everything a next-token run needs except where the weights come from, so pre-training
(`PretrainConfig` adds the architecture) and mid-training (`midtrain.config.MidtrainConfig` only changes the
schedule defaults; its architecture is the init checkpoint's) share one schema. A run's length is stated in
tokens, not steps, because budgets in the study are token budgets; steps follow from the batch shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from core.config import ConfigError
from core.parallel import Placement
from datagen.spec import OpRange


@dataclass
class ModelConfig:
    """A Qwen2-style decoder; the vocabulary comes from the corpus tokenizer, not from here."""

    layers: int = 12  # decoder blocks
    hidden: int = 768  # residual stream width
    ffn: int = 3072  # SwiGLU MLP inner width
    heads: int = 12  # query heads; hidden / heads is the head dim
    kv_heads: int = 2  # key/value heads (grouped-query attention when < heads)
    rope_theta: float = 1e6  # RoPE base frequency
    norm_eps: float = 1e-6  # RMSNorm epsilon
    tie_embeddings: bool = True  # share the input embedding with the output head
    max_len: int = 2048  # RoPE context the model is built for; seq_len may not exceed it

    def validate(self, where: str) -> None:
        for name in ("layers", "hidden", "ffn", "heads", "kv_heads", "max_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ConfigError(f"{where}.heads: {self.heads} does not divide hidden={self.hidden}")
        if self.heads % self.kv_heads:
            raise ConfigError(f"{where}.kv_heads: {self.kv_heads} does not divide heads={self.heads}")
        if (self.hidden // self.heads) % 2:
            raise ConfigError(f"{where}.heads: head dim {self.hidden // self.heads} must be even for RoPE")


@dataclass
class TrainConfig(Placement):
    tokens: int = 1_000_000  # budget: steps = ceil(tokens / tokens_per_step)
    seq_len: int = 2048
    # One optimizer step sees batch_size x accumulate sequences whatever the number of processes (so the
    # schedule and the results do not depend on it); with N processes each takes 1/N of them (`rank_batch`).
    batch_size: int = 8  # sequences per micro-batch (of one process)
    accumulate: int = 1  # micro-batches per optimizer step
    lr: float = 2e-4
    min_lr: float = 3e-5
    warmup: float = 0.05  # fraction of steps
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    # pretrain.optim: "muon" puts the hidden 2-D matrices on torch.optim.Muon (its own lr and momentum); embeddings,
    # head, norms and biases stay on AdamW at `lr`. "wsd": warmup, constant, then a 1-sqrt cooldown over the last
    # `decay` fraction of the steps, instead of warmup + cosine; both end at min_lr.
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    schedule: Literal["cosine", "wsd"] = "cosine"
    decay: float = 0.2
    grad_clip: float = 1.0
    loss: Literal["all", "solution"] = "all"  # "solution": only tokens after <solution> are targets
    split: str = "train"
    seed: int = 0
    # auto: bf16-mixed on a GPU, fp32 on a CPU. On a CPU with AMX, bf16-mixed with `compile` trains the micro model
    # 1.7x faster than fp32 eager (benchmarks/bench_train.py, results/benchmarks.md); compile alone gains ~5 %.
    precision: Literal["auto", "32-true", "bf16-mixed", "bf16-true"] = "auto"
    compile: bool = False  # torch.compile the model in place (inductor; on a CPU it needs a C++ compiler)
    num_workers: int = 0  # DataLoader worker processes; the batch order does not depend on it
    block_rows: int = 4096  # rows shuffled and packed together; bounds the data pipeline's memory
    log_every: int = 10  # steps
    checkpoint_every: int = 500  # steps between resumable checkpoints
    keep_checkpoints: bool = False  # keep the Lightning checkpoints once the HF model is saved
    # Greedy in-training evaluation (pretrain.evalcb): every `eval_every` steps (0: never) decode `eval_problems`
    # problems per op of split `eval_split` of `eval_data` (None: the training corpus) and log process-verified
    # and answer accuracy per op, and per `eval_ladder` split (name -> op range), to metrics.jsonl.
    eval_every: int = 0
    eval_problems: int = 32
    eval_split: str = "val"
    eval_data: str | None = None
    eval_max_new_tokens: int = 160
    eval_ladder: dict[str, OpRange] = field(default_factory=dict)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.accumulate * self.seq_len

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / self.tokens_per_step)

    def rank_batch(self) -> tuple[int, int]:
        """(micro-batch, accumulation) of one of `world_size` processes for the same global batch: fewer
        accumulation steps first (a device keeps the micro-batch that fits it), else a smaller micro-batch."""
        world = self.world_size
        if self.accumulate % world == 0:
            return self.batch_size, self.accumulate // world
        return self.batch_size // world, self.accumulate

    def validate(self, where: str) -> None:
        Placement.validate(self, where)
        for name in ("tokens", "seq_len", "batch_size", "accumulate", "log_every", "checkpoint_every", "block_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ConfigError(f"{where}.seq_len: must be >= 2, got {self.seq_len}")
        if not math.isfinite(self.lr):
            raise ConfigError(f"{where}.lr: must be finite, got {self.lr}")
        if not 0 < self.min_lr <= self.lr:
            raise ConfigError(f"{where}.min_lr: must lie in (0, lr={self.lr}], got {self.min_lr}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"{where}.warmup: fraction must lie in [0, 1), got {self.warmup}")
        if self.muon_lr <= 0 or not 0 <= self.muon_momentum < 1:
            raise ConfigError(f"{where}.muon_lr: must be > 0 and muon_momentum in [0, 1)")
        if not 0 < self.decay <= 1:
            raise ConfigError(f"{where}.decay: fraction must lie in (0, 1], got {self.decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{where}.betas: expected two values in [0, 1), got {self.betas}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(f"{where}: weight_decay and grad_clip must be >= 0")
        if self.eval_every < 0 or self.eval_problems < 1 or self.eval_max_new_tokens < 1:
            raise ConfigError(f"{where}: eval_every must be >= 0, eval_problems and eval_max_new_tokens >= 1")
        if self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers: must be >= 0, got {self.num_workers}")
        if self.accumulate % self.world_size and self.batch_size % self.world_size:
            raise ConfigError(f"{where}.devices: {self.world_size} processes (devices x num_nodes) divide neither "
                              f"batch_size={self.batch_size} nor accumulate={self.accumulate}")


@dataclass
class PretrainConfig(TrainConfig):
    model: ModelConfig = field(default_factory=ModelConfig)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.seq_len > self.model.max_len:
            raise ConfigError(f"{where}.seq_len: {self.seq_len} exceeds model.max_len={self.model.max_len}")
