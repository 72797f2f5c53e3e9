"""The one unbiased pass@k estimator, shared by answer-only and process-verified scoring.

The paper used different estimators for answer-level and process-level pass@k, which made the two curves
incomparable; here both go through `pass_at_k` and differ only in which per-sample flag is counted as c.

1 − C(n−c, k)/C(n, k) is evaluated as 1 − ∏_{i<k} (1 − c/(n−i)): the binomials leave float range once n
reaches about a thousand samples and exact integer binomials cannot be vectorised, while every factor of
the product lies in [0, 1]. The factor at i = n − c is exactly zero, so problems with fewer than k failures
come out as exactly 1 without a special case.
"""

from __future__ import annotations

import numpy as np


def pass_at_k(n, c, k: int):
    """Probability that at least one of k samples drawn without replacement from n is correct, c correct.

    `n` and `c` are integers or integer arrays (broadcast together); `k` is one integer. Returns a float for
    scalar inputs, otherwise an array of the broadcast shape.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k={k!r} must be an integer")
    n_arr = _as_counts(n, "n")
    c_arr = _as_counts(c, "c")
    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    if np.any(c_arr > n_arr):
        raise ValueError("correct count c exceeds sample count n")
    if np.any(k > n_arr):
        raise ValueError(f"k={k} exceeds the number of samples per problem (n={int(np.min(n_arr))})")
    n_b, c_b = np.broadcast_arrays(n_arr.astype(float), c_arr.astype(float))
    draws = np.arange(k)
    all_wrong = np.prod(1.0 - c_b[..., None] / (n_b[..., None] - draws), axis=-1)
    result = 1.0 - all_wrong
    return float(result) if result.ndim == 0 else result


def ks_for(n: int) -> list[int]:
    """The k grid reported for n samples: powers of two up to n, and n itself so pass@n is always shown."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    ks = [2**j for j in range(int(n).bit_length())]
    if ks[-1] != n:
        ks.append(int(n))
    return ks


def _as_counts(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.all(arr == np.floor(arr))):
        raise TypeError(f"{name} must hold integer counts")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative")
    return arr
