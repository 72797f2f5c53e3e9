"""`lab plot --eval EVAL_DIR [...] --out FIG_DIR [--runs RUN_DIR ...]`: the standard figures, PNG + PDF.

Thin on purpose: every figure is an `analysis.plots` function on the tidy tables. This module only gathers
the tables from disk (several evals become one table keyed by checkpoint, in command-line order, so the first
eval — the base — keeps the first colour everywhere) and names the files; `lab report` embeds the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.evaldir import EvalError, Evaluation, read_evals

# Training logs name metrics by stage ("train/loss"); the figure's panels use the bare names.
TRAIN_PREFIX = "train/"


def training_metrics(run_dirs: list[str | Path]) -> pd.DataFrame:
    """[run, step, metric, value] from each run's metrics.jsonl; the run is named after its directory."""
    from pretrain.metrics import read_metrics  # imports lightning: paid only when training curves are asked for

    names = [Path(run_dir).name for run_dir in run_dirs]
    if len(set(names)) < len(names):
        raise EvalError(f"run directories share a name: {names}")
    frames = []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "metrics.jsonl").exists():
            raise EvalError(f"{run_dir}: no metrics.jsonl (not a run directory?)")
        wide = read_metrics(run_dir)
        if wide.empty:
            raise EvalError(f"{run_dir}/metrics.jsonl: no metrics logged yet")
        long = wide.rename_axis("step").reset_index().melt(id_vars="step", var_name="metric").dropna()
        long["metric"] = long["metric"].str.removeprefix(TRAIN_PREFIX)
        frames.append(long.assign(run=run_dir.name))
    return pd.concat(frames, ignore_index=True)


def write_figures(evals: list[Evaluation], out: str | Path, runs: list[str | Path] = ()) -> dict[str, Path]:
    """Draw every figure for `evals` (and `runs`) into `out`; figure name -> PNG path (a PDF sits beside it)."""
    out = Path(out)
    order = [e.checkpoint for e in evals]
    results = pd.concat([e.results for e in evals], ignore_index=True)
    taxonomy = pd.concat([e.taxonomy for e in evals], ignore_index=True)
    plots.plot_passk_curves(results, metric="pass@k_verified", order=order, out=out / "passk_verified")
    plots.plot_passk_curves(results, metric="pass@k_answer", order=order, out=out / "passk_answer")
    plots.plot_split_bars(results, order=order, out=out / "split_bars")
    plots.plot_error_taxonomy(taxonomy, order=order, out=out / "error_taxonomy")
    names = ["passk_verified", "passk_answer", "split_bars", "error_taxonomy"]
    if runs:
        plots.plot_training_curves(training_metrics(list(runs)), out=out / "training_curves")
        names.append("training_curves")
    return {name: out / f"{name}.png" for name in names}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", required=True, nargs="+", type=Path, dest="evals",
                        help="eval directories (lab eval --out); the first is the base")
    parser.add_argument("--out", required=True, type=Path, help="figure directory (created)")
    parser.add_argument("--runs", nargs="*", default=[], type=Path, help="run directories for training curves")
    args = parser.parse_args(argv)
    blocked = next((p for p in (args.out, *args.out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        print(f"lab plot: error: {args.out}: cannot be a figure directory, {blocked} is a file; choose another --out",
              file=sys.stderr)
        return 2
    try:
        written = write_figures(read_evals(args.evals), args.out, args.runs)
    except ValueError as err:  # EvalError, or a table a figure cannot draw
        print(f"lab plot: error: {err}", file=sys.stderr)
        return 2
    for path in written.values():
        print(f"wrote {path} (+ .pdf)")
    return 0
