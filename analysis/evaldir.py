"""An evaluation directory: the files `lab eval` writes and `lab plot` / `lab report` read.

    EVAL_DIR/samples.parquet    one row per completion (`SAMPLE_COLUMNS`), its text included: the evidence
                                any verdict can be audited against
    EVAL_DIR/results.parquet    tidy pass@k with bootstrap CIs (`analysis.tables.RESULT_COLUMNS`)
    EVAL_DIR/taxonomy.parquet   error-class shares (`analysis.tables.TAXONOMY_COLUMNS`)
    EVAL_DIR/summary.json       the request, seeds, provenance, throughput and headline numbers

Apart from evaluate.py so that plotting and reporting never import torch. The tables are derived from the
samples here, in one function, so an eval directory is consistent by construction. The directory is written
under a temporary sibling and renamed, so one that exists is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.tables import SAMPLE_COLUMNS as TABLE_SAMPLE_COLUMNS
from analysis.tables import results_table, taxonomy_table

FORMAT = "interplay-lab-eval/1"
SAMPLES, RESULTS, TAXONOMY, SUMMARY = "samples.parquet", "results.parquet", "taxonomy.parquet", "summary.json"

SAMPLE_COLUMNS = (*TABLE_SAMPLE_COLUMNS, "process_acc", "length", "stopped", "mode", "completion")
# The verifier's per-completion counts and the problem's arithmetic operations, kept beside each sample so an
# error taxonomy or an arithmetic-ops breakdown can be drawn from any eval dir; older eval dirs lack them.
STEP_COUNTERS = ("missing", "extra", "dependency_errors", "value_errors", "operation_errors", "hallucinated",
                 "malformed", "arithmetic_errors")
DIAGNOSTIC_COLUMNS = ("arith_ops", *STEP_COUNTERS)
# Greedy accuracy is pass@1 of the one greedy completion, stored under its own metric names.
GREEDY_METRICS = {"pass@k_answer": "greedy_answer", "pass@k_verified": "greedy_verified"}


class EvalError(ValueError):
    """An input of an evaluation, plot or report is missing or does not fit; nothing was written."""


@dataclass(frozen=True)
class Evaluation:
    path: Path
    samples: pd.DataFrame
    results: pd.DataFrame
    taxonomy: pd.DataFrame
    summary: dict

    @property
    def checkpoint(self) -> str:
        return self.summary["checkpoint"]

    @property
    def ladder(self) -> dict[str, tuple[int, int]]:
        return {name: tuple(span) for name, span in self.summary["request"]["ladder"].items()}

    def sampled(self) -> pd.DataFrame:
        return self.samples[self.samples["mode"] == "sampled"]


def tabulate(samples: pd.DataFrame, ladder: dict[str, tuple[int, int]], *, n_boot: int, level: float,
             seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, taxonomy) of a per-sample table: pass@k and taxonomy over sampled rows, plus greedy rows."""
    missing = [col for col in SAMPLE_COLUMNS if col not in samples.columns]
    if missing:
        raise EvalError(f"per-sample table lacks columns {missing}")
    sampled, greedy = samples[samples["mode"] == "sampled"], samples[samples["mode"] == "greedy"]
    results = [results_table(sampled, ladder, n_boot=n_boot, level=level, seed=seed)]
    if len(greedy):
        results.append(results_table(greedy, ladder, ks=[1], n_boot=n_boot, level=level, seed=seed)
                       .assign(metric=lambda t: t["metric"].map(GREEDY_METRICS)))
    return pd.concat(results, ignore_index=True), taxonomy_table(sampled, ladder)


def write_eval(out: str | Path, samples: pd.DataFrame, summary: dict, *, n_boot: int, level: float,
               seed: int) -> dict:
    """Derive the tables from `samples`, write a complete eval directory at `out` (which must not exist).

    `summary` must carry `checkpoint` and `request.ladder` (split -> [lo, hi]); `format` and `headline` are
    added here. Returns the summary as written.
    """
    out = Path(out)
    if out.exists():
        raise EvalError(f"{out}: already exists")
    ladder = {name: tuple(span) for name, span in summary["request"]["ladder"].items()}
    results, taxonomy = tabulate(samples, ladder, n_boot=n_boot, level=level, seed=seed)
    summary = {"format": FORMAT, **summary, "headline": headline(results)}
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        kept = list(SAMPLE_COLUMNS) + [column for column in DIAGNOSTIC_COLUMNS if column in samples.columns]
        samples.loc[:, kept].to_parquet(tmp / SAMPLES, index=False)
        results.to_parquet(tmp / RESULTS, index=False)
        taxonomy.to_parquet(tmp / TAXONOMY, index=False)
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def headline(results: pd.DataFrame) -> dict:
    """context -> split -> {pass@1, pass@K (largest k), their answer-only twins, greedy}: verified unless named."""
    splits = results[results["op"].isna()]
    top_k = int(splits.loc[splits["metric"] == "pass@k_verified", "k"].max())
    names = {("pass@k_verified", 1): "pass@1", ("pass@k_verified", top_k): f"pass@{top_k}",
             ("pass@k_answer", 1): "pass@1_answer", ("pass@k_answer", top_k): f"pass@{top_k}_answer",
             ("greedy_verified", 1): "greedy", ("greedy_answer", 1): "greedy_answer"}
    out: dict = {}
    for (context, split), rows in splits.groupby(["context", "split"], sort=False):
        values = {(row.metric, row.k): round(float(row.value), 4) for row in rows.itertuples(index=False)}
        out.setdefault(context, {})[split] = {"n_problems": int(rows["n_problems"].iat[0]),
                                              **{name: values[key] for key, name in names.items() if key in values}}
    return out


def read_summary(path: str | Path) -> dict:
    path = Path(path)
    summary_path = path / SUMMARY
    if not summary_path.exists():
        raise EvalError(f"{path}: not an eval directory (no {SUMMARY}); create one with `lab eval`")
    summary = json.loads(summary_path.read_text())
    if summary.get("format") != FORMAT:
        raise EvalError(f"{summary_path}: unknown format {summary.get('format')!r}, expected {FORMAT!r}")
    return summary


def read_eval(path: str | Path) -> Evaluation:
    path = Path(path)
    summary = read_summary(path)
    tables = {}
    for name in (SAMPLES, RESULTS, TAXONOMY):
        if not (path / name).exists():
            raise EvalError(f"{path}: {name} is missing (eval directory damaged?)")
        tables[name] = pd.read_parquet(path / name)
    return Evaluation(path, tables[SAMPLES], tables[RESULTS], tables[TAXONOMY], summary)


def read_evals(paths: list[str | Path]) -> list[Evaluation]:
    """Several evaluations for one figure or report: names must be distinct and ladders equal."""
    evals = [read_eval(path) for path in paths]
    names = [e.checkpoint for e in evals]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise EvalError(f"several evals are named {duplicated}; give each a distinct `lab eval --name`")
    ladders = {json.dumps(e.ladder) for e in evals}
    if len(ladders) > 1:
        raise EvalError(f"evals use different op ladders ({sorted(ladders)}); splits would not be comparable")
    return evals
