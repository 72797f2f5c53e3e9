"""Problem-level bootstrap: correct shapes and pairing, and roughly nominal coverage on synthetic problems."""

import numpy as np
import pandas as pd
import pytest

from analysis.stats import bootstrap_ci, paired_diff_ci


def test_point_is_the_statistic_and_interval_brackets_it():
    values = np.array([0.0, 0.25, 0.5, 1.0, 1.0])
    point, lo, hi = bootstrap_ci(values, n_boot=500, seed=1)
    assert point == pytest.approx(values.mean())
    assert values.min() <= lo <= point <= hi <= values.max()


def test_constant_values_give_a_degenerate_interval():
    assert bootstrap_ci(np.full(7, 0.3), n_boot=100) == pytest.approx((0.3, 0.3, 0.3))


def test_seed_makes_it_reproducible_and_other_stats_work():
    values = np.random.default_rng(0).random(50)
    assert bootstrap_ci(values, seed=3, n_boot=300) == bootstrap_ci(values, seed=3, n_boot=300)
    point, lo, hi = bootstrap_ci(values, stat=np.median, n_boot=300)
    assert point == pytest.approx(np.median(values)) and lo <= point <= hi


def test_columns_share_the_same_problem_draws():
    values = np.random.default_rng(0).random(40)
    point, lo, hi = bootstrap_ci(np.column_stack([values, values + 1]), n_boot=300, seed=2)
    assert point.shape == lo.shape == hi.shape == (2,)
    # Same resampled problems for both columns: the second interval is the first shifted by exactly 1.
    assert lo[1] - lo[0] == pytest.approx(1.0) and hi[1] - hi[0] == pytest.approx(1.0)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="no problems"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(np.array([0.1, 0.2]), level=95)


def _bernoulli_problems(rng, n_problems=60, n_samples=16):
    """Per-problem pass@1 estimates c/n whose expectation over problems is exactly 0.4."""
    p = rng.beta(2, 3, n_problems)  # mean 0.4
    return rng.binomial(n_samples, p) / n_samples


def test_coverage_of_95_percent_interval_is_near_nominal():
    rng = np.random.default_rng(12345)
    repetitions = 200
    covered = 0
    for _ in range(repetitions):
        _, lo, hi = bootstrap_ci(_bernoulli_problems(rng), n_boot=400, seed=rng)
        covered += lo <= 0.4 <= hi
    assert 0.90 <= covered / repetitions <= 0.99


def test_paired_difference_is_tighter_than_unpaired_and_covers_truth():
    rng = np.random.default_rng(7)
    difficulty = rng.random(200)
    base = difficulty + rng.normal(0, 0.02, 200)
    arm = difficulty + 0.05 + rng.normal(0, 0.02, 200)
    point, lo, hi = paired_diff_ci(arm, base, n_boot=1000, seed=0)
    assert point == pytest.approx(arm.mean() - base.mean())
    assert lo <= 0.05 <= hi
    _, arm_lo, arm_hi = bootstrap_ci(arm, n_boot=1000, seed=0)
    assert hi - lo < (arm_hi - arm_lo) / 3  # problem difficulty cancels in the pairing


def test_paired_difference_aligns_pandas_on_problem_id():
    base = pd.Series([0.1, 0.5, 0.9], index=["a", "b", "c"])
    arm = pd.Series([1.0, 0.6, 0.2], index=["c", "b", "a"])  # every problem +0.1, in another order
    assert paired_diff_ci(arm, base, n_boot=200) == pytest.approx((0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="different problems"):
        paired_diff_ci(arm, base.rename({"c": "d"}))
    with pytest.raises(ValueError, match="paired"):
        paired_diff_ci(np.ones(3), np.ones(4))
