"""Compute accounting for RL, and the planner that splits one budget between mid-training and RL.

One pricing of RL tokens (`RLPricing`) is shared by the planner and the ledger, so a plan and the compute a run
realises are measured with the same ruler. Per token, a forward pass costs 2P and a forward+backward 6P, against
6P for a pre-training token. An RL sample costs a rollout (prompt prefilled once per prompt, then each
completion decoded), a reference pass when the KL coefficient is > 0, a pass that recomputes the behaviour
log-probs (this implementation always runs it: with several mini-batches per step the policy moves between
them), and one policy update per μ. Two modes of the sample length L:

- `paper`: the paper's T_RL = (5/3)·N·r·L with L = 2,048 for every sample (rollout 2P + reference 2P +
  policy 6P, no prefill sharing, no old-logprob pass). A plan in this mode has the paper's step counts.
- `measured`: this implementation's passes over the tokens actually processed; the planner predicts them from
  a pilot's mean prompt and gold-solution lengths, the ledger counts them as they happen.

The planner gives every arm its own complete schedule for its share of the budget, instead of cutting a longer
mid-training run at an intermediate checkpoint as the original study did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

PAPER_SEQ_LEN = 2048
LMode = Literal["paper", "measured"]
L_MODES: tuple[str, ...] = ("paper", "measured")
PASS_COST = {"rollout": 2, "reference": 2, "old_logprobs": 2, "policy": 6}  # FLOPs per token, in units of P


@dataclass(frozen=True)
class RLPricing:
    """Which passes an RL sample goes through; `token_equivalents` is their cost in pre-training tokens."""

    reference: bool = True
    old_logprobs: bool = True
    updates: float = 1.0  # policy passes per sample (μ × share of groups kept)
    shared_prefill: bool = True  # the sampler prefills each prompt once for its r rollouts

    def pass_tokens(self, prompts: int, rollouts: int, prompt_tokens: float, generated_tokens: float) -> dict:
        """Tokens through each pass for `prompts` prompts of `prompt_tokens` in all, `generated_tokens` in all."""
        seen = rollouts * prompt_tokens + generated_tokens  # every sample's prompt + its completion
        rollout = (prompt_tokens if self.shared_prefill else rollouts * prompt_tokens) + generated_tokens
        return {"rollout": rollout, "reference": seen if self.reference else 0.0,
                "old_logprobs": seen if self.old_logprobs else 0.0, "policy": seen * self.updates}

    def token_equivalents(self, prompts: int, rollouts: int, prompt_tokens: float, generated_tokens: float) -> float:
        passes = self.pass_tokens(prompts, rollouts, prompt_tokens, generated_tokens)
        return sum(PASS_COST[name] * tokens for name, tokens in passes.items()) / 6


PAPER_PRICING = RLPricing(reference=True, old_logprobs=False, updates=1.0, shared_prefill=False)


def pricing_of(kl_coef: float, updates: int = 1) -> RLPricing:
    """The passes `rl.module.GRPO` runs for a config with this KL coefficient and μ."""
    return RLPricing(reference=kl_coef > 0, old_logprobs=True, updates=float(updates))


def rl_step_cost(mode: LMode, prompts: int, rollouts: int, pricing: RLPricing, prompt_len: float | None = None,
                 completion_len: float | None = None) -> float:
    """Planned token-equivalents of one RL step of `prompts` × `rollouts` samples.

    paper: (5/3)·N·r·2,048. measured: `pricing` over mean prompt / completion lengths (from a pilot)."""
    if mode == "paper":
        return PAPER_PRICING.token_equivalents(prompts, rollouts, 0.0, prompts * rollouts * PAPER_SEQ_LEN)
    if mode != "measured":
        raise ValueError(f"L mode: {mode!r} is not one of {list(L_MODES)}")
    if prompt_len is None or completion_len is None or prompt_len <= 0 or completion_len <= 0:
        raise ValueError("L mode 'measured' needs positive prompt_len and completion_len")
    return pricing.token_equivalents(prompts, rollouts, prompts * prompt_len, prompts * rollouts * completion_len)


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
                    updates: float, with_reference: bool, with_old_logprobs: bool) -> None:
        """One RL step: `prompts` prompts of `prompt_tokens` total tokens, each sampled `rollouts` times,
        priced by the same `RLPricing` the planner uses."""
        generated = sum(generated_tokens)
        pricing = RLPricing(reference=with_reference, old_logprobs=with_old_logprobs, updates=updates)
        passes = pricing.pass_tokens(prompts, rollouts, prompt_tokens, generated)
        self.steps += 1
        self.prompts += prompts
        self.samples += prompts * rollouts
        self.prompt_tokens += prompt_tokens
        self.generated_tokens += generated
        self.rollout_flops += self.params * (PASS_COST["rollout"] * passes["rollout"]
                                             + PASS_COST["old_logprobs"] * passes["old_logprobs"])
        self.reference_flops += self.params * PASS_COST["reference"] * passes["reference"]
        self.policy_flops += self.params * PASS_COST["policy"] * passes["policy"]

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
        return PAPER_PRICING.token_equivalents(self.prompts, 0, 0.0, self.samples * self.paper_seq_len)

    def realised(self, mode: LMode) -> float:
        """Token-equivalents in L mode `mode`: what a plan in that mode predicted for this run."""
        return self.paper_token_equivalents if mode == "paper" else self.token_equivalents

    @property
    def nkl(self) -> int:
        """C = N·K·L with the actual tokens: every sample's prompt plus its completion."""
        mean_prompt = self.prompt_tokens / max(self.prompts, 1)
        return round(self.samples * mean_prompt + self.generated_tokens)

    def summary(self) -> dict:
        return {**asdict(self), "flops": self.flops, "token_equivalents": self.token_equivalents,
                "paper_token_equivalents": self.paper_token_equivalents, "nkl_tokens": self.nkl}


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
    rl_step_cost: float  # token-equivalents of one RL step (`rl_step_cost`)
    mode: str = "paper"
    arms: list[Arm] = field(default_factory=list)

    def table(self) -> str:
        step = self.rl_step_cost
        lines = [f"total budget {self.total_tokens:,} token-equivalents; one RL step = {step:,.0f} (L mode "
                 f"{self.mode}; = {step / self.mid_batch_tokens:.1f} mid-training steps of {self.mid_batch_tokens:,} "
                 "tokens)",
                 f"{'beta':>5} {'mid tokens':>14} {'mid steps':>10} {'RL tok-eq':>14} {'RL steps':>9}"]
        for a in self.arms:
            lines.append(f"{a.beta:>5.2f} {a.mid_tokens:>14,} {a.mid_steps:>10,} "
                         f"{a.rl_token_equivalents:>14,.0f} {a.rl_steps:>9,}")
        return "\n".join(lines)


def plan_budget(total_tokens: float, betas: list[float], mid_batch_tokens: int, rl_step_cost: float,
                mode: str = "paper") -> BudgetPlan:
    """Split `total_tokens` into T_mid = (1-β)T of mid-training and T_RL = βT of RL, for each β.

    Step counts round to the nearest whole step, so the realised compute of an arm lies within half a step
    of its share (the compute check in the report holds arms to ±5 %)."""
    if not math.isfinite(total_tokens) or total_tokens <= 0:
        raise ValueError(f"total_tokens: must be a finite number > 0, got {total_tokens}")
    total_tokens = round(total_tokens)
    for beta in betas:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"betas: {beta} lies outside [0, 1]")
    for name, value in (("mid_batch_tokens", mid_batch_tokens), ("rl_step_cost", rl_step_cost)):
        if not value > 0:
            raise ValueError(f"{name}: must be > 0, got {value}")
    plan = BudgetPlan(total_tokens, mid_batch_tokens, rl_step_cost, mode)
    for beta in betas:
        mid_steps = round((1 - beta) * total_tokens / mid_batch_tokens)
        rl_budget = beta * total_tokens
        plan.arms.append(Arm(beta, mid_steps * mid_batch_tokens, mid_steps, rl_budget, round(rl_budget / rl_step_cost)))
    return plan
