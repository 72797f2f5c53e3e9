"""Percentile-bootstrap confidence intervals whose resampling unit is the problem.

Samples of one problem are strongly correlated (same graph, same difficulty), so resampling samples would
give intervals far too narrow; the evaluation set of problems is the thing that would change on a rerun.
Columns of a (problems × statistics) matrix are resampled with the same problem draws, so the CIs of, say,
pass@1 … pass@128 of one arm describe one coherent set of hypothetical evaluation sets, and a paired
"arm minus base" difference keeps the per-problem pairing that makes it much tighter than two separate CIs.

`stat` must reduce along an `axis` keyword (np.mean, np.median, …): that is what lets all n_boot resamples
be evaluated in one vectorised call.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

Stat = Callable[..., np.ndarray]


def bootstrap_ci(values_per_problem, stat: Stat = np.mean, n_boot: int = 2000, level: float = 0.95,
                 seed: int | np.random.Generator | None = 0):
    """(point, lo, hi) of `stat` over problems, with a percentile-bootstrap interval at `level`.

    `values_per_problem` has shape (n_problems,) — scalars are returned — or (n_problems, n_stats), in which
    case every column is bootstrapped with the same problem draws and arrays of length n_stats are returned.
    """
    values = _problem_matrix(values_per_problem, "values_per_problem")
    draws = _draws(len(values), n_boot, seed)
    point = stat(values, axis=0)
    lo, hi = _percentile_interval(_stat_over_draws(values, draws, stat), level)
    return _unwrap(np.ndim(values_per_problem) == 1, point, lo, hi)


def paired_diff_ci(arm_values, base_values, stat: Stat = np.mean, n_boot: int = 2000, level: float = 0.95,
                   seed: int | np.random.Generator | None = 0):
    """(point, lo, hi) of stat(arm) − stat(base) on the same problems, both resampled with the same draws.

    Arrays must be aligned row by row; pandas objects are aligned on their index (problem id), and must cover
    the same problems so a difference is never silently computed on a subset.
    """
    if isinstance(arm_values, (pd.Series, pd.DataFrame)) and isinstance(base_values, (pd.Series, pd.DataFrame)):
        if set(arm_values.index) != set(base_values.index):
            missing = sorted(set(arm_values.index) ^ set(base_values.index), key=str)
            raise ValueError(f"arm and base cover different problems; unmatched: {missing[:10]}")
        base_values = base_values.loc[arm_values.index]
    arm = _problem_matrix(arm_values, "arm_values")
    base = _problem_matrix(base_values, "base_values")
    if arm.shape != base.shape:
        raise ValueError(f"arm values {arm.shape} and base values {base.shape} are not paired problem by problem")
    draws = _draws(len(arm), n_boot, seed)
    point = stat(arm, axis=0) - stat(base, axis=0)
    boot = _stat_over_draws(arm, draws, stat) - _stat_over_draws(base, draws, stat)
    lo, hi = _percentile_interval(boot, level)
    return _unwrap(np.ndim(arm_values) == 1, point, lo, hi)


def bootstrap_p(boot_differences, direction: str) -> float:
    """One-sided bootstrap p-value that the difference is not in `direction` ("up": share of resampled
    differences <= 0, "down": >= 0), with the +1 correction so it is never 0 for a finite number of draws."""
    boot = np.asarray(boot_differences, dtype=float)
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    against = (boot <= 0) if direction == "up" else (boot >= 0)
    return float((against.sum() + 1) / (len(boot) + 1))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    Sorted ascending, the i-th smallest (0-based) of m is multiplied by m - i, then a running maximum keeps the
    adjusted values monotone, and they are capped at 1. Rejecting where adjusted p < α is Holm's procedure.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or np.isnan(p).any() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"p-values must be a 1-D array in [0, 1], got {pvalues!r}")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def paired_bootstrap(arm, base, n_boot: int = 2000, seed: int | np.random.Generator | None = 0):
    """(point, resampled differences) of mean(arm) − mean(base) over problems, resampled together."""
    arm, base = _problem_matrix(arm, "arm")[:, 0], _problem_matrix(base, "base")[:, 0]
    if arm.shape != base.shape:
        raise ValueError(f"arm values {arm.shape} and base values {base.shape} are not paired problem by problem")
    draws = _draws(len(arm), n_boot, seed)
    diff = arm - base
    return float(diff.mean()), diff[draws].mean(axis=1)


def _problem_matrix(values, name: str) -> np.ndarray:
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 1-D (problems) or 2-D (problems × statistics), got {matrix.ndim}-D")
    if len(matrix) == 0:
        raise ValueError(f"{name} has no problems")
    if np.isnan(matrix).any():
        raise ValueError(f"{name} contains NaN")
    return matrix


def _draws(n_problems: int, n_boot: int, seed) -> np.ndarray:
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} must be at least 1")
    return np.random.default_rng(seed).integers(0, n_problems, size=(n_boot, n_problems))


def _stat_over_draws(values: np.ndarray, draws: np.ndarray, stat: Stat) -> np.ndarray:
    # One column at a time: indexing all columns at once would materialise n_boot × problems × stats floats.
    return np.stack([stat(column[draws], axis=1) for column in values.T], axis=1)


def _percentile_interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level} must lie strictly between 0 and 1")
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail], axis=0)
    return lo, hi


def _unwrap(one_dimensional: bool, point, lo, hi):
    if one_dimensional:
        return float(np.asarray(point).reshape(-1)[0]), float(lo[0]), float(hi[0])
    return np.asarray(point, dtype=float), lo, hi
