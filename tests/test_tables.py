"""The tidy tables on a hand-built per-sample table whose every number can be worked out on paper."""

import numpy as np
import pandas as pd
import pytest

from analysis.tables import (
    ERROR_CLASSES,
    PAPER_LADDER,
    RESULT_COLUMNS,
    TAXONOMY_COLUMNS,
    per_problem_pass_at_k,
    results_table,
    split_of,
    taxonomy_table,
)

ANSWER_RIGHT = {"verified", "answer_right_process_wrong"}

# (checkpoint, op, problem, errors of its 4 samples); n = 4 so ks = [1, 2, 4].
PROBLEMS = [
    ("base", 2, "a", ["verified", "answer_right_process_wrong", "value_error", "missing_node"]),  # answer 2, verified 1
    ("base", 2, "b", ["verified"] * 4),                                                        # 4, 4
    ("base", 3, "c", ["unparseable"] * 4),                                                     # 0, 0
    ("base", 12, "d", ["answer_right_process_wrong", "answer_mismatch", "answer_mismatch",
                       "dependency_mismatch"]),                                                # 1, 0
    ("base", 30, "e", ["extra_nodes"] * 4),                                                    # outside the ladder
    ("rl", 2, "a", ["verified"] * 4),
]


def crafted_samples() -> pd.DataFrame:
    rows = [dict(checkpoint=checkpoint, context="zoo", op=op, problem_id=problem, sample_idx=i,
                 answer_correct=error in ANSWER_RIGHT, verified=error == "verified", error=error)
            for checkpoint, op, problem, errors in PROBLEMS for i, error in enumerate(errors)]
    return pd.DataFrame(rows)


def row(table, checkpoint, metric, k, op=None, split=None):
    match = (table["checkpoint"] == checkpoint) & (table["metric"] == metric) & (table["k"] == k)
    match &= table["op"].isna() & (table["split"] == split) if op is None else table["op"] == op
    assert match.sum() == 1
    return table[match].iloc[0]


@pytest.fixture(scope="module")
def results():
    return results_table(crafted_samples(), PAPER_LADDER, n_boot=300, seed=0)


def test_schema_and_row_count(results):
    assert list(results.columns) == list(RESULT_COLUMNS)
    # base: 4 ops + 2 splits (no hard problems); rl: 1 op + 1 split; each × 2 metrics × 3 ks
    assert len(results) == (4 + 2 + 1 + 1) * 2 * 3
    assert sorted(results["k"].unique()) == [1, 2, 4]


@pytest.mark.parametrize("metric, k, expected", [
    ("pass@k_answer", 1, (0.5 + 1) / 2), ("pass@k_answer", 2, (5 / 6 + 1) / 2), ("pass@k_answer", 4, 1.0),
    ("pass@k_verified", 1, (0.25 + 1) / 2), ("pass@k_verified", 2, (0.5 + 1) / 2), ("pass@k_verified", 4, 1.0),
])
def test_op_rows_average_per_problem_pass_at_k(results, metric, k, expected):
    r = row(results, "base", metric, k, op=2)
    assert r["value"] == pytest.approx(expected)
    assert (r["split"], r["n_problems"], r["n_samples"]) == ("ID", 2, 8)
    assert r["ci_lo"] <= r["value"] <= r["ci_hi"]


@pytest.mark.parametrize("metric, k, expected", [
    ("pass@k_answer", 1, (0.5 + 1 + 0) / 3), ("pass@k_answer", 2, (5 / 6 + 1 + 0) / 3),
    ("pass@k_answer", 4, 2 / 3), ("pass@k_verified", 1, (0.25 + 1 + 0) / 3),
    ("pass@k_verified", 2, (0.5 + 1 + 0) / 3), ("pass@k_verified", 4, 2 / 3),
])
def test_split_rows_pool_problems_across_ops(results, metric, k, expected):
    r = row(results, "base", metric, k, split="ID")
    assert r["value"] == pytest.approx(expected)
    assert (r["n_problems"], r["n_samples"]) == (3, 12)
    assert 0.0 <= r["ci_lo"] <= r["value"] <= r["ci_hi"] <= 1.0


def test_answer_right_process_wrong_counts_only_for_answer_metric(results):
    assert row(results, "base", "pass@k_answer", 2, op=12)["value"] == pytest.approx(0.5)
    assert row(results, "base", "pass@k_verified", 4, op=12)["value"] == 0.0
    assert row(results, "base", "pass@k_answer", 1, split="edge")["value"] == pytest.approx(0.25)


def test_constant_groups_have_degenerate_intervals(results):
    r = row(results, "base", "pass@k_answer", 4, op=3)
    assert (r["value"], r["ci_lo"], r["ci_hi"]) == (0.0, 0.0, 0.0)


def test_ops_outside_the_ladder_get_op_rows_but_no_split(results):
    assert pd.isna(row(results, "base", "pass@k_answer", 1, op=30)["split"])
    assert set(results.loc[results["op"].isna(), "split"]) == {"ID", "edge"}


def test_op_rows_come_first_and_splits_follow_ladder_order(results):
    base = results[results["checkpoint"] == "base"]
    assert list(base["op"].dropna().unique()) == [2, 3, 12, 30]
    assert base["op"].isna().to_numpy().tolist() == sorted(base["op"].isna())
    assert list(dict.fromkeys(base.loc[base["op"].isna(), "split"])) == ["ID", "edge"]


def test_a_group_interval_does_not_depend_on_other_checkpoints(results):
    samples = crafted_samples()
    alone = results_table(samples[samples["checkpoint"] == "base"], PAPER_LADDER, n_boot=300, seed=0)
    pd.testing.assert_frame_equal(alone, results[results["checkpoint"] == "base"].reset_index(drop=True))


def test_default_k_grid_follows_the_smallest_sample_count():
    samples = crafted_samples()
    samples = samples[~((samples["problem_id"] == "c") & (samples["sample_idx"] == 3))]
    assert sorted(per_problem_pass_at_k(samples)["k"].unique()) == [1, 2, 3]
    with pytest.raises(ValueError, match="k=4"):
        per_problem_pass_at_k(samples, ks=[1, 4])


def test_taxonomy_fractions():
    taxonomy = taxonomy_table(crafted_samples(), PAPER_LADDER)
    assert list(taxonomy.columns) == list(TAXONOMY_COLUMNS)
    groups = taxonomy.groupby(["checkpoint", "context", "op", "split"], dropna=False)
    assert np.allclose(groups["fraction"].sum(), 1.0)
    assert (groups.size() == len(ERROR_CLASSES)).all()

    def share(error, op=None, split=None):
        match = (taxonomy["checkpoint"] == "base") & (taxonomy["error"] == error)
        match &= taxonomy["op"].isna() & (taxonomy["split"] == split) if op is None else taxonomy["op"] == op
        return taxonomy.loc[match, "fraction"].item()

    assert share("verified", op=2) == 5 / 8
    assert share("missing_node", op=2) == 1 / 8
    assert share("extra_nodes", op=2) == 0.0
    assert share("verified", split="ID") == 5 / 12
    assert share("unparseable", split="ID") == 4 / 12
    assert share("answer_mismatch", split="edge") == 2 / 4


def test_split_of():
    assert split_of([2, 10, 11, 20, 21], PAPER_LADDER).tolist()[:4] == ["ID", "ID", "edge", "hard"]
    assert pd.isna(split_of([21], PAPER_LADDER).iloc[0])
    with pytest.raises(ValueError, match="overlap"):
        split_of([2], {"a": (2, 5), "b": (5, 9)})


@pytest.mark.parametrize("corrupt, message", [
    (lambda s: s.drop(columns="verified"), "lacks columns"),
    (lambda s: s.assign(error=s["error"].replace("value_error", "typo")), "unknown error classes"),
    (lambda s: s.assign(verified=True), "disagrees"),
    (lambda s: pd.concat([s, s.iloc[:1]]), "duplicated"),
])
def test_rejects_malformed_sample_tables(corrupt, message):
    with pytest.raises(ValueError, match=message):
        results_table(corrupt(crafted_samples()), PAPER_LADDER, n_boot=10)
