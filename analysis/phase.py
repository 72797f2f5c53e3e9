"""Detect "RL grokking": a long flat plateau followed by a sudden rise of a training or eval curve.

DELTA reports reward sitting near zero for many steps and then jumping to ~100%; the paper's reward curves,
in contrast, rise slowly. Telling the two apart needs more than "the curve went up", so a jump must pass
three kinds of test, each aimed at one look-alike:

- size: the rise from plateau to the new level exceeds `min_snr` × the single-step noise (a robust scale
  of first differences, which a lone jump or a slow trend hardly moves) — rejects noise;
- sharpness: the two-level step fits the curve clearly better than a straight line (residual sum of
  squares at most `max_step_vs_line` of the line's), and on a zero-phase EMA of the curve the 10%→90% rise
  spans at most `max_width` of the logged step range — rejects a monotone slow rise, which a two-segment
  fit alone would call a step, and which under noise can look briefly steep;
- plateau: before the rise the curve is flat — its linear-fit drift is at most `max_plateau_drift` of the
  jump — and lasts at least `min_plateau` of the step range — rejects a fast early rise that merely
  saturates, which is ordinary learning rather than a delayed transition.

The location comes from the best two-segment (piecewise-constant) least-squares fit with an upward step,
computed for every split point at once from cumulative sums. Only rises are detected: negate a loss curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PhaseTransition:
    jumped: bool
    step: float | None  # first logged step at the new level
    size: float  # new level minus plateau level, in the metric's units
    plateau_level: float
    plateau_length: float  # in steps, from the first logged step to the start of the rise


NO_JUMP = PhaseTransition(jumped=False, step=None, size=float("nan"), plateau_level=float("nan"),
                          plateau_length=float("nan"))


def detect_jump(steps, values, *, smoothing: float = 0.5, min_snr: float = 5.0, min_size: float = 0.0,
                max_width: float = 0.25, max_step_vs_line: float = 0.8, max_plateau_drift: float = 0.3,
                min_plateau: float = 0.1, min_points: int = 3) -> PhaseTransition:
    """Find a plateau-then-jump in the curve (steps, values); `NO_JUMP` when there is none.

    Repeated steps (a resumed run re-logging them) keep their last value. `smoothing` is the EMA weight of
    the newest point (1 = no smoothing); `min_points` is the fewest points on each side of the jump and on
    the plateau; `max_width` and `min_plateau` are fractions of the logged step range.
    """
    if not 0.0 < smoothing <= 1.0:
        raise ValueError(f"smoothing={smoothing} must lie in (0, 1]")
    steps, values = _last_value_per_step(steps, values)
    if len(values) < 2 * min_points:
        return NO_JUMP
    split = _best_upward_split(values, min_points)
    if split is None:
        return NO_JUMP
    lower, fitted_rise = values[:split].mean(), values[split:].mean() - values[:split].mean()
    rise_start, rise_end = _rise_window(_zero_phase_ema(values, smoothing), split,
                                        low=lower + 0.1 * fitted_rise, high=lower + 0.9 * fitted_rise)

    plateau = values[:rise_start + 1]
    plateau_steps = steps[:rise_start + 1]
    plateau_level = float(plateau.mean())
    size = float(values[rise_end:].mean() - plateau_level)
    span = steps[-1] - steps[0]

    jumped = (len(plateau) >= min_points
              and plateau_steps[-1] - plateau_steps[0] >= min_plateau * span
              and size > max(min_snr * _noise_scale(values), min_size)
              and steps[rise_end] - steps[rise_start] <= max_width * span
              and _step_residual(values, split) <= max_step_vs_line * _line_residual(steps, values)
              and _drift(plateau_steps, plateau) <= max_plateau_drift * size)
    if not jumped:
        return NO_JUMP
    return PhaseTransition(jumped=True, step=float(steps[split]), size=size, plateau_level=plateau_level,
                           plateau_length=float(plateau_steps[-1] - plateau_steps[0]))


def _last_value_per_step(steps, values) -> tuple[np.ndarray, np.ndarray]:
    curve = pd.Series(np.asarray(values, dtype=float), index=np.asarray(steps, dtype=float)).dropna()
    curve = curve.groupby(level=0, sort=True).last()
    return curve.index.to_numpy(), curve.to_numpy()


def _best_upward_split(values: np.ndarray, min_points: int) -> int | None:
    """Index of the first point of the upper segment in the best two-mean fit with upper > lower."""
    n = len(values)
    cuts = np.arange(min_points, n - min_points + 1)
    left_sum = np.cumsum(values)[cuts - 1]
    right_sum = values.sum() - left_sum
    left_mean, right_mean = left_sum / cuts, right_sum / (n - cuts)
    # Minimising the two-segment SSE is maximising the explained sum of squares below.
    explained = left_sum * left_mean + right_sum * right_mean
    explained[right_mean <= left_mean] = -np.inf
    if not np.isfinite(explained).any():
        return None
    return int(cuts[np.argmax(explained)])


def _zero_phase_ema(values: np.ndarray, alpha: float) -> np.ndarray:
    # Forward then backward, so smoothing widens the rise symmetrically instead of delaying it.
    return _ema(_ema(values, alpha)[::-1], alpha)[::-1]


def _ema(values: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(values)
    out[0] = values[0]
    for i in range(1, len(values)):
        out[i] = alpha * values[i] + (1.0 - alpha) * out[i - 1]
    return out


def _rise_window(smooth: np.ndarray, split: int, low: float, high: float) -> tuple[int, int]:
    """Last point before `split` still at or below `low`, first point from `split` on at or above `high`."""
    below = np.flatnonzero(smooth[:split] <= low)
    above = np.flatnonzero(smooth[split:] >= high)
    start = int(below[-1]) if len(below) else 0
    end = split + int(above[0]) if len(above) else len(smooth) - 1
    return start, end


def _step_residual(values: np.ndarray, split: int) -> float:
    return float(((values[:split] - values[:split].mean()) ** 2).sum()
                 + ((values[split:] - values[split:].mean()) ** 2).sum())


def _line_residual(steps: np.ndarray, values: np.ndarray) -> float:
    return float(((values - np.polyval(np.polyfit(steps, values, 1), steps)) ** 2).sum())


def _drift(steps: np.ndarray, values: np.ndarray) -> float:
    """How far a straight-line fit moves across the segment: ~0 on a plateau, the whole rise on a ramp."""
    if len(values) < 2:
        return 0.0
    return float(abs(np.polyfit(steps, values, 1)[0]) * (steps[-1] - steps[0]))


def _noise_scale(values: np.ndarray) -> float:
    # MAD of first differences: white noise of sd σ gives differences of sd σ√2; one jump is one outlier.
    diffs = np.diff(values)
    return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2.0))
