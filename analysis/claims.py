"""The paper's claims as data, and verdicts on them from paired comparisons between arms.

The paper's findings are comparisons between arms (edge-RL vs ID-RL, α-variants vs outcome-only, Light- vs
Heavy-RL), not of each arm with its base, so a claim names the two arm groups it compares, the metric, the op
range (as ladder splits, so it moves with a preset's ladder), the direction the paper reports and its number.

A verdict is computed on the problems both groups evaluated. An arm group is every seed of one arm (RL seeds,
and pre-training seeds where the preset has several); per problem, pass@k is averaged over the group's seeds (problems some seed lacks are dropped), and the difference of the
two groups' means is bootstrapped over problems (seed-to-seed spread is shown beside it as the range of the
per-seed differences, since two or three seeds are too few to resample). Within a finding, Holm's procedure
corrects the one-sided bootstrap p-values: "supports" when the claimed direction holds at family-wise α,
"contradicts" when the opposite one does, "inconclusive" otherwise. A "not_up" claim ("RL on ID never raises
pass@128") cannot be shown by a significance test; it is supported when the 95 % interval lies below `margin`
and contradicted by a Holm-significant rise.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from analysis.evaldir import Evaluation
from analysis.stats import bootstrap_p, holm, paired_bootstrap
from analysis.tables import per_problem_pass_at_k, split_of

METRIC = "pass@k_verified"
VERDICTS = ("supports", "contradicts", "inconclusive", "not run")
_PROBLEM = ["context", "op", "problem_id"]


@dataclass(frozen=True)
class Claim:
    id: str
    text: str  # the paper's sentence, shortened
    arm: str  # arm group (label without its seed suffix)
    reference: str  # the group it is compared with: arm − reference
    splits: tuple[str, ...]  # ladder splits pooled for the op range
    direction: Literal["up", "down", "not_up"]
    metric: Literal["pass@1", "pass@max"] = "pass@max"  # pass@max: the largest k every eval reports
    paper: float | None = None  # the paper's difference in percentage points, where it gives one
    context: str = "zoo"
    margin: float = 0.02  # not_up: the largest rise (fraction) still called "no rise"


def group_of(label: str) -> str:
    """Arm group of an eval label, without its RL and pre-training seeds: `rl-edge-p1-s0` -> `rl-edge`,
    `base-p1` -> `base`."""
    return re.sub(r"(-p\d+)?(-s\d+)?$", "", label) or label


def per_problem(evals: Sequence[Evaluation], k: int) -> pd.DataFrame:
    """Verified pass@k per problem (rows) and seed (columns) of one arm group, on problems every seed has."""
    columns = {}
    for e in evals:
        table = per_problem_pass_at_k(e.sampled(), [k])
        table = table[table["metric"] == METRIC].set_index(_PROBLEM)["value"]
        columns[e.checkpoint] = table
    return pd.DataFrame(columns).dropna()


def judge(claims: Sequence[Claim], groups: dict[str, list[Evaluation]], *, n_boot: int = 2000, alpha: float = 0.05,
          level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per claim: our difference with its CI, the paper's, Holm-adjusted p-values and the verdict."""
    evals = [e for group in groups.values() for e in group]
    top_k = min(int(e.results.loc[e.results["metric"] == METRIC, "k"].max()) for e in evals) if evals else 1
    rows = []
    for claim in claims:
        row = {"claim": claim.id, "text": claim.text, "arm": claim.arm, "reference": claim.reference,
               "context": claim.context, "splits": "+".join(claim.splits), "direction": claim.direction,
               "metric": f"pass@{1 if claim.metric == 'pass@1' else top_k}", "paper": claim.paper}
        rows.append(row)
        if claim.arm not in groups or claim.reference not in groups:
            row["verdict"] = "not run"
            continue
        k = 1 if claim.metric == "pass@1" else top_k
        arm, ref = per_problem(groups[claim.arm], k), per_problem(groups[claim.reference], k)
        ladder = groups[claim.arm][0].ladder
        shared = arm.index.intersection(ref.index)
        ops = shared.get_level_values("op")
        keep = (shared.get_level_values("context") == claim.context) & split_of(ops, ladder).isin(claim.splits).to_numpy()
        shared = shared[keep]
        row.update(ops=_op_span(claim.splits, ladder), n_problems=len(shared), seeds=f"{arm.shape[1]}/{ref.shape[1]}")
        if len(shared) == 0:
            row["verdict"] = "not run"
            continue
        a, r = arm.loc[shared], ref.loc[shared]
        rng = np.random.default_rng([seed, zlib.crc32(claim.id.encode())])
        delta, boot = paired_bootstrap(a.mean(axis=1).to_numpy(), r.mean(axis=1).to_numpy(), n_boot=n_boot, seed=rng)
        tail = (1 - level) / 2
        per_seed = [a[c].mean() - r.mean(axis=1).mean() for c in a.columns]
        row.update(delta=delta, ci_lo=float(np.quantile(boot, tail)), ci_hi=float(np.quantile(boot, 1 - tail)),
                   seed_lo=min(per_seed), seed_hi=max(per_seed),
                   p_claim=bootstrap_p(boot, claim.direction) if claim.direction != "not_up" else np.nan,
                   p_against=bootstrap_p(boot, "down" if claim.direction == "down" else "up")
                   if claim.direction == "not_up" else bootstrap_p(boot, "down" if claim.direction == "up" else "up"))
    table = pd.DataFrame(rows)
    for column in ("delta", "ci_lo", "ci_hi", "seed_lo", "seed_hi", "p_claim", "p_against", "n_problems"):
        if column not in table:
            table[column] = np.nan
    table["p_claim_holm"], table["p_against_holm"] = _holm_column(table["p_claim"]), _holm_column(table["p_against"])
    margins = {c.id: c.margin for c in claims}
    for i, row in table.iterrows():
        if row.get("verdict") == "not run":
            continue
        if row["p_against_holm"] < alpha:
            verdict = "contradicts"
        elif row["direction"] == "not_up":
            verdict = "supports" if row["ci_hi"] < margins[row["claim"]] else "inconclusive"
        else:
            verdict = "supports" if row["p_claim_holm"] < alpha else "inconclusive"
        table.loc[i, "verdict"] = verdict
    return table


def _holm_column(p: pd.Series) -> pd.Series:
    """Holm over the claims that have this p-value (the others stay NaN)."""
    out = pd.Series(np.nan, index=p.index)
    present = p.notna()
    if present.any():
        out[present] = holm(p[present].to_numpy())
    return out


def _op_span(splits: Sequence[str], ladder: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{ladder[s][0]}–{ladder[s][1]}" for s in splits if s in ladder)


def claims_table(verdicts: pd.DataFrame) -> str:
    """Markdown: per claim, our Δ with its 95 % CI and seed range beside the paper's number, and the verdict."""
    def pp(v):
        return "–" if pd.isna(v) else f"{100 * v:+.1f}"

    header = ["claim", "paper says", "arm − reference", "context · ops", "metric", "seeds", "problems", "ours Δ (pp) "
              "[95% CI]", "per-seed Δ", "paper Δ (pp)", "Holm p", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in verdicts.itertuples():
        ours = "–" if pd.isna(r.delta) else f"{pp(r.delta)} [{pp(r.ci_lo)}, {pp(r.ci_hi)}]"
        seeds = "–" if pd.isna(r.delta) else f"{pp(r.seed_lo)} … {pp(r.seed_hi)}"
        paper = "–" if r.paper is None or pd.isna(r.paper) else f"{r.paper:+.1f}"
        p = r.p_against_holm if r.verdict == "contradicts" else r.p_claim_holm
        lines.append("| " + " | ".join(str(c) for c in [
            r.claim, r.text, f"{r.arm} − {r.reference}", f"{r.context} · {r.splits} ({getattr(r, 'ops', '') or '?'})",
            r.metric, getattr(r, "seeds", "–") if not pd.isna(getattr(r, "seeds", np.nan)) else "–",
            "–" if pd.isna(r.n_problems) else int(r.n_problems), ours, seeds, paper,
            "–" if pd.isna(p) else f"{p:.3g}", f"**{r.verdict}**"]) + " |")
    return "\n".join(lines)
