"""The study's findings as sweep definitions built from one preset (no copied configs).

Every arm is a preset plus overrides, and every op range is derived from the preset's ladder, so the same
definitions run at `smoke`, `micro`, `small` and `paper` scale. Shared upstream steps (one base model under
four RL arms) are the same Step and run once. RL arms are repeated over seeds; pre-training is shared.

- finding1  RL data at the edge of competence: RL on ID-top / mixed / edge / hard op ranges from one base.
- finding2  contextual transfer needs a seed: context B at 0 / 0.1 / 1 / 10 % of pre-training (op = ID.lo
            only), then RL on a 50/50 A+B mix.
- finding3  mid-training vs RL under one budget: β ∈ {0, 0.2, 0.5, 0.8, 1}, every arm its own full schedule.
- finding4  process rewards: outcome, α = 0.2, α = 0.5, strict, all RL on the edge range.
- sizes     does the RL gain shrink for smaller models? base models at ½×, 1×, 2× width, RL on the edge range.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from analysis.config import EvalConfig, Ladder
from core.config import load
from datagen.corpus import make_sample
from datagen.spec import CorpusSpec
from datagen.tokenizer import build_tokenizer
from midtrain.config import MidtrainConfig
from pretrain.config import PretrainConfig
from rl.budget import plan_budget
from rl.config import RLConfig
from sweeps.plan import Step, Sweep

A, B = "zoo", "teachers"
BETAS = (0.0, 0.2, 0.5, 0.8, 1.0)
REWARD_VARIANTS = {
    "outcome": {"name": "outcome"},
    "alpha0.2": {"name": "mixed", "alpha": 0.2},
    "alpha0.5": {"name": "mixed", "alpha": 0.5},
    "strict": {"name": "strict"},
}
EXPOSURES = (0.0, 0.001, 0.01, 0.1)
WIDTHS = (0.5, 1.0, 2.0)
POOL_ROWS = 2000


@dataclass(frozen=True)
class Arm:
    """One evaluated model of a finding, with the design variables a figure needs."""

    label: str
    eval: Step
    design: tuple[tuple[str, object], ...] = ()
    reference: str | None = None  # the arm this one is judged against (its own base), if any


@dataclass
class Finding:
    name: str
    arms: list[Arm]
    base_label: str
    figure: str  # the finding's own figure (analysis.plots): exposure | budget_split | reward_variants | split_bars

    def sweep(self) -> Sweep:
        return Sweep(self.name, [arm.eval for arm in self.arms])


class Builder:
    """Steps of one preset; op ranges come from its ladder."""

    def __init__(self, preset: str):
        self.preset = preset
        self.ladder = load(Ladder, preset, "ladder")
        self.eval_cfg = load(EvalConfig, preset, "eval")
        self.rl_cfg = load(RLConfig, preset, "rl")

    # ---- data ------------------------------------------------------------------------------------------------
    def corpus(self, label: str, **overrides) -> Step:
        return Step.make("datagen", label, self.preset, overrides)

    def pool(self, label: str, lo: int, hi: int, contexts: list[dict] | None = None) -> Step:
        return self.corpus(f"pool-{label}", splits={"rl": POOL_ROWS}, ops=[{"lo": lo, "hi": hi}],
                           contexts=contexts or [{"name": A, "share": 1.0}])

    def eval_corpus(self, contexts: tuple[str, ...] = (A,)) -> Step:
        lo, hi = self.ladder.ID.lo, self.ladder.hard.hi
        rows = self.eval_cfg.problems_per_op * (hi - lo + 1) * len(contexts)
        share = 1.0 / len(contexts)
        return self.corpus("eval-" + "+".join(contexts), splits={"test": rows}, ops=[{"lo": lo, "hi": hi}],
                           contexts=[{"name": c, "share": share} for c in contexts])

    # ---- training --------------------------------------------------------------------------------------------
    def pretrain(self, label: str, data: Step, **overrides) -> Step:
        return Step.make("pretrain", label, self.preset, overrides, inputs={"--data": data})

    def midtrain(self, label: str, data: Step, init: Step, **overrides) -> Step:
        return Step.make("midtrain", label, self.preset, overrides, inputs={"--data": data, "--init": init})

    def rl(self, label: str, pool: Step, init: Step, seed: int, **overrides) -> Step:
        return Step.make("rl", label, self.preset, {"seed": seed, **overrides}, inputs={"--data": pool, "--init": init})

    def evaluate(self, label: str, model: Step, data: Step) -> Step:
        return Step.make("eval", f"eval-{label}", self.preset, {}, inputs={"--model": model, "--data": data},
                         args=("--name", label))

    # ---- op ranges of the paper's RL arms, on this preset's ladder ----------------------------------------------
    def rl_ranges(self) -> dict[str, tuple[int, int]]:
        ID, edge, hard = self.ladder.ID, self.ladder.edge, self.ladder.hard
        return {"ID": (max(ID.lo, ID.hi - 3), ID.hi), "mixed": (max(ID.lo, ID.hi - 1), min(edge.hi, edge.lo + 1)),
                "edge": (edge.lo, edge.hi), "hard": (max(hard.lo, hard.hi - 3), hard.hi)}


def finding1(preset: str, seeds: tuple[int, ...] = (0,)) -> Finding:
    b = Builder(preset)
    base = b.pretrain("base", b.corpus("pretrain"))
    evals = b.eval_corpus()
    arms = [Arm("base", b.evaluate("base", base, evals), (("rl_ops", "none"),))]
    for name, (lo, hi) in b.rl_ranges().items():
        pool = b.pool(name, lo, hi)
        for seed in seeds:
            label = f"rl-{name}-s{seed}"
            arms.append(Arm(label, b.evaluate(label, b.rl(label, pool, base, seed), evals),
                            (("rl_ops", f"{lo}-{hi}"), ("arm", f"RL {name} (op {lo}-{hi})"), ("seed", seed)), "base"))
    return Finding("finding1", arms, "base", "split_bars")


def finding2(preset: str, seeds: tuple[int, ...] = (0,)) -> Finding:
    b = Builder(preset)
    evals = b.eval_corpus((A, B))
    lo, hi = b.ladder.ID.lo, b.ladder.hard.hi
    pool = b.pool("A+B", lo, hi, [{"name": A, "share": 0.5}, {"name": B, "share": 0.5}])
    arms = []
    for share in EXPOSURES:
        pct = f"{100 * share:g}"
        corpus = b.corpus(f"pretrain-B{pct}", contexts=[
            {"name": A, "share": 1.0 - share}, {"name": B, "share": share, "ops": [{"lo": lo, "hi": lo}]}])
        base = b.pretrain(f"base-B{pct}", corpus)
        arms.append(Arm(f"base-B{pct}", b.evaluate(f"base-B{pct}", base, evals),
                        (("exposure_pct", 100 * share), ("arm", "base"))))
        for seed in seeds:
            label = f"rl-B{pct}-s{seed}"
            arms.append(Arm(label, b.evaluate(label, b.rl(label, pool, base, seed), evals),
                            (("exposure_pct", 100 * share), ("arm", "RL on A+B"), ("seed", seed)), f"base-B{pct}"))
    return Finding("finding2", arms, "base-B0", "exposure")


def finding3(preset: str, seeds: tuple[int, ...] = (0,), budgets: tuple[int, ...] | None = None) -> Finding:
    b = Builder(preset)
    mid_cfg = load(MidtrainConfig, preset, "midtrain")
    budgets = budgets or (mid_cfg.tokens,)
    base = b.pretrain("base", b.corpus("pretrain"))
    evals = b.eval_corpus()
    ID, edge = b.ladder.ID, b.ladder.edge
    mid_corpus = b.corpus("mid", train_tokens=2 * max(budgets), ops=[
        {"lo": ID.lo, "hi": ID.hi, "weight": 0.2}, {"lo": edge.lo, "hi": edge.hi, "weight": 0.8}])
    pool = b.pool("edge", edge.lo, edge.hi)
    seq_len = sample_tokens(preset, edge.lo, edge.hi)
    arms = [Arm("base", b.evaluate("base", base, evals))]
    for budget in budgets:
        plan = plan_budget(budget, list(BETAS), mid_cfg.tokens_per_step, b.rl_cfg.prompts_per_step,
                           b.rl_cfg.rollouts, seq_len, kl=b.rl_cfg.kl_coef > 0)
        for arm in plan.arms:
            model = base
            if arm.mid_tokens >= mid_cfg.tokens_per_step:
                model = b.midtrain(f"mid-T{budget}-b{arm.beta:g}", mid_corpus, base, tokens=arm.mid_tokens)
            for seed in seeds if arm.rl_steps else (0,):
                label = f"T{budget}-beta{arm.beta:g}" + (f"-s{seed}" if arm.rl_steps else "")
                final = b.rl(label, pool, model, seed, steps=arm.rl_steps) if arm.rl_steps else model
                design = (("beta", arm.beta), ("budget", budget), ("mid_tokens", arm.mid_tokens),
                          ("rl_steps", arm.rl_steps), ("seed", seed))
                arms.append(Arm(label, b.evaluate(label, final, evals), design, "base"))
    return Finding("finding3", arms, "base", "budget_split")


def finding4(preset: str, seeds: tuple[int, ...] = (0,)) -> Finding:
    b = Builder(preset)
    base = b.pretrain("base", b.corpus("pretrain"))
    evals = b.eval_corpus()
    pool = b.pool("edge", b.ladder.edge.lo, b.ladder.edge.hi)
    arms = [Arm("base", b.evaluate("base", base, evals), (("variant", "base"),))]
    for variant, reward in REWARD_VARIANTS.items():
        for seed in seeds:
            label = f"rl-{variant}-s{seed}"
            arms.append(Arm(label, b.evaluate(label, b.rl(label, pool, base, seed, reward=reward), evals),
                            (("variant", variant), ("seed", seed)), "base"))
    return Finding("finding4", arms, "base", "reward_variants")


def sizes(preset: str, seeds: tuple[int, ...] = (0,)) -> Finding:
    b = Builder(preset)
    model = load(PretrainConfig, preset, "pretrain").model
    corpus, evals = b.corpus("pretrain"), b.eval_corpus()
    pool = b.pool("edge", b.ladder.edge.lo, b.ladder.edge.hi)
    arms = []
    for width in WIDTHS:
        hidden = max(model.heads * 2, round(model.hidden * width / (2 * model.heads)) * 2 * model.heads)
        arch = {"layers": model.layers, "hidden": hidden, "ffn": round(model.ffn * width), "heads": model.heads,
                "kv_heads": model.kv_heads, "max_len": model.max_len}
        base = b.pretrain(f"base-w{width:g}", corpus, model=arch)
        arms.append(Arm(f"base-w{width:g}", b.evaluate(f"base-w{width:g}", base, evals),
                        (("width", width), ("arm", "base"))))
        for seed in seeds:
            label = f"rl-w{width:g}-s{seed}"
            arms.append(Arm(label, b.evaluate(label, b.rl(label, pool, base, seed), evals),
                            (("width", width), ("arm", "RL edge"), ("seed", seed)), f"base-w{width:g}"))
    return Finding("sizes", arms, "base-w1", "split_bars")


FINDINGS = {"finding1": finding1, "finding2": finding2, "finding3": finding3, "finding4": finding4, "sizes": sizes}


def sample_tokens(preset: str, lo: int, hi: int, n: int = 64) -> float:
    """Mean tokens of an RL sample (prompt + gold solution) for ops lo..hi, from a pilot of `n` problems."""
    spec = load(CorpusSpec, preset, "datagen", {"ops": [{"lo": lo, "hi": hi}], "contexts": [{"name": A, "share": 1.0}]})
    tokenizer = build_tokenizer(styles=(spec.rendering,))
    rng = random.Random(f"{spec.seed}/pilot")
    # The train split: every op has reasoning graphs there (at op 2 the rl split may have none).
    texts = [make_sample(spec, "train", -1 - i, A, rng.randint(lo, hi))["text"] for i in range(n)]
    return float(np.mean([len(ids) for ids in tokenizer(texts)["input_ids"]]))
