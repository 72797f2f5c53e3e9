"""The paper's figures, drawn from the tidy tables; one function per figure, each returning the Figure.

- Every function filters a tidy table (`tables.results_table`, `tables.taxonomy_table`, or training metrics
  [run, step, metric, value]). Design variables — pre-training exposure %, RL budget share β, budget,
  reward variant, arm — are columns the caller merges on from its run manifest, so no figure parses run names.
- Colours come from `arm_palette(order)` by position in one list: pass the same full list of arms to every
  figure and each arm keeps its colour even where only some arms are drawn.
- Figures are `matplotlib.figure.Figure` objects on an Agg canvas rather than pyplot: plotting never
  switches the global backend, works on headless nodes, and leaves no open-figure registry to leak in sweeps.
- pass@k is stored as a fraction and drawn in %, with the table's bootstrap CI as a band or error bar.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.tables import ERROR_CLASSES

METRIC_LABELS = {"pass@k_answer": "answer-only", "pass@k_verified": "process-verified"}

TRAINING_METRIC_LABELS = {
    "loss": "loss (nats/token)",
    "reward": "mean reward per sample",
    "entropy": "policy entropy (nats/token)",
    "response_length": "response length (tokens)",
}

# Fixed per class, independent of which classes occur, so figures stay comparable; green = fully correct,
# orange = right answer via a wrong process (reward hacking), grey = nothing parseable.
_CB = sns.color_palette("colorblind", 10)
ERROR_COLOURS = dict(zip(ERROR_CLASSES, [_CB[2], _CB[1], _CB[0], _CB[4], _CB[3], _CB[8], _CB[5], _CB[7]]))

_PANEL_INCHES = (3.6, 2.7)


def arm_palette(order: Sequence[str]) -> dict[str, tuple]:
    """Colour of each arm by its position in `order`; colour-blind safe for up to 10 arms."""
    colours = sns.color_palette("colorblind" if len(order) <= 10 else "husl", len(order))
    return dict(zip(order, colours))


def save(fig: Figure, path_without_suffix: str | Path) -> tuple[Path, Path]:
    """Write `<path>.png` (150 dpi) and `<path>.pdf`, creating folders; returns both paths."""
    # Suffixes are appended, not swapped, so names such as "beta0.5" keep their dot.
    png, pdf = Path(f"{path_without_suffix}.png"), Path(f"{path_without_suffix}.pdf")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=150)
    fig.savefig(pdf)
    return png, pdf


def plot_passk_curves(results: pd.DataFrame, *, metric: str = "pass@k_verified",
                      order: Sequence[str] | None = None, out: str | Path | None = None) -> Figure:
    """pass@k against k (log2 axis) per checkpoint, one panel per split (columns) and context (rows)."""
    rows = _split_rows(results, metric)
    splits, contexts = _in_table_order(rows["split"]), sorted(rows["context"].unique())
    arms, colours = _arms(rows["checkpoint"], order)
    ks = sorted(rows["k"].unique())
    with _style():
        fig, axes = _new_figure(len(contexts), len(splits))
        for (r, context), (c, split) in _cells(contexts, splits):
            ax = axes[r, c]
            panel = rows[(rows["context"] == context) & (rows["split"] == split)]
            for arm in arms:
                curve = _unique(panel[panel["checkpoint"] == arm], ["k"]).sort_values("k")
                if curve.empty:
                    continue
                ax.plot(curve["k"], 100 * curve["value"], marker="o", markersize=3, color=colours[arm], label=arm)
                ax.fill_between(curve["k"], 100 * curve["ci_lo"], 100 * curve["ci_hi"], color=colours[arm],
                                alpha=0.2, linewidth=0)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set(title=f"{split} · {context}", xlabel="k (samples per problem)",
                   ylabel=f"pass@k, {METRIC_LABELS[metric]} (%)", ylim=(0, 102))
        return _finish(fig, axes, out)


def plot_split_bars(results: pd.DataFrame, *, ks: Sequence[int] | None = None, metric: str = "pass@k_verified",
                    hue: str = "checkpoint", order: Sequence[str] | None = None,
                    out: str | Path | None = None) -> Figure:
    """Grouped bars of pass@k per split, one bar per `hue` value (paper Fig. 3: base vs RL arms).

    `ks` defaults to pass@1 and the largest k in the table (pass@128 at paper scale); one panel per k
    (columns) and context (rows).
    """
    rows = _split_rows(results, metric)
    _require(rows, [hue], "plot_split_bars")
    ks = _ks_to_show(rows, ks)
    splits, contexts = _in_table_order(rows["split"]), sorted(rows["context"].unique())
    groups, colours = _arms(rows[hue], order)
    split_labels = _split_labels(results, splits)
    with _style():
        fig, axes = _new_figure(len(contexts), len(ks))
        for (r, context), (c, k) in _cells(contexts, ks):
            panel = rows[(rows["context"] == context) & (rows["k"] == k)]
            _grouped_bars(axes[r, c], panel, "split", splits, split_labels, hue, groups, colours)
            axes[r, c].set(title=f"pass@{k} · {context}", xlabel="split (evaluated ops)",
                           ylabel=f"pass@k, {METRIC_LABELS[metric]} (%)", ylim=(0, 105))
        return _finish(fig, axes, out)


def plot_reward_variants(results: pd.DataFrame, *, ks: Sequence[int] | None = None,
                         metric: str = "pass@k_verified", order: Sequence[str] | None = None,
                         out: str | Path | None = None) -> Figure:
    """Paper Fig. 7: pass@k per split for each reward variant (a `variant` column: outcome, α=0.2, strict…)."""
    return plot_split_bars(results, ks=ks, metric=metric, hue="variant", order=order, out=out)


def plot_exposure(results: pd.DataFrame, *, context: str, ks: Sequence[int] | None = None,
                  metric: str = "pass@k_verified", order: Sequence[str] | None = None,
                  out: str | Path | None = None, xlabel: str | None = None) -> Figure:
    """Paper Fig. 4: pass@k on `context` against its share of the pre-training corpus, one line per arm.

    Needs columns `exposure_pct` (0–100) and `arm` (e.g. base, RL). The x axis is symlog, linear below the
    smallest non-zero exposure, so 0%, 0.1%, 1% and 10% are all visible and distinct.
    """
    rows = _split_rows(results, metric)
    _require(rows, ["exposure_pct", "arm"], "plot_exposure")
    rows = rows[rows["context"] == context]
    if rows.empty:
        raise ValueError(f"no split-level rows for context {context!r}")
    ks = _ks_to_show(rows, ks)
    splits = _in_table_order(rows["split"])
    arms, colours = _arms(rows["arm"], order)
    exposures = sorted(rows["exposure_pct"].unique())
    positive = [e for e in exposures if e > 0]
    with _style():
        fig, axes = _new_figure(len(ks), len(splits))
        for (r, k), (c, split) in _cells(ks, splits):
            ax = axes[r, c]
            panel = rows[(rows["k"] == k) & (rows["split"] == split)]
            for arm in arms:
                line = _unique(panel[panel["arm"] == arm], ["exposure_pct"]).sort_values("exposure_pct")
                if not line.empty:
                    _error_line(ax, line["exposure_pct"], line, colours[arm], arm)
            ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
            ax.set_xticks(exposures)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set(title=f"pass@{k} · {split} · context {context}", ylim=(0, 105),
                   xlabel=xlabel or f"context {context} share of pre-training (%)",
                   ylabel=f"pass@{k}, {METRIC_LABELS[metric]} (%)")
        return _finish(fig, axes, out)


def plot_budget_split(results: pd.DataFrame, *, k: int = 1, splits: Sequence[str] = ("edge", "hard"),
                      metric: str = "pass@k_verified", out: str | Path | None = None) -> Figure:
    """Paper Fig. 6: pass@k on the OOD splits for each split of a fixed compute budget, as grouped bars.

    Needs columns `beta` (the RL share: 0 = all mid-training … 1 = all RL) and `budget` (total tokens). One
    group of bars per budget, one bar per β, shaded light to dark as β grows (β is ordered, not categorical).
    """
    rows = _split_rows(results, metric)
    _require(rows, ["beta", "budget"], "plot_budget_split")
    rows = rows[rows["k"] == k]
    missing = [s for s in splits if s not in set(rows["split"])]
    if missing:
        raise ValueError(f"no pass@{k} rows for splits {missing}")
    contexts = sorted(rows["context"].unique())
    budgets = sorted(rows["budget"].unique())
    betas = sorted(rows["beta"].unique())
    rows = rows.assign(share=rows["beta"].map(_beta_label))
    shares = [_beta_label(beta) for beta in betas]
    colours = dict(zip(shares, sns.color_palette("crest", len(shares))))
    budget_labels = [f"{budget / 1e9:.3g}B tokens" if budget >= 1e9 else f"{budget / 1e6:.3g}M tokens"
                     for budget in budgets]
    with _style():
        fig, axes = _new_figure(len(contexts), len(splits))
        for (r, context), (c, split) in _cells(contexts, splits):
            ax = axes[r, c]
            panel = rows[(rows["context"] == context) & (rows["split"] == split)]
            _grouped_bars(ax, panel, "budget", budgets, budget_labels, "share", shares, colours)
            ax.set(title=f"{split} · {context}", xlabel="total compute budget", ylim=(0, 105),
                   ylabel=f"pass@{k}, {METRIC_LABELS[metric]} (%)")
        return _finish(fig, axes, out)


def _beta_label(beta: float) -> str:
    """β with the paper's names for its ends and extremes of RL share (Light-RL 0.2, Heavy-RL 0.8)."""
    names = {0.0: "mid-training only", 0.2: "Light-RL", 0.8: "Heavy-RL", 1.0: "RL only"}
    return f"β={beta:g}" + (f" ({names[beta]})" if beta in names else "")


def plot_error_taxonomy(taxonomy: pd.DataFrame, *, by: str = "split", order: Sequence[str] | None = None,
                        out: str | Path | None = None) -> Figure:
    """Paper Fig. 8: stacked share of samples per error class, x = split (or op), one panel per checkpoint."""
    if by not in ("split", "op"):
        raise ValueError(f"by={by!r} must be 'split' or 'op'")
    rows = taxonomy[taxonomy["op"].isna()] if by == "split" else taxonomy[taxonomy["op"].notna()]
    if rows.empty:
        raise ValueError(f"taxonomy table has no {by}-level rows")
    xs = _in_table_order(rows["split"]) if by == "split" else sorted(rows["op"].unique())
    contexts = sorted(rows["context"].unique())
    checkpoints, _ = _arms(rows["checkpoint"], order)
    x_labels = _split_labels(taxonomy, xs) if by == "split" else [str(x) for x in xs]
    with _style():
        fig, axes = _new_figure(len(contexts), len(checkpoints))
        for (r, context), (c, checkpoint) in _cells(contexts, checkpoints):
            ax = axes[r, c]
            panel = rows[(rows["context"] == context) & (rows["checkpoint"] == checkpoint)]
            shares = (panel.pivot(index=by, columns="error", values="fraction")
                      .reindex(index=xs, columns=list(ERROR_CLASSES)))
            bottom = np.zeros(len(xs))
            for error in ERROR_CLASSES:
                height = 100 * shares[error].fillna(0).to_numpy()
                ax.bar(np.arange(len(xs)), height, bottom=bottom, color=ERROR_COLOURS[error],
                       label=error.replace("_", " "), width=0.8)
                bottom += height
            ax.set_xticks(np.arange(len(xs)), x_labels)
            ax.set(title=f"{checkpoint} · {context}", ylim=(0, 100), ylabel="share of samples (%)",
                   xlabel="split (evaluated ops)" if by == "split" else "operations per problem (op)")
        return _finish(fig, axes, out)


def plot_training_curves(metrics: pd.DataFrame, *, names: Sequence[str] = tuple(TRAINING_METRIC_LABELS),
                         order: Sequence[str] | None = None, out: str | Path | None = None) -> Figure:
    """Loss, reward, entropy and response length against step, one line per run, one panel per metric.

    `metrics` is [run, step, metric, value] in logging order. A resumed run re-logs the steps after its last
    checkpoint; the last logged value of each step wins, because it is the one the surviving run went on from.
    """
    _require(metrics, ["run", "step", "metric", "value"], "plot_training_curves")
    curves = metrics.drop_duplicates(["run", "metric", "step"], keep="last")
    present = [name for name in names if name in set(curves["metric"])]
    if not present:
        raise ValueError(f"none of the metrics {list(names)} is in the table")
    runs, colours = _arms(curves["run"], order)
    n_cols = min(2, len(present))
    with _style():
        fig, axes = _new_figure(math.ceil(len(present) / n_cols), n_cols, sharey=False)
        for ax, name in zip(axes.flat, present):
            panel = curves[curves["metric"] == name]
            for run in runs:
                curve = panel[panel["run"] == run].sort_values("step")
                if not curve.empty:
                    ax.plot(curve["step"], curve["value"], color=colours[run], linewidth=1.2, label=run)
            ax.set(title=name.replace("_", " "), xlabel="training step (optimizer updates)",
                   ylabel=TRAINING_METRIC_LABELS.get(name, name))
        for ax in axes.flat[len(present):]:
            ax.set_visible(False)
        return _finish(fig, axes, out, label_outer=False)


@contextlib.contextmanager
def _style():
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        yield


def _new_figure(n_rows: int, n_cols: int, sharey: bool = True) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(_PANEL_INCHES[0] * n_cols + 1.6, _PANEL_INCHES[1] * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(n_rows, n_cols, squeeze=False, sharey=sharey)


def _finish(fig: Figure, axes: np.ndarray, out, label_outer: bool = True) -> Figure:
    if label_outer:
        for ax in axes.flat:
            ax.label_outer()
    handles, labels = {}, []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        fig.legend([handles[label] for label in labels], labels, loc="outside right upper", frameon=False)
    if out is not None:
        save(fig, out)
    return fig


def _cells(row_values: Sequence, col_values: Sequence):
    for r, row in enumerate(row_values):
        for c, col in enumerate(col_values):
            yield (r, row), (c, col)


def _split_rows(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    if metric not in METRIC_LABELS:
        raise ValueError(f"metric={metric!r}; known: {list(METRIC_LABELS)}")
    rows = results[results["op"].isna() & results["split"].notna() & (results["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"results table has no split-level rows for {metric}")
    return rows


def _require(table: pd.DataFrame, columns: Sequence[str], figure: str) -> None:
    missing = [col for col in columns if col not in table.columns]
    if missing:
        raise ValueError(f"{figure} needs columns {missing}; merge them onto the table from the run manifest")


def _ks_to_show(rows: pd.DataFrame, ks: Sequence[int] | None) -> list[int]:
    """`ks`, checked against the table; by default pass@1 and pass@(largest k), as in the paper's bar charts."""
    available = set(rows["k"])
    ks = list(ks) if ks is not None else sorted({1, int(max(available))})
    missing = [k for k in ks if k not in available]
    if missing:
        raise ValueError(f"k={missing} not in the results table (has {sorted(available)})")
    return ks


def _unique(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    # Two rows for one point would mean unaveraged seeds or two runs per design cell: refuse to pick one.
    if rows.duplicated(list(by)).any():
        raise ValueError(f"several rows per {list(by)} within one line; average seeds or filter runs first")
    return rows


def _in_table_order(values: pd.Series) -> list:
    return list(dict.fromkeys(values.dropna()))


def _arms(names: pd.Series, order: Sequence[str] | None) -> tuple[list, dict]:
    """Arms present in the table in `order` (unlisted ones last, sorted) and colours keyed by full order."""
    present = set(names.dropna())
    full_order = list(order or []) + sorted(present - set(order or []), key=str)
    return [name for name in full_order if name in present], arm_palette(full_order)


def _split_labels(table: pd.DataFrame, splits: Sequence[str]) -> list[str]:
    """Split name over the op range actually evaluated in it (e.g. "op 11–14"), read from the op rows."""
    ops = table.loc[table["op"].notna(), ["op", "split"]]
    labels = []
    for split in splits:
        in_split = ops.loc[ops["split"] == split, "op"]
        labels.append(f"{split}\nop {in_split.min()}–{in_split.max()}" if len(in_split) else str(split))
    return labels


def _grouped_bars(ax, panel: pd.DataFrame, x: str, xs: Sequence, x_labels: Sequence[str], hue: str,
                  groups: Sequence, colours: dict):
    width = 0.8 / len(groups)
    for i, group in enumerate(groups):
        bars = _unique(panel[panel[hue] == group], [x]).set_index(x).reindex(xs)
        value, lo, hi = (100 * bars[col].to_numpy(dtype=float) for col in ("value", "ci_lo", "ci_hi"))
        ax.bar(np.arange(len(xs)) + (i - (len(groups) - 1) / 2) * width, value, width, color=colours[group],
               label=str(group), yerr=[value - lo, hi - value], capsize=2, error_kw={"linewidth": 0.8})
    ax.set_xticks(np.arange(len(xs)), x_labels)


def _error_line(ax, x: pd.Series, line: pd.DataFrame, colour, label: str) -> None:
    value = 100 * line["value"].to_numpy(dtype=float)
    errors = [value - 100 * line["ci_lo"].to_numpy(dtype=float), 100 * line["ci_hi"].to_numpy(dtype=float) - value]
    ax.errorbar(x, value, yerr=errors, marker="o", markersize=4, capsize=3, color=colour, label=label)
