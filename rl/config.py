"""`presets/*.yaml` section `rl:` builds into `RLConfig`: one schema for the GRPO family.

GRPO, DAPO and Dr. GRPO differ in a handful of switches (clip range, loss aggregation, advantage
normalisation, zero-variance filtering, KL), so they are fields of one config rather than separate
algorithms. The defaults are the paper's settings (6 rollouts, lr 1e-6 constant, KL 1e-3, temperature 1.0,
sequence-mean aggregation); presets scale N, steps and lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from core.config import ConfigError
from core.parallel import Placement
from rl.rewards import REWARDS


@dataclass
class RewardConfig:
    name: str = "outcome"  # outcome | process | mixed | strict (rl.rewards.REWARDS)
    alpha: float = 0.5  # mixed: alpha * outcome + (1 - alpha) * process
    # DELTA: train on `dense` until `switch_step` (or until its mean plateaus when switch_step is null and
    # `dense` is set), then on `name`. dense = null disables the schedule.
    dense: str | None = None
    switch_step: int | None = None
    plateau_window: int = 20
    plateau_tolerance: float = 0.01

    def validate(self, where: str) -> None:
        for key in ("name", "dense"):
            value = getattr(self, key)
            if value is not None and value not in REWARDS:
                raise ConfigError(f"{where}.{key}: unknown reward {value!r} (known: {', '.join(REWARDS)})")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"{where}.alpha: must lie in [0, 1], got {self.alpha}")


@dataclass
class EdgeFilterConfig:
    """Edge-of-competence data selection: keep prompts the current model fails greedily but solves at pass@k."""

    enabled: bool = False
    k: int = 8  # samples per candidate prompt
    candidates: int = 256  # prompts scored at each refresh
    refresh_every: int = 10  # steps

    def validate(self, where: str) -> None:
        for key in ("k", "candidates", "refresh_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(self, key)}")


@dataclass
class RLConfig(Placement):
    steps: int = 200
    prompts_per_step: int = 1024  # N
    rollouts: int = 6  # K
    mini_batch_prompts: int = 256  # prompts per optimizer update (the paper's PPO mini-batch)
    micro_batch: int = 64  # sequences per forward/backward pass (memory only; the update is the same)
    updates: int = 1  # mu: passes over each step's rollouts
    lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    clip_low: float = 0.2
    clip_high: float = 0.2  # > clip_low is DAPO's clip-higher
    aggregation: Literal["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"] = "seq_mean_token_mean"
    normalize_std: bool = True  # False: Dr. GRPO's unnormalised advantages
    drop_zero_variance: bool = False  # DAPO's dynamic-sampling filter (drop groups with identical rewards)
    kl_coef: float = 1e-3  # 0 skips loading the reference model
    # A fixed-compute run (finding 3): stop once the ledger has spent this many token-equivalents, priced in L mode
    # `budget_l_mode` (rl.budget), to within half a step; `steps` is then the most it may take. null: `steps` steps.
    compute_budget: float | None = None
    budget_l_mode: Literal["paper", "measured"] = "measured"
    reward: RewardConfig = field(default_factory=RewardConfig)
    edge_filter: EdgeFilterConfig = field(default_factory=EdgeFilterConfig)
    split: str = "rl"  # corpus split that forms the prompt pool
    seed: int = 0
    precision: Literal["auto", "32-true", "bf16-mixed"] = "auto"
    checkpoint_every: int = 10
    log_every: int = 1
    completions_every: int = 10  # steps between tables of sampled completions (0: never)
    keep_checkpoints: bool = False

    def validate(self, where: str) -> None:
        Placement.validate(self, where)
        for key in ("steps", "prompts_per_step", "rollouts", "mini_batch_prompts", "micro_batch", "updates",
                    "max_new_tokens", "checkpoint_every", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(self, key)}")
        if self.prompts_per_step < self.world_size:
            raise ConfigError(f"{where}.devices: {self.world_size} processes for {self.prompts_per_step} prompts "
                              "per step; each process samples at least one prompt")
        if self.prompts_per_step % self.mini_batch_prompts:
            raise ConfigError(f"{where}.mini_batch_prompts: {self.mini_batch_prompts} does not divide "
                              f"prompts_per_step={self.prompts_per_step}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"{where}.lr: must be finite and > 0, got {self.lr}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"{where}: temperature must be >= 0 and top_p in (0, 1]")
        if not 0 <= self.clip_low < 1 or self.clip_high < 0:
            raise ConfigError(f"{where}.clip_low: must lie in [0, 1) and clip_high >= 0")
        if self.kl_coef < 0:
            raise ConfigError(f"{where}.kl_coef: must be >= 0, got {self.kl_coef}")
        if self.compute_budget is not None and not 0 < self.compute_budget < math.inf:
            raise ConfigError(f"{where}.compute_budget: must be finite and > 0 (or null), got {self.compute_budget}")
        if self.completions_every < 0:
            raise ConfigError(f"{where}.completions_every: must be >= 0")
