"""pass@k against exhaustive enumeration of k-subsets, plus the edge cases the estimator must not fumble."""

from fractions import Fraction
from itertools import combinations
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.passk import ks_for, pass_at_k


def brute_force(n: int, c: int, k: int) -> float:
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(outcomes[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_enumeration_of_all_k_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


@settings(deadline=None)  # exact big-integer ratios; a loaded machine must not turn slowness into a failure
@given(n=st.integers(1, 400), data=st.data())
def test_matches_exact_binomial_ratio_at_large_n(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


def test_edge_cases():
    assert pass_at_k(128, 0, 128) == 0.0
    assert pass_at_k(128, 128, 1) == 1.0
    assert pass_at_k(128, 1, 128) == 1.0  # k = n always contains the one correct sample
    assert pass_at_k(128, 121, 8) == 1.0  # fewer than k failures: exactly 1, not 1 - tiny
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_vectorised_over_problems_and_broadcasts():
    n = np.array([4, 4, 8])
    c = np.array([0, 2, 8])
    got = pass_at_k(n, c, 2)
    assert got.shape == (3,)
    assert got == pytest.approx([0.0, 1 - 1 / 6, 1.0])
    assert pass_at_k(16, np.arange(17), 4).shape == (17,)
    assert isinstance(pass_at_k(4, 1, 1), float)


def test_k_larger_than_n_names_k():
    with pytest.raises(ValueError, match="k=5"):
        pass_at_k(np.array([8, 4]), np.array([1, 1]), 5)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 1, 0)])
def test_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_rejects_non_integer_inputs():
    with pytest.raises(TypeError):
        pass_at_k(4.5, 1, 1)
    with pytest.raises(TypeError):
        pass_at_k(4, 1, 2.0)


@pytest.mark.parametrize("n, expected", [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8]),
                                         (128, [1, 2, 4, 8, 16, 32, 64, 128]), (100, [1, 2, 4, 8, 16, 32, 64, 100])])
def test_ks_for(n, expected):
    assert ks_for(n) == expected


def test_ks_for_rejects_zero():
    with pytest.raises(ValueError):
        ks_for(0)
