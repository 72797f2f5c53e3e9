"""The study's findings as sweeps, wired as the paper ran them, with the paper's claims as data.

Every arm is a preset plus overrides, and every op range is derived from the preset's ladder (or a calibrated
ladder, `lab reproduce --ladder FILE`), so the same definitions run at `smoke`, `micro`, `small` and `paper`
scale. Shared upstream steps (one base model under four RL arms) are the same Step and run once. RL arms are
repeated over seeds; pre-training is shared by them. Each finding lists the paper's claims (`analysis.claims`)
that its report judges. The preset's `findings:` section (`FindingsConfig`) holds what differs by scale.

Wired as the paper, at every preset:
- Shares are shares of rows (problems), not tokens: the paper's public configs name mixtures like
  `0.99zoo_op2-20+0.01teacher_1.0op2`, fractions of samples drawn from each dataset. An op-2 problem is a
  fraction of an average problem's length, so B's share of tokens is several times smaller than its row share.
- The pre-training mixture is the paper's 20 / 30 / 50 % over the lower, middle and upper thirds of the ID
  range (op 2–4 / 5–7 / 8–10 on the paper's ladder).
- RL prompt pools hold steps × prompts-per-step distinct problems and each is drawn once (`rl.data.PromptPool`),
  as the paper draws 200 steps × 1,024 prompts.
- RL is priced by `rl.budget` in the preset's L mode: `paper` (every sample 2,048 tokens, the paper's step
  counts) or `measured` (prompt and completion lengths of a pilot of the pool, priced pass by pass as the
  ledger counts them).

Where presets deviate: `smoke`, `micro` and `small` shift the ladder down or shrink it (see each preset), so
"op 8–10" becomes the top third of that preset's ID range and "op 11–14" its edge; `micro` and `small` price RL
in `measured` mode because their samples are far shorter than 2,048 tokens (in `paper` mode a micro budget
would buy a handful of RL steps); `micro` runs only the smallest budget of finding 3 (the paper's 20B scaled by
micro's pre-training tokens / 10B is hours of mid-training and thousands of RL steps on one core).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from analysis.claims import Claim
from analysis.config import EvalConfig, Ladder, load_ladder
from core.config import ConfigError, build, load, preset_path, to_dict
from datagen.corpus import has_graphs, make_sample
from datagen.spec import CorpusSpec
from midtrain.config import MidtrainConfig
from pretrain.config import PretrainConfig
from rl.budget import plan_budget, pricing_of, rl_step_cost
from rl.config import RLConfig
from sweeps.plan import Rates, Step, Sweep, step_cap, tokenizer_for

A, B = "zoo", "teachers"
PAPER_PRETRAIN_TOKENS = 10_000_000_000
PAPER_THIRDS = (0.2, 0.3, 0.5)  # pre-training weight of the lower / middle / upper third of the ID ops
BETAS = (0.0, 0.2, 0.5, 0.8, 1.0)
REWARD_VARIANTS = {
    "outcome": {"name": "outcome"},
    "alpha0.2": {"name": "mixed", "alpha": 0.2},
    "alpha0.5": {"name": "mixed", "alpha": 0.5},
    "strict": {"name": "strict"},
}
WIDTHS = (0.5, 1.0, 2.0)
POOL_PROBE = 500  # draws to find a reasoning graph of an op in the RL split's bucket (~1 s where there is none)
# Finding 1's headroom sweep: Δpass@128 of edge RL on (edge, hard) per share of op 8–10 in pre-training.
PAPER_HEADROOM = {0.001: (29.0, 5.9), 0.05: (29.2, 10.4), 0.2: (16.6, 22.1), 0.333: (45.3, 18.0),
                  0.5: (42.0, 25.8)}
MAIN_SHARE = 0.5  # the paper's default share of op 8–10


@dataclass
class FindingsConfig:
    """Preset section `findings:`: what the findings need that no single stage reads."""

    budgets: list[int] = field(default_factory=lambda: [1_050_000_000, 20_000_000_000])  # paper scale
    budget_scale: float | None = None  # null: this preset's pre-training tokens / the paper's 10B
    l_mode: Literal["paper", "measured"] = "paper"
    headroom_shares: list[float] = field(default_factory=lambda: list(PAPER_HEADROOM))
    exposures: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.01, 0.1])
    # Pre-training seeds: every base (and everything built on it) is repeated per seed; claims pool them with the
    # RL seeds. [0]: one pre-training per base, as the paper.
    pretrain_seeds: list[int] = field(default_factory=lambda: [0])
    # A ladder measured on this preset's base (`lab calibrate`'s ladder.yaml), relative to the preset file: RL
    # ranges, pools and evals follow it (the paper's edge is relative to the base), unless `lab reproduce
    # --ladder` names another. null: the preset's own `ladder:` section.
    calibrated_ladder: str | None = None
    rates: Rates = field(default_factory=Rates)

    def validate(self, where: str) -> None:
        if not self.budgets or any(b <= 0 for b in self.budgets):
            raise ConfigError(f"{where}.budgets: need at least one budget > 0, got {self.budgets}")
        if self.budget_scale is not None and not self.budget_scale > 0:
            raise ConfigError(f"{where}.budget_scale: must be > 0, got {self.budget_scale}")
        if not self.pretrain_seeds or len(set(self.pretrain_seeds)) != len(self.pretrain_seeds) \
                or any(s < 0 for s in self.pretrain_seeds):
            raise ConfigError(f"{where}.pretrain_seeds: need distinct seeds >= 0, got {self.pretrain_seeds}")
        for name in ("headroom_shares", "exposures"):
            if any(not 0 <= s < 1 for s in getattr(self, name)):
                raise ConfigError(f"{where}.{name}: shares must lie in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class Arm:
    """One evaluated model of a finding, with the design variables a figure needs."""

    label: str
    eval: Step
    design: tuple[tuple[str, object], ...] = ()
    reference: str | None = None  # the arm this one is judged against (its own base), if any
    plan: tuple[tuple[str, object], ...] = ()  # finding 3: the compute this arm was planned to spend


@dataclass
class Finding:
    name: str
    arms: list[Arm]
    base_label: str
    figure: str  # the finding's own figure (analysis.plots): exposure | budget_split | reward_variants | split_bars
    claims: list[Claim] = field(default_factory=list)
    ladder: dict[str, tuple[int, int]] = field(default_factory=dict)
    headroom_ops: tuple[int, int] = (0, 0)  # finding 1: the ops whose pre-training share the headroom sweep varies
    ladder_source: str = "preset"  # where `ladder` came from: preset, given (--ladder) or a calibrated file

    def sweep(self) -> Sweep:
        return Sweep(self.name, [arm.eval for arm in self.arms])


class Builder:
    """Steps of one preset; op ranges come from its ladder, or from `ladder` (a calibrated one) when given."""

    def __init__(self, preset: str, ladder: dict | None = None):
        self.preset = preset
        self.cfg = load(FindingsConfig, preset, "findings")
        self.ladder_source = "given" if ladder else "preset"
        if ladder is None and self.cfg.calibrated_ladder:
            self.ladder_source = self.cfg.calibrated_ladder
            ladder = calibrated_ladder(preset, self.ladder_source)
        # Pre-training corpora follow the preset's own ladder (what its base is trained on); a calibrated ladder,
        # measured on that base, moves only what comes after it: RL ranges, prompt pools and eval splits.
        self.design = load(Ladder, preset, "ladder")
        self.ladder = build(Ladder, ladder, "ladder") if ladder else self.design
        # A calibrated ladder reaches every eval step as an override, so splits mean the same ops everywhere.
        self.ladder_overrides = ({f"ladder.{name}": {"lo": lo, "hi": hi} for name, (lo, hi) in
                                  self.ladder.splits().items()} if ladder else {})
        self.eval_cfg = load(EvalConfig, preset, "eval")
        self.rl_cfg = load(RLConfig, preset, "rl")
        self.spec = load(CorpusSpec, preset, "datagen")

    # ---- data ------------------------------------------------------------------------------------------------
    def corpus(self, label: str, **overrides) -> Step:
        return Step.make("datagen", label, self.preset, overrides)

    def pretrain_corpus(self, top_share: float = MAIN_SHARE, label: str = "pretrain") -> Step:
        return self.corpus(label, ops=pretrain_ops(self.design, top_share))

    def pool(self, label: str, lo: int, hi: int, contexts: list[dict] | None = None, steps: int | None = None) -> Step:
        """A prompt pool of distinct problems, one per prompt the RL run draws (steps × prompts per step), uniform
        over the ops of lo..hi that the RL split can hold. At the smallest ops (op 2 and 3: eight and nine
        reasoning graphs) no graph may fall in its hash bucket, and rows asked of them would be left out: the
        pool would come up short and the RL run would draw prompts twice. An op is kept when a short probe finds
        a graph of it in the bucket (the build's longer probe then finds it too), so the pool is always full."""
        rows = (steps or self.rl_cfg.steps) * self.rl_cfg.prompts_per_step
        contexts = contexts or [{"name": A, "share": 1.0}]
        ops = [op for op in range(lo, hi + 1)
               if all(has_graphs(self.spec, "rl", c["name"], op, POOL_PROBE) for c in contexts)]
        if not ops:
            raise ConfigError(f"pool-{label}: no op of {lo}-{hi} has a reasoning graph in the RL split")
        return self.corpus(f"pool-{label}", splits={"rl": rows}, ops=uniform_ranges(ops), contexts=contexts)

    def eval_corpus(self, contexts: tuple[str, ...] = (A,)) -> Step:
        lo, hi = self.ladder.ID.lo, self.ladder.hard.hi
        rows = self.eval_cfg.problems_per_op * (hi - lo + 1) * len(contexts)
        share = 1.0 / len(contexts)
        return self.corpus("eval-" + "+".join(contexts), splits={"test": rows}, ops=[{"lo": lo, "hi": hi}],
                           contexts=[{"name": c, "share": share} for c in contexts])

    # ---- training --------------------------------------------------------------------------------------------
    def pretrain(self, label: str, data: Step, **overrides) -> Step:
        return Step.make("pretrain", label, self.preset, overrides, inputs={"--data": data})

    def bases(self, label: str, data: Step, **overrides) -> list[tuple[str, Step]]:
        """(tag, base) per pre-training seed of the preset: seed 0 keeps the plain labels (tag ""), seed p tags
        the base and every arm built on it with `-p{p}`, which `analysis.claims.group_of` pools over."""
        return [(f"-p{p}" if p else "", self.pretrain(f"{label}-p{p}" if p else label, data,
                                                      **({"seed": p} if p else {}), **overrides))
                for p in self.cfg.pretrain_seeds]

    def midtrain(self, label: str, data: Step, init: Step, **overrides) -> Step:
        return Step.make("midtrain", label, self.preset, overrides, inputs={"--data": data, "--init": init})

    def rl(self, label: str, pool: Step, init: Step, seed: int, reward: dict = REWARD_VARIANTS["outcome"],
           **overrides) -> Step:
        # The paper's RL arms train on the outcome reward unless a finding varies it (finding 4), whatever reward a
        # preset gives standalone `lab rl` runs (micro's is strict: results/micro_recipe.md, round 8).
        return Step.make("rl", label, self.preset, {"seed": seed, "reward": reward, **overrides},
                         inputs={"--data": pool, "--init": init})

    def evaluate(self, label: str, model: Step, data: Step) -> Step:
        return Step.make("eval", f"eval-{label}", self.preset, dict(self.ladder_overrides),
                         inputs={"--model": model, "--data": data}, args=("--name", label))

    # ---- op ranges of the paper's RL arms, on this ladder ------------------------------------------------------
    def rl_ranges(self) -> dict[str, tuple[int, int]]:
        """The paper's 7–10 (ID top), 9–12 (mixed), 11–14 (edge), 17–20 (hard) on this ladder."""
        ID, edge, hard = self.ladder.ID, self.ladder.edge, self.ladder.hard
        return {"ID": (max(ID.lo, ID.hi - 3), ID.hi), "mixed": (max(ID.lo, ID.hi - 1), min(edge.hi, edge.lo + 1)),
                "edge": (edge.lo, edge.hi), "hard": (max(hard.lo, hard.hi - 3), hard.hi)}

    def ladder_dict(self) -> dict[str, tuple[int, int]]:
        return self.ladder.splits()


def uniform_ranges(ops: list[int]) -> list[dict]:
    """Op ranges (datagen `ops`) that weigh each of the sorted `ops` equally: one range per run of consecutive
    ops, weighted by its length (a single range needs no weight)."""
    runs = [[ops[0], ops[0]]]
    for op in ops[1:]:
        if op == runs[-1][1] + 1:
            runs[-1][1] = op
        else:
            runs.append([op, op])
    if len(runs) == 1:
        return [{"lo": runs[0][0], "hi": runs[0][1]}]
    return [{"lo": lo, "hi": hi, "weight": hi - lo + 1} for lo, hi in runs]


def thirds(lo: int, hi: int) -> list[tuple[int, int]]:
    """lo..hi cut into lower / middle / upper thirds (2–10 -> 2–4, 5–7, 8–10); a third may be empty."""
    n = hi - lo + 1
    cuts = [lo, lo + round(n / 3), lo + round(2 * n / 3), hi + 1]
    return [(cuts[i], cuts[i + 1] - 1) for i in range(3)]


def pretrain_ops(ladder: Ladder, top_share: float = MAIN_SHARE) -> list[dict]:
    """The paper's pre-training op mixture on `ladder`'s ID range, with `top_share` of rows on its upper third
    (the rest split 2 : 3 between the lower and middle thirds, as the paper's 20 : 30)."""
    rest = 1.0 - top_share
    weights = (rest * PAPER_THIRDS[0] / (1 - PAPER_THIRDS[2]), rest * PAPER_THIRDS[1] / (1 - PAPER_THIRDS[2]), top_share)
    return [{"lo": lo, "hi": hi, "weight": w} for (lo, hi), w in zip(thirds(ladder.ID.lo, ladder.ID.hi), weights)
            if hi >= lo and w > 0]


def _pct(share: float) -> str:
    return f"{100 * share:g}"


def finding1(preset: str, seeds: tuple[int, ...] = (0,), ladder: dict | None = None) -> Finding:
    """Edge of competence: RL on the paper's four op ranges from one base, and the headroom sweep (the share of
    the ID range's upper third in pre-training at 0.1 / 5 / 20 / 33.3 / 50 %, each base then RL'd on the edge).

    Presets: the four RL ranges keep their place on the ladder (paper 7–10 / 9–12 / 11–14 / 17–20 = the top four ID
    ops / the ID–edge seam / the edge / the top four hard ops) on the preset's ladder, or on a calibrated one
    (`--ladder`, measured on the main base: its edge is where that base actually sits); the pre-training mixtures
    stay on the preset's ID range. `smoke` sweeps one headroom share; `micro` none (each share is another
    hour-long base on 2 cores).
    """
    b = Builder(preset, ladder)
    evals = b.eval_corpus()
    ranges = b.rl_ranges()
    top = thirds(b.design.ID.lo, b.design.ID.hi)[2]
    pools = {name: b.pool(name, lo, hi) for name, (lo, hi) in ranges.items()}
    arms = []
    for p, base in b.bases("base", b.pretrain_corpus()):
        arms.append(Arm(f"base{p}", b.evaluate(f"base{p}", base, evals),
                        (("rl_ops", "none"), ("top_share_pct", 100 * MAIN_SHARE))))
        for name, (lo, hi) in ranges.items():
            for seed in seeds:
                label = f"rl-{name}{p}-s{seed}"
                arms.append(Arm(label, b.evaluate(label, b.rl(label, pools[name], base, seed), evals),
                                (("rl_ops", f"{lo}-{hi}"), ("arm", f"RL {name} (op {lo}-{hi})"), ("seed", seed),
                                 ("top_share_pct", 100 * MAIN_SHARE)), f"base{p}"))
    for share in b.cfg.headroom_shares:
        if share == MAIN_SHARE:
            continue  # the main base and its edge arms
        pct = _pct(share)
        for p, base in b.bases(f"base-top{pct}", b.pretrain_corpus(share, f"pretrain-top{pct}")):
            arms.append(Arm(f"base-top{pct}{p}", b.evaluate(f"base-top{pct}{p}", base, evals),
                            (("rl_ops", "none"), ("top_share_pct", round(100 * share, 6)), ("arm", "base"))))
            for seed in seeds:
                label = f"rl-edge-top{pct}{p}-s{seed}"
                arms.append(Arm(label, b.evaluate(label, b.rl(label, pools["edge"], base, seed), evals),
                                (("rl_ops", "{}-{}".format(*ranges["edge"])),
                                 ("top_share_pct", round(100 * share, 6)), ("arm", "RL edge"), ("seed", seed)),
                                f"base-top{pct}{p}"))
    top_ops = f"op {top[0]}" + (f"–{top[1]}" if top[1] > top[0] else "")
    claims = [
        Claim("1a", "RL on ID raises pass@1 in distribution", "rl-ID", "base", ("ID",), "up", "pass@1"),
        Claim("1b", "RL on ID never lifts pass@128 above the base (edge)", "rl-ID", "base", ("edge",), "not_up"),
        Claim("1c", "RL on ID never lifts pass@128 above the base (hard)", "rl-ID", "base", ("hard",), "not_up"),
        Claim("1d", "RL on the edge raises pass@128 on the edge", "rl-edge", "base", ("edge",), "up",
              paper=PAPER_HEADROOM[MAIN_SHARE][0]),
        Claim("1e", "RL on the edge raises pass@128 on hard", "rl-edge", "base", ("hard",), "up",
              paper=PAPER_HEADROOM[MAIN_SHARE][1]),
        Claim("1f", "edge RL beats ID RL at pass@128 on the edge", "rl-edge", "rl-ID", ("edge",), "up"),
        Claim("1g", "edge RL beats hard RL on hard (hard RL sees ~0 reward)", "rl-edge", "rl-hard", ("hard",), "up"),
    ]
    for share in b.cfg.headroom_shares:
        if share == MAIN_SHARE:
            continue
        pct, paper = _pct(share), PAPER_HEADROOM.get(share, (None, None))
        for split, number in zip(("edge", "hard"), paper):
            claims.append(Claim(f"1h-{pct}-{split}", f"{top_ops} at {pct}% of pre-training: edge RL raises "
                                f"pass@128 on {split}", f"rl-edge-top{pct}", f"base-top{pct}", (split,), "up",
                                paper=number))
    return Finding("finding1", arms, "base", "split_bars", claims, b.ladder_dict(), top, b.ladder_source)


def finding2(preset: str, seeds: tuple[int, ...] = (0,), ladder: dict | None = None) -> Finding:
    """Contextual transfer needs a seed: context A (zoo) on every op of the ladder (the paper's op 2–20), context
    B (teachers) only as atomic op-ID.lo problems at 0 / 0.1 / 1 / 10 % of rows; RL on 50 % A + 50 % B over
    every op the RL split holds (op 4–20 at micro: op 2 and 3 have no reasoning graph in its hash bucket, see
    `Builder.pool`); both contexts evaluated.

    Presets: "op 2–20" is the preset ladder's ID.lo … hard.hi (2–20 at micro, as the paper) and "op 2" its ID.lo.
    Claims about "op 11–20" use the edge and hard splits of that ladder."""
    b = Builder(preset, ladder)
    evals = b.eval_corpus((A, B))
    lo, hi = b.design.ID.lo, b.design.hard.hi
    pool = b.pool("A+B", b.ladder.ID.lo, b.ladder.hard.hi, [{"name": A, "share": 0.5}, {"name": B, "share": 0.5}])
    arms = []
    for share in b.cfg.exposures:
        pct = _pct(share)
        corpus = b.corpus(f"pretrain-B{pct}", ops=[{"lo": lo, "hi": hi}], contexts=[
            {"name": A, "share": 1.0 - share}, {"name": B, "share": share, "ops": [{"lo": lo, "hi": lo}]}])
        for p, base in b.bases(f"base-B{pct}", corpus):
            arms.append(Arm(f"base-B{pct}{p}", b.evaluate(f"base-B{pct}{p}", base, evals),
                            (("exposure_pct", round(100 * share, 6)), ("arm", "base"))))
            for seed in seeds:
                label = f"rl-B{pct}{p}-s{seed}"
                arms.append(Arm(label, b.evaluate(label, b.rl(label, pool, base, seed), evals),
                                (("exposure_pct", round(100 * share, 6)), ("arm", "RL on A+B"), ("seed", seed)),
                                f"base-B{pct}{p}"))
    ood = ("edge", "hard")
    claims = []
    for share in b.cfg.exposures:
        pct = _pct(share)
        if share < 0.01:
            claims.append(Claim(f"2-{pct}", f"B at {pct}%: RL does not transfer to B", f"rl-B{pct}", f"base-B{pct}",
                                ood, "not_up", context=B))
        else:
            claims.append(Claim(f"2-{pct}", f"B at {pct}%: RL transfers to B (paper: up to +60 at 1%)",
                                f"rl-B{pct}", f"base-B{pct}", ood, "up", paper=60.0 if share == 0.01 else None,
                                context=B))
    if {0.001, 0.01} <= set(b.cfg.exposures):
        claims.append(Claim("2-1vs0.1", "RL transfers to B at 1% but not at 0.1%", "rl-B1", "rl-B0.1", ood, "up",
                            context=B))
    return Finding("finding2", arms, "base-B0" if 0.0 in b.cfg.exposures else arms[0].label, "exposure", claims,
                   b.ladder_dict(), ladder_source=b.ladder_source)


def finding3(preset: str, seeds: tuple[int, ...] = (0,), ladder: dict | None = None) -> Finding:
    """Mid-training vs RL under fixed compute: budgets T (the paper's 1.05…20B scaled by this preset's
    pre-training tokens / 10B), split T_mid = (1 − β)T, T_RL = βT for β ∈ {0, 0.2, 0.5, 0.8, 1}; every arm is
    its own complete schedule (the paper cut one mid-training run at checkpoints). Mid-training is the paper's
    20 % ID + 80 % edge; RL is on the edge, priced in the preset's L mode, and runs until its ledger has spent
    its share (`rl.compute_budget`), so every arm realises its plan whatever lengths its model writes.

    Presets: `paper` runs 1.05B and 20B (the endpoints paper.md gives) in L mode `paper`, so 1.05B buys the paper's
    50 RL steps; `small` the same budgets scaled by its pre-training tokens / 10B in `measured` mode; `micro` only
    1.05B, scaled the same way, in `measured` mode; `smoke` one budget scaled by 2e-5 so every β gets an RL step."""
    b = Builder(preset, ladder)
    mid_cfg = load(MidtrainConfig, preset, "midtrain")
    budgets = scaled_budgets(preset)
    bases = b.bases("base", b.pretrain_corpus())
    evals = b.eval_corpus()
    ID, edge = b.ladder.ID, b.ladder.edge
    mid_corpus = b.corpus("mid", train_tokens=2 * max(budgets), ops=[
        {"lo": ID.lo, "hi": ID.hi, "weight": 0.2}, {"lo": edge.lo, "hi": edge.hi, "weight": 0.8}])
    step_cost = planned_rl_step_cost(preset, edge.lo, edge.hi)
    plans = {budget: plan_budget(budget, list(BETAS), mid_cfg.tokens_per_step, step_cost, b.cfg.l_mode)
             for budget in budgets}
    most_steps = max(1, *(a.rl_steps for p in plans.values() for a in p.arms))
    pool = b.pool("edge", edge.lo, edge.hi, steps=step_cap(most_steps))
    arms = [Arm(f"base{p}", b.evaluate(f"base{p}", base, evals)) for p, base in bases]
    claims = []
    mids: dict[tuple[str, int], Step] = {}  # arms whose mid-training rounds to the same steps share one run
    for budget, plan in plans.items():
        tag = f"T{budget}"
        for arm in plan.arms:
            for p, base in bases:
                model = base
                if arm.mid_steps:
                    model = mids.setdefault((p, arm.mid_tokens), b.midtrain(
                        f"mid-{tag}-b{arm.beta:g}{p}", mid_corpus, base, tokens=arm.mid_tokens))
                for seed in seeds if arm.rl_steps else (0,):
                    label = f"{tag}-beta{arm.beta:g}{p}" + (f"-s{seed}" if arm.rl_steps else "")
                    # RL runs until it has spent its share (the ledger, priced as planned), not a step count:
                    # a model writing longer or shorter completions than the plan's pilot takes fewer or more steps.
                    final = b.rl(label, pool, model, seed, steps=step_cap(arm.rl_steps), budget_l_mode=b.cfg.l_mode,
                                 compute_budget=arm.rl_steps * step_cost) if arm.rl_steps else model
                    design = (("beta", arm.beta), ("budget", budget), ("mid_tokens", arm.mid_tokens),
                              ("rl_steps", arm.rl_steps), ("seed", seed))
                    planned = (("budget", budget), ("mid_tokens", arm.mid_tokens), ("rl_steps", arm.rl_steps),
                               ("rl_step_cost", step_cost), ("l_mode", b.cfg.l_mode))
                    arms.append(Arm(label, b.evaluate(label, final, evals), design, f"base{p}", planned))
        g = {beta: f"{tag}-beta{beta:g}" for beta in BETAS}
        claims += [
            Claim(f"3-{tag}-light-vs-mid", "Light-RL (β=0.2) gives the best OOD-edge pass@1: vs mid-training only",
                  g[0.2], g[0.0], ("edge",), "up", "pass@1"),
            Claim(f"3-{tag}-light-vs-heavy", "Light-RL gives the best OOD-edge pass@1: vs Heavy-RL", g[0.2], g[0.8],
                  ("edge",), "up", "pass@1"),
            Claim(f"3-{tag}-light-vs-rl", "Light-RL gives the best OOD-edge pass@1: vs RL only", g[0.2], g[1.0],
                  ("edge",), "up", "pass@1"),
            Claim(f"3-{tag}-heavy-vs-mid", "Heavy-RL (β=0.8) gives the best OOD-hard pass@1: vs mid-training only",
                  g[0.8], g[0.0], ("hard",), "up", "pass@1"),
            Claim(f"3-{tag}-heavy-vs-light", "Heavy-RL gives the best OOD-hard pass@1: vs Light-RL", g[0.8], g[0.2],
                  ("hard",), "up", "pass@1"),
            # The paper does not say which mid+RL split gives its +10.8; Heavy-RL is the one it calls best on hard.
            Claim(f"3-{tag}-mid+rl-vs-rl", "mid-training + RL beats RL alone on OOD-hard (+10.8)", g[0.8], g[1.0],
                  ("hard",), "up", "pass@1", paper=10.8),
        ]
    return Finding("finding3", arms, "base", "budget_split", claims, b.ladder_dict(), ladder_source=b.ladder_source)


def finding4(preset: str, seeds: tuple[int, ...] = (0,), ladder: dict | None = None) -> Finding:
    """Process rewards: outcome, α = 0.2, α = 0.5 (R = α·outcome + (1 − α)·process) and strict, RL on the edge.

    Presets: the paper's "op 2–14" and "op 15–20" are the ID + edge and the hard splits of the preset's ladder."""
    b = Builder(preset, ladder)
    evals = b.eval_corpus()
    pool = b.pool("edge", b.ladder.edge.lo, b.ladder.edge.hi)
    arms = []
    for p, base in b.bases("base", b.pretrain_corpus()):
        arms.append(Arm(f"base{p}", b.evaluate(f"base{p}", base, evals), (("variant", "base"),)))
        for variant, reward in REWARD_VARIANTS.items():
            for seed in seeds:
                label = f"rl-{variant}{p}-s{seed}"
                arms.append(Arm(label, b.evaluate(label, b.rl(label, pool, base, seed, reward=reward), evals),
                                (("variant", variant), ("seed", seed)), f"base{p}"))
    paper = {"alpha0.2": (4.7, 4.3, 4.5), "alpha0.5": (4.6, 3.4, 3.0), "strict": (5.2, 4.1, 2.6)}
    claims = []
    for variant, (low, hard1, hardk) in paper.items():
        claims += [
            Claim(f"4-{variant}-p1-low", f"{variant} beats outcome-only: pass@1 on op 2–14", f"rl-{variant}",
                  "rl-outcome", ("ID", "edge"), "up", "pass@1", paper=low),
            Claim(f"4-{variant}-p1-hard", f"{variant} beats outcome-only: pass@1 on op 15–20", f"rl-{variant}",
                  "rl-outcome", ("hard",), "up", "pass@1", paper=hard1),
            Claim(f"4-{variant}-pk-hard", f"{variant} beats outcome-only: pass@128 on op 15–20", f"rl-{variant}",
                  "rl-outcome", ("hard",), "up", paper=hardk),
        ]
    return Finding("finding4", arms, "base", "reward_variants", claims, b.ladder_dict(), ladder_source=b.ladder_source)


def sizes(preset: str, seeds: tuple[int, ...] = (0,), ladder: dict | None = None) -> Finding:
    """Does the RL gain shrink for smaller models? Bases at ½×, 1×, 2× width. Each size has its own edge: RL
    draws from ops ID.hi … hard.lo with the edge-of-competence filter on, which keeps the prompts that size fails
    greedily but solves at pass@k (its measured edge). Not in the paper, so no claims of its."""
    b = Builder(preset, ladder)
    model = load(PretrainConfig, preset, "pretrain").model
    corpus, evals = b.pretrain_corpus(), b.eval_corpus()
    pool = b.pool("around-edge", b.ladder.ID.hi, b.ladder.hard.lo)
    arms = []
    for width in WIDTHS:
        hidden = max(model.heads * 2, round(model.hidden * width / (2 * model.heads)) * 2 * model.heads)
        arch = {**to_dict(model), "hidden": hidden, "ffn": round(model.ffn * width)}
        for p, base in b.bases(f"base-w{width:g}", corpus, model=arch):
            arms.append(Arm(f"base-w{width:g}{p}", b.evaluate(f"base-w{width:g}{p}", base, evals),
                            (("width", width), ("arm", "base"))))
            for seed in seeds:
                label = f"rl-w{width:g}{p}-s{seed}"
                step = b.rl(label, pool, base, seed, edge_filter={**to_dict(b.rl_cfg.edge_filter), "enabled": True})
                arms.append(Arm(label, b.evaluate(label, step, evals),
                                (("width", width), ("arm", "RL at own edge"), ("seed", seed)),
                                f"base-w{width:g}{p}"))
    return Finding("sizes", arms, "base-w1", "split_bars", [], b.ladder_dict(), ladder_source=b.ladder_source)


FINDINGS = {"finding1": finding1, "finding2": finding2, "finding3": finding3, "finding4": finding4, "sizes": sizes}


def calibrated_ladder(preset: str, name: str) -> dict:
    """The ladder file `name` (a preset's `findings.calibrated_ladder`, relative to the preset file), as
    {split: {lo, hi}}."""
    path = preset_path(preset).parent / name
    ladder = load_ladder("", ladder_file=path)  # a missing or malformed file is a ConfigError naming it
    return {split: {"lo": lo, "hi": hi} for split, (lo, hi) in ladder.splits().items()}


def scaled_budgets(preset: str) -> list[int]:
    """Finding 3's budgets at this preset's scale (the paper's, times pre-training tokens / 10B by default)."""
    cfg = load(FindingsConfig, preset, "findings")
    scale = cfg.budget_scale or load(PretrainConfig, preset, "pretrain").tokens / PAPER_PRETRAIN_TOKENS
    return [round(budget * scale) for budget in cfg.budgets]


def planned_rl_step_cost(preset: str, lo: int, hi: int) -> float:
    """Token-equivalents of one RL step of this preset on ops lo..hi, in its L mode."""
    rl_cfg, cfg = load(RLConfig, preset, "rl"), load(FindingsConfig, preset, "findings")
    pricing = pricing_of(rl_cfg.kl_coef, rl_cfg.updates)
    lengths = sample_lengths(preset, lo, hi) if cfg.l_mode == "measured" else (None, None)
    return rl_step_cost(cfg.l_mode, rl_cfg.prompts_per_step, rl_cfg.rollouts, pricing, *lengths)


@functools.cache
def sample_lengths(preset: str, lo: int, hi: int, n: int = 64) -> tuple[float, float]:
    """Mean prompt tokens (through `<solution>`) and gold completion tokens of RL samples for ops lo..hi, from a
    pilot of `n` problems."""
    spec = load(CorpusSpec, preset, "datagen", {"ops": [{"lo": lo, "hi": hi}], "contexts": [{"name": A, "share": 1.0}]})
    tokenizer = tokenizer_for(spec.rendering)
    rng = random.Random(f"{spec.seed}/pilot")
    # The train split: every op has reasoning graphs there (at op 2 the rl split may have none).
    rows = [make_sample(spec, "train", -1 - i, A, rng.randint(lo, hi)) for i in range(n)]
    texts = [row["text"] for row in rows if row is not None]  # None: no graph of that op fits the split
    prompts = [text[: text.index("<solution>") + len("<solution>")] for text in texts]
    full = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    head = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    return float(np.mean(head)), float(np.mean(full) - np.mean(head))
