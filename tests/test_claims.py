"""Claim verdicts against answers known by construction: Holm by hand, and eval tables whose per-problem pass@1
is fixed exactly (no sampling noise), so the difference, its interval and the verdict are known in advance."""

import numpy as np
import pandas as pd
import pytest

from analysis.claims import Claim, claims_table, group_of, judge
from analysis.evaldir import read_eval, write_eval
from analysis.stats import bootstrap_p, holm

LADDER = {"ID": [2, 3], "edge": [4, 5], "hard": [6, 7]}
N = 8  # samples per problem
PROBLEMS = 10  # per op


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # 0.5 x 2 = 1.0, capped
    assert holm([0.2]) == pytest.approx([0.2])
    with pytest.raises(ValueError):
        holm([0.1, float("nan")])


def test_bootstrap_p_counts_draws_against_the_direction():
    boot = np.array([-0.1, 0.0, 0.2, 0.3])  # 2 of 4 draws are <= 0, 1 of 4 is >= 0... plus one each
    assert bootstrap_p(boot, "up") == pytest.approx((2 + 1) / 5)
    assert bootstrap_p(boot, "down") == pytest.approx((3 + 1) / 5)


def eval_dir(path, name: str, correct) -> object:
    """An eval whose problem p at op o has exactly correct(o, p) verified samples out of N."""
    rows = []
    for op in range(2, 8):
        for p in range(PROBLEMS):
            c = correct(op, p)
            for i in range(N):
                ok = i < c
                rows.append(dict(checkpoint=name, context="zoo", op=op, problem_id=f"p{op}-{p}", sample_idx=i,
                                 answer_correct=ok, verified=ok, error="verified" if ok else "value_error",
                                 process_acc=1.0 if ok else 0.0, length=10, stopped=True, mode="sampled",
                                 completion="-"))
    summary = {"checkpoint": name, "request": {"config": {"n_boot": 200, "level": 0.95}, "ladder": LADDER}}
    write_eval(path / name, pd.DataFrame(rows), summary, n_boot=50, level=0.95, seed=0)
    return read_eval(path / name)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims")
    base = eval_dir(root, "base", lambda op, p: 2)  # pass@1 = 0.25 everywhere
    return {
        "base": [base],
        # +0.5 on edge (6 of 8), unchanged elsewhere
        "rl-edge": [eval_dir(root, "rl-edge-s0", lambda op, p: 6 if op in (4, 5) else 2)],
        # -0.25 on ID (0 of 8) in both seeds
        "rl-worse": [eval_dir(root, f"rl-worse-s{s}", lambda op, p: 0 if op in (2, 3) else 2) for s in (0, 1)],
        # hard: half the problems +0.25, half -0.25: mean 0, an interval across zero
        "rl-mixed": [eval_dir(root, "rl-mixed-s0", lambda op, p: (4 if p % 2 else 0) if op >= 6 else 2)],
        # two seeds of different size on edge: +0.5 and +0.25 -> pooled +0.375
        "rl-seeds": [eval_dir(root, "rl-seeds-s0", lambda op, p: 6 if op in (4, 5) else 2),
                     eval_dir(root, "rl-seeds-s1", lambda op, p: 4 if op in (4, 5) else 2)],
    }


def test_verdicts_match_the_constructed_answers(groups):
    claims = [
        Claim("up", "edge RL raises edge", "rl-edge", "base", ("edge",), "up", "pass@1", paper=42.0),
        Claim("down", "falls on ID", "rl-worse", "base", ("ID",), "down", "pass@1"),
        Claim("wrong-way", "rises on ID", "rl-worse", "base", ("ID",), "up", "pass@1"),
        Claim("zero", "rises on hard", "rl-mixed", "base", ("hard",), "up", "pass@1"),
        Claim("flat", "no rise on ID", "rl-edge", "base", ("ID",), "not_up", "pass@1"),
        Claim("pooled", "seeds pooled", "rl-seeds", "base", ("edge",), "up", "pass@1"),
        Claim("absent", "never ran", "rl-hard", "base", ("hard",), "up"),
    ]
    table = judge(claims, groups, n_boot=400).set_index("claim")
    assert table.loc["up", "delta"] == pytest.approx(0.5) and table.loc["up", "ci_lo"] == pytest.approx(0.5)
    assert table.loc["up", "verdict"] == "supports" and table.loc["up", "n_problems"] == 2 * PROBLEMS
    assert table.loc["down", "delta"] == pytest.approx(-0.25) and table.loc["down", "verdict"] == "supports"
    assert table.loc["wrong-way", "verdict"] == "contradicts"
    assert table.loc["zero", "delta"] == pytest.approx(0.0)
    assert table.loc["zero", "ci_lo"] < 0 < table.loc["zero", "ci_hi"] and table.loc["zero", "verdict"] == "inconclusive"
    assert table.loc["flat", "delta"] == 0 and table.loc["flat", "verdict"] == "supports"
    assert table.loc["pooled", "delta"] == pytest.approx(0.375)
    assert (table.loc["pooled", "seed_lo"], table.loc["pooled", "seed_hi"]) == pytest.approx((0.25, 0.5))
    assert table.loc["pooled", "seeds"] == "2/1" and table.loc["down", "seeds"] == "2/1"
    assert table.loc["absent", "verdict"] == "not run"
    # Holm: the supported "up" claims share one family; the smallest p of m claims is multiplied by m
    ups = table[table["direction"] != "not_up"].dropna(subset=["p_claim"])
    assert table.loc["up", "p_claim_holm"] == pytest.approx(min(1.0, len(ups) * table.loc["up", "p_claim"]))
    markdown = claims_table(table.reset_index())
    assert "| up | edge RL raises edge | rl-edge − base | zoo · edge (4–5) | pass@1 |" in markdown
    assert "+50.0 [+50.0, +50.0]" in markdown and "+42.0" in markdown and "**contradicts**" in markdown


def test_group_of_strips_only_a_seed_suffix():
    assert group_of("rl-edge-s12") == "rl-edge" and group_of("base") == "base" and group_of("rl-s-x") == "rl-s-x"
    assert group_of("rl-edge-p1-s0") == "rl-edge" and group_of("base-p2") == "base"
    assert group_of("base-top0.1") == "base-top0.1" and group_of("T21000-beta0.2-p1") == "T21000-beta0.2"
