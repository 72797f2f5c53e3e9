"""Compute accounting for RL, and the planner that splits one budget between mid-training and RL.

The paper prices RL in token-equivalents as T_RL ≈ (5/3)·N·r·L, assuming every sample is L = 2,048 tokens:
per token, a GRPO sample costs a rollout pass (2P), a reference pass (2P) and a policy update (6P), against
6P for a pre-training token. Real rollouts are far shorter than L and the reference pass disappears when the
KL coefficient is 0, so the ledger counts the tokens actually processed and reports the paper's formula
beside it. The planner gives every arm its own complete schedule for its share of the budget, instead of
cutting a longer mid-training run at an intermediate checkpoint as the original study did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

PAPER_SEQ_LEN = 2048


@dataclass
class ComputeLedger:
    """Running totals for one RL run. FLOPs use the 2P (forward) / 6P (forward+backward) per-token rule."""

    params: int
    samples: int = 0
    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    rollout_flops: float = 0.0
    reference_flops: float = 0.0
    policy_flops: float = 0.0
    steps: int = 0
    paper_seq_len: int = PAPER_SEQ_LEN

    def record_step(self, prompts: int, rollouts: int, prompt_tokens: int, generated_tokens: list[int],
                    updates: int, with_reference: bool, with_old_logprobs: bool) -> None:
        """One RL step: `prompts` prompts of `prompt_tokens` total tokens, each sampled `rollouts` times.

        The prompt is prefilled once per prompt (the sampler shares its KV cache), but every training
        pass sees prompt + completion for each of the K samples.
        """
        generated = sum(generated_tokens)
        per_sample_tokens = rollouts * prompt_tokens + generated
        self.steps += 1
        self.prompts += prompts
        self.samples += prompts * rollouts
        self.prompt_tokens += prompt_tokens
        self.generated_tokens += generated
        self.rollout_flops += 2 * self.params * (prompt_tokens + generated)
        if with_reference:
            self.reference_flops += 2 * self.params * per_sample_tokens
        if with_old_logprobs:
            self.rollout_flops += 2 * self.params * per_sample_tokens
        self.policy_flops += 6 * self.params * per_sample_tokens * updates

    def record_scoring(self, prompt_tokens: int, generated_tokens: list[int]) -> None:
        """Generation spent on choosing data (the edge-of-competence filter): rollout cost, no samples trained on."""
        self.generated_tokens += sum(generated_tokens)
        self.rollout_flops += 2 * self.params * (prompt_tokens + sum(generated_tokens))

    @classmethod
    def from_summary(cls, summary: dict) -> "ComputeLedger":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in summary.items() if k in names})

    @property
    def flops(self) -> float:
        return self.rollout_flops + self.reference_flops + self.policy_flops

    @property
    def token_equivalents(self) -> float:
        """Measured cost in pre-training tokens (FLOPs / 6P)."""
        return self.flops / (6 * self.params)

    @property
    def paper_token_equivalents(self) -> float:
        """The paper's T_RL = (5/3)·N·r·L with L fixed at 2,048."""
        return 5 / 3 * self.samples * self.paper_seq_len

    @property
    def nkl(self) -> int:
        """C = N·K·L with the actual tokens: every sample's prompt plus its completion."""
        mean_prompt = self.prompt_tokens / max(self.prompts, 1)
        return round(self.samples * mean_prompt + self.generated_tokens)

    def summary(self) -> dict:
        return {**asdict(self), "flops": self.flops, "token_equivalents": self.token_equivalents,
                "paper_token_equivalents": self.paper_token_equivalents, "nkl_tokens": self.nkl}


def rl_step_token_equivalents(prompts: int, rollouts: int, seq_len: float, kl: bool = True) -> float:
    """Token-equivalents of one RL step whose samples average `seq_len` tokens (prompt + completion)."""
    per_token = (2 + (2 if kl else 0) + 6) / 6
    return per_token * prompts * rollouts * seq_len


@dataclass
class Arm:
    beta: float
    mid_tokens: int
    mid_steps: int
    rl_token_equivalents: float
    rl_steps: int


@dataclass
class BudgetPlan:
    total_tokens: int
    mid_batch_tokens: int
    prompts_per_step: int
    rollouts: int
    seq_len: float
    kl: bool
    arms: list[Arm] = field(default_factory=list)

    def table(self) -> str:
        step = rl_step_token_equivalents(self.prompts_per_step, self.rollouts, self.seq_len, self.kl)
        lines = [f"total budget {self.total_tokens:,} token-equivalents; one RL step = {step:,.0f} "
                 f"(= {step / self.mid_batch_tokens:.1f} mid-training steps of {self.mid_batch_tokens:,} tokens)",
                 f"{'beta':>5} {'mid tokens':>14} {'mid steps':>10} {'RL tok-eq':>14} {'RL steps':>9}"]
        for a in self.arms:
            lines.append(f"{a.beta:>5.2f} {a.mid_tokens:>14,} {a.mid_steps:>10,} "
                         f"{a.rl_token_equivalents:>14,.0f} {a.rl_steps:>9,}")
        return "\n".join(lines)


def plan_budget(total_tokens: int, betas: list[float], mid_batch_tokens: int, prompts_per_step: int,
                rollouts: int, seq_len: float, kl: bool = True) -> BudgetPlan:
    """Split `total_tokens` into T_mid = (1-β)T of mid-training and T_RL = βT of RL, for each β."""
    if total_tokens <= 0:
        raise ValueError(f"total_tokens: must be > 0, got {total_tokens}")
    for beta in betas:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"betas: {beta} lies outside [0, 1]")
    for name, value in (("mid_batch_tokens", mid_batch_tokens), ("prompts_per_step", prompts_per_step),
                        ("rollouts", rollouts), ("seq_len", seq_len)):
        if value <= 0:
            raise ValueError(f"{name}: must be > 0, got {value}")
    step_cost = rl_step_token_equivalents(prompts_per_step, rollouts, seq_len, kl)
    plan = BudgetPlan(total_tokens, mid_batch_tokens, prompts_per_step, rollouts, seq_len, kl)
    for beta in betas:
        mid_tokens = round((1 - beta) * total_tokens)
        rl_budget = beta * total_tokens
        plan.arms.append(Arm(beta, mid_tokens, math.floor(mid_tokens / mid_batch_tokens),
                             rl_budget, math.floor(rl_budget / step_cost)))
    return plan
