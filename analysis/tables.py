"""The tidy results schema every figure and report reads.

One row per checkpoint × op × context × k × metric, plus rows pooled over an op ladder's splits (op = <NA>),
so a figure is a filter on one table rather than its own aggregation code. Pass@k is computed per problem
first and only then averaged, with a bootstrap over problems, because a problem (not a sample) is the
independent unit. Split rows pool problems, not ops: each problem weighs the same, which equals the op
average when every op has the same number of problems, as in the paper's 200 per op.

Answer-only and process-verified pass@k use the same estimator and the same k grid, so their gap measures
reward hacking and nothing else.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.passk import ks_for, pass_at_k
from analysis.stats import bootstrap_ci

Ladder = Mapping[str, tuple[int, int]]

PAPER_LADDER: Ladder = {"ID": (2, 10), "edge": (11, 14), "hard": (15, 20)}

# metric name -> the per-sample flag counted as "correct"
METRICS = {"pass@k_answer": "answer_correct", "pass@k_verified": "verified"}

ERROR_CLASSES = ("verified", "answer_right_process_wrong", "missing_node", "dependency_mismatch",
                 "value_error", "extra_nodes", "answer_mismatch", "unparseable")

SAMPLE_COLUMNS = ("checkpoint", "context", "op", "problem_id", "sample_idx", "answer_correct", "verified", "error")

RESULT_COLUMNS = ("checkpoint", "op", "context", "split", "k", "metric", "value", "ci_lo", "ci_hi",
                  "n_problems", "n_samples")

TAXONOMY_COLUMNS = ("checkpoint", "op", "context", "split", "error", "count", "fraction", "n_samples")

_PROBLEM_KEYS = ["checkpoint", "context", "op", "problem_id"]


def split_of(ops, ladder: Ladder) -> pd.Series:
    """Split name of each op under `ladder` (name -> inclusive (lo, hi)); <NA> for ops outside every split."""
    _check_ladder(ladder)
    ops = pd.Series(ops)
    split = pd.Series(pd.NA, index=ops.index, dtype="object")
    for name, (lo, hi) in ladder.items():
        split[ops.between(lo, hi)] = name
    return split


def per_problem_pass_at_k(samples: pd.DataFrame, ks: Sequence[int] | None = None) -> pd.DataFrame:
    """Long table of per-problem pass@k: [checkpoint, context, op, problem_id, n_samples, k, metric, value].

    `ks` defaults to `ks_for` of the smallest per-problem sample count, one grid for every checkpoint so arms
    stay comparable. This is also the input for paired arm-minus-base comparisons (`stats.paired_diff_ci`).
    """
    _check_samples(samples)
    counts = samples.groupby(_PROBLEM_KEYS, sort=True).agg(
        n_samples=("sample_idx", "size"),
        **{f"c_{metric}": (flag, "sum") for metric, flag in METRICS.items()},
    ).reset_index()
    ks = list(ks) if ks is not None else ks_for(int(counts["n_samples"].min()))
    parts = []
    for metric in METRICS:
        for k in ks:
            part = counts[_PROBLEM_KEYS + ["n_samples"]].copy()
            part["k"] = k
            part["metric"] = metric
            part["value"] = pass_at_k(counts["n_samples"].to_numpy(), counts[f"c_{metric}"].to_numpy(), k)
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def results_table(samples: pd.DataFrame, ladder: Ladder, *, ks: Sequence[int] | None = None,
                  n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The tidy results table (`RESULT_COLUMNS`): per-op rows, then rows pooled per split of `ladder`.

    value is the mean per-problem pass@k; [ci_lo, ci_hi] a percentile bootstrap over problems at `level`.
    Each (checkpoint, context, op-or-split) group draws its resamples from a seed derived from `seed` and the
    group's name, so adding or removing checkpoints never changes another group's interval.
    """
    per_problem = per_problem_pass_at_k(samples, ks)
    wide = per_problem.pivot(index=_PROBLEM_KEYS + ["n_samples"], columns=["metric", "k"], values="value")
    matrix, stat_columns = wide.to_numpy(), list(wide.columns)
    problems = wide.index.to_frame(index=False)
    problems["split"] = split_of(problems["op"], ladder)

    rows = []
    for (checkpoint, context, op), at in problems.groupby(["checkpoint", "context", "op"]).indices.items():
        keys = dict(checkpoint=checkpoint, context=context, op=op, split=problems["split"].iat[at[0]])
        rows += _summary_rows(matrix[at], problems["n_samples"].to_numpy()[at], stat_columns, keys,
                              n_boot, level, seed)
    for (checkpoint, context, split), at in problems.groupby(["checkpoint", "context", "split"]).indices.items():
        keys = dict(checkpoint=checkpoint, context=context, op=pd.NA, split=split)
        rows += _summary_rows(matrix[at], problems["n_samples"].to_numpy()[at], stat_columns, keys,
                              n_boot, level, seed)
    table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    table["op"] = table["op"].astype("Int64")
    return _sort(table, ladder, ["metric", "k"])


def taxonomy_table(samples: pd.DataFrame, ladder: Ladder) -> pd.DataFrame:
    """Share of samples in each error class (`TAXONOMY_COLUMNS`), per op and pooled per split.

    Every class appears in every group, with zeros, so stacked bars line up across checkpoints.
    """
    _check_samples(samples)
    per_op = (samples.groupby(["checkpoint", "context", "op", "error"]).size()
              .unstack("error", fill_value=0)
              .reindex(columns=list(ERROR_CLASSES), fill_value=0)
              .stack().rename("count").reset_index())
    per_op["split"] = split_of(per_op["op"], ladder).to_numpy()
    per_split = per_op.groupby(["checkpoint", "context", "split", "error"])["count"].sum().reset_index()
    table = pd.concat([per_op, per_split.assign(op=pd.NA)], ignore_index=True)
    table["n_samples"] = table.groupby(["checkpoint", "context", "op", "split"], dropna=False)["count"].transform("sum")
    table["fraction"] = table["count"] / table["n_samples"]
    table["op"] = table["op"].astype("Int64")
    table["error"] = pd.Categorical(table["error"], categories=ERROR_CLASSES)
    table = _sort(table[list(TAXONOMY_COLUMNS)], ladder, ["error"])
    table["error"] = table["error"].astype(str)
    return table


def _summary_rows(values: np.ndarray, n_samples: np.ndarray, stat_columns: list, keys: dict, n_boot: int,
                  level: float, seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, zlib.crc32("|".join(map(str, keys.values())).encode())])
    value, lo, hi = bootstrap_ci(values, n_boot=n_boot, level=level, seed=rng)
    shared = dict(keys, n_problems=len(values), n_samples=int(n_samples.sum()))
    return [dict(shared, metric=metric, k=int(k), value=v, ci_lo=l, ci_hi=h)
            for (metric, k), v, l, h in zip(stat_columns, value, lo, hi)]


def _sort(table: pd.DataFrame, ladder: Ladder, inner: list[str]) -> pd.DataFrame:
    # Op rows before split rows, splits in ladder order (ID, edge, hard), not alphabetical.
    split_rank = {name: rank for rank, name in enumerate(ladder)}
    table = table.assign(_level=table["op"].isna(), _split=table["split"].map(split_rank))
    table = table.sort_values(["checkpoint", "context", "_level", "op", "_split", *inner],
                              na_position="last", kind="stable")
    return table.drop(columns=["_level", "_split"]).reset_index(drop=True)


def _check_ladder(ladder: Ladder) -> None:
    spans = sorted((lo, hi, name) for name, (lo, hi) in ladder.items())
    for lo, hi, name in spans:
        if lo > hi:
            raise ValueError(f"ladder split {name!r} has lo={lo} > hi={hi}")
    for (_, hi_a, name_a), (lo_b, _, name_b) in zip(spans, spans[1:]):
        if lo_b <= hi_a:
            raise ValueError(f"ladder splits {name_a!r} and {name_b!r} overlap")


def _check_samples(samples: pd.DataFrame) -> None:
    missing = [col for col in SAMPLE_COLUMNS if col not in samples.columns]
    if missing:
        raise ValueError(f"per-sample table lacks columns {missing}")
    unknown = sorted(set(samples["error"]) - set(ERROR_CLASSES), key=str)
    if unknown:
        raise ValueError(f"unknown error classes {unknown}; known: {list(ERROR_CLASSES)}")
    # Inconsistent flags would make pass@k and the taxonomy disagree about the same samples.
    if ((samples["error"] == "verified") != samples["verified"].astype(bool)).any():
        raise ValueError("'verified' flag disagrees with error == 'verified'")
    if (samples["verified"].astype(bool) & ~samples["answer_correct"].astype(bool)).any():
        raise ValueError("a sample is verified but its answer is not correct")
    duplicated = samples.duplicated(_PROBLEM_KEYS + ["sample_idx"])
    if duplicated.any():
        first = samples.loc[duplicated, _PROBLEM_KEYS + ["sample_idx"]].iloc[0].to_dict()
        raise ValueError(f"{int(duplicated.sum())} duplicated samples, e.g. {first}")
