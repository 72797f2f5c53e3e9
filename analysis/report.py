"""`lab report --eval BASE [ARM ...] --out REPORT.md [--runs RUN_DIR ...]`: a markdown report on a set of evals.

Every number, verdict lines included, is computed here from the eval directories; no sentence about a result
is written by hand, so a report cannot claim what its data does not show. A verdict compares an arm with the
base (the first --eval) on the problems both evaluated, with a paired bootstrap over those problems
(`stats.paired_diff_ci`), which is much tighter than comparing two separate intervals; "up" or "down" is said
only when the interval excludes zero. The same comparison rows feed the differences table and the verdict
lines, so the two always agree.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.evaldir import Evaluation, read_evals
from analysis.figures import write_figures
from analysis.stats import paired_diff_ci
from analysis.tables import ERROR_CLASSES, per_problem_pass_at_k, split_of
from core.provenance import git_commit

METRIC = "pass@k_verified"  # the paper's pass@k counts a sample only when its process is verified
_PROBLEM = ["context", "op", "problem_id"]


def common_top_k(evals: list[Evaluation]) -> int:
    """The largest k every eval reports: the pass@K that can be compared across all of them."""
    return min(int(e.results.loc[e.results["metric"] == METRIC, "k"].max()) for e in evals)


def compare(arm: Evaluation, base: Evaluation, ks: list[int], *, n_boot: int, level: float,
            seed: int = 0) -> pd.DataFrame:
    """arm − base pass@k per context × split on shared problems: [arm, base, context, split, k, delta, ci_lo,
    ci_hi, arm_value, base_value, n_shared]."""
    per_problem = []
    for e in (arm, base):
        table = per_problem_pass_at_k(e.sampled(), ks)
        per_problem.append(table[table["metric"] == METRIC].pivot(index=_PROBLEM, columns="k", values="value"))
    shared = per_problem[0].index.intersection(per_problem[1].index)
    arm_values, base_values = (table.loc[shared] for table in per_problem)
    splits = split_of(shared.get_level_values("op"), arm.ladder).to_numpy()
    contexts = shared.get_level_values("context").to_numpy()
    rows = []
    for context in dict.fromkeys(contexts):
        for split in arm.ladder:
            at = (contexts == context) & (splits == split)
            if not at.any():
                continue
            # A seed per comparison, so adding an arm or a split never moves another comparison's interval.
            rng = np.random.default_rng([seed, zlib.crc32(f"{arm.checkpoint}|{base.checkpoint}|{context}|{split}"
                                                          .encode())])
            delta, lo, hi = paired_diff_ci(arm_values[at].to_numpy(), base_values[at].to_numpy(),
                                           n_boot=n_boot, level=level, seed=rng)
            for i, k in enumerate(ks):
                rows.append(dict(arm=arm.checkpoint, base=base.checkpoint, context=context, split=split, k=k,
                                 delta=delta[i], ci_lo=lo[i], ci_hi=hi[i],
                                 arm_value=arm_values[at][k].mean(), base_value=base_values[at][k].mean(),
                                 n_shared=int(at.sum())))
    return pd.DataFrame(rows)


def direction(lo: float, hi: float) -> str:
    return "up" if lo > 0 else "down" if hi < 0 else "no clear change"


def verdict_lines(comparisons: pd.DataFrame) -> list[str]:
    """One line per arm × context × k, naming every split's change with its paired CI."""
    lines = []
    for (arm, base, context, k), rows in comparisons.groupby(["arm", "base", "context", "k"], sort=False):
        changes = [f"{row.split} {_pp(row.delta)} pp [{_pp(row.ci_lo)}, {_pp(row.ci_hi)}] "
                   f"({direction(row.ci_lo, row.ci_hi)}, n={row.n_shared})" for row in rows.itertuples()]
        clear = [f"{row.split} {direction(row.ci_lo, row.ci_hi)}" for row in rows.itertuples()
                 if direction(row.ci_lo, row.ci_hi) != "no clear change"]
        summary = "; ".join(clear) if clear else "no split changed clearly"
        lines.append(f"- **{arm} vs {base}** · {context} · pass@{k}: " + ", ".join(changes) + f" → {summary}.")
    return lines


def build_report(evals: list[Evaluation], out: str | Path, runs: list[str | Path] = (), seed: int = 0) -> str:
    """Write the report (and its figures, beside it in `<stem>_figures/`); returns the markdown."""
    out = Path(out)
    base, arms = evals[0], evals[1:]
    top_k = common_top_k(evals)
    ks = sorted({1, top_k})
    config = base.summary["request"]["config"]
    comparisons = [compare(arm, base, ks, n_boot=config["n_boot"], level=config["level"], seed=seed)
                   for arm in arms]
    figures = write_figures(evals, out.parent / f"{out.stem}_figures", runs)

    level = f"{100 * config['level']:g}%"
    parts = [
        "# Evaluation report",
        f"Base: **{base.checkpoint}**; arms: {', '.join(f'**{a.checkpoint}**' for a in arms) or 'none'}. "
        f"pass@k counts a sample only when its process is verified (answer-only pass@k is labelled so); values "
        f"in %, {level} percentile-bootstrap intervals over problems in brackets. Splits: "
        + ", ".join(f"{name} op {lo}–{hi}" for name, (lo, hi) in base.ladder.items()) + ".",
        "## Verdicts",
    ]
    unpaired = [arm.checkpoint for arm, table in zip(arms, comparisons) if table.empty]
    differences = pd.concat([table for table in comparisons if not table.empty] or [pd.DataFrame()])
    if not differences.empty:
        parts += [f"Arm − base in percentage points on the problems both evaluated (paired bootstrap, {level}); "
                  "'up'/'down' only where the interval excludes 0.",
                  "\n".join(verdict_lines(differences)),
                  "### Paired differences", _differences_table(differences)]
    parts += [f"- **{name} vs {base.checkpoint}**: no problem in common (another corpus or split?), so no "
              "paired comparison." for name in unpaired]
    if not arms:
        parts.append("One evaluation only: nothing to compare.")
    parts += ["## Results per split", _split_table(evals, top_k),
              "## Results per op", _op_table(evals, top_k),
              "## Error taxonomy (share of sampled completions, %)", _taxonomy_table(evals),
              "## Figures",
              "\n\n".join(f"![{name}]({path.relative_to(out.parent).as_posix()})" for name, path in figures.items()),
              "## Provenance", _provenance_table(evals),
              f"Report generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at commit {git_commit()}."]
    markdown = "\n\n".join(parts) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    return markdown


def _differences_table(differences: pd.DataFrame) -> str:
    rows = [[r.arm, r.base, r.context, r.split, f"pass@{r.k}", _pct(r.arm_value), _pct(r.base_value),
             f"{_pp(r.delta)} [{_pp(r.ci_lo)}, {_pp(r.ci_hi)}]", r.n_shared]
            for r in differences.itertuples()]
    return _markdown(["arm", "base", "context", "split", "metric", "arm", "base", "Δ (pp)", "shared problems"],
                     rows)


def _split_table(evals: list[Evaluation], top_k: int) -> str:
    columns = [(METRIC, 1, "pass@1"), (METRIC, top_k, f"pass@{top_k}"), ("pass@k_answer", 1, "answer pass@1"),
               ("pass@k_answer", top_k, f"answer pass@{top_k}"), ("greedy_verified", 1, "greedy")]
    return _results_table(evals, columns, level="split")


def _op_table(evals: list[Evaluation], top_k: int) -> str:
    columns = [(METRIC, 1, "pass@1"), (METRIC, top_k, f"pass@{top_k}"), ("greedy_verified", 1, "greedy")]
    return _results_table(evals, columns, level="op")


def _results_table(evals: list[Evaluation], columns: list[tuple[str, int, str]], level: str) -> str:
    rows = []
    for e in evals:
        table = e.results[e.results["op"].isna() if level == "split" else e.results["op"].notna()]
        for (context, key), group in table.groupby(["context", level], sort=False):
            cells = {(r.metric, r.k): f"{_pct(r.value)} [{_pct(r.ci_lo)}, {_pct(r.ci_hi)}]"
                     for r in group.itertuples()}
            rows.append([e.checkpoint, context, key, int(group["n_problems"].iat[0]),
                         *(cells.get((metric, k), "–") for metric, k, _ in columns)])
    return _markdown(["checkpoint", "context", level, "problems", *(label for *_, label in columns)], rows)


def _taxonomy_table(evals: list[Evaluation]) -> str:
    rows = []
    for e in evals:
        splits = e.taxonomy[e.taxonomy["op"].isna()]
        for (context, split), group in splits.groupby(["context", "split"], sort=False):
            share = group.set_index("error")["fraction"]
            rows.append([e.checkpoint, context, split, *(_pct(share.get(error, 0.0)) for error in ERROR_CLASSES)])
    return _markdown(["checkpoint", "context", "split", *(e.replace("_", " ") for e in ERROR_CLASSES)], rows)


def _provenance_table(evals: list[Evaluation]) -> str:
    rows = []
    for e in evals:
        request, prov = e.summary["request"], e.summary["provenance"]
        config, hardware = request["config"], prov["hardware"]
        device = hardware.get("gpu") or f"{hardware['cpu']} ({hardware.get('threads', hardware['cpus'])} threads)"
        samples = f"{config['samples']} at T={config['temperature']:g}" + (" + greedy" if config["greedy"] else "")
        rows.append([e.checkpoint, f"`{e.path}`", f"`{request['model']}`", f"`{request['data']}` ({config['split']})",
                     sum(n for ops in e.summary["problems"].values() for n in ops.values()), samples,
                     e.summary["seeds"]["sampling"], prov["commit"][:12], device, f"{prov['wall_s']:.0f} s",
                     f"{prov['throughput']['samples_per_s']:,.1f}"])
    return _markdown(["checkpoint", "eval dir", "model", "data (split)", "problems", "samples/problem", "seed",
                      "commit", "hardware", "wall", "samples/s"], rows)


def _markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}"


def _pp(fraction: float) -> str:
    return f"{100 * fraction:+.1f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", required=True, nargs="+", type=Path, dest="evals",
                        help="eval directories (lab eval --out); the first is the base the others are compared to")
    parser.add_argument("--out", required=True, type=Path, help="markdown file to write")
    parser.add_argument("--runs", nargs="*", default=[], type=Path, help="run directories for training curves")
    parser.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap")
    args = parser.parse_args(argv)
    try:
        build_report(read_evals(args.evals), args.out, args.runs, args.seed)
    except ValueError as err:  # EvalError, or tables a figure cannot draw
        print(f"lab report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} and {args.out.parent / (args.out.stem + '_figures')}/")
    return 0
