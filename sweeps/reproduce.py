"""`lab reproduce finding1|finding2|finding3|finding4|sizes|all --preset NAME [--cluster local|slurm] [--out DIR]`
and `lab sweep status --out DIR [--finding NAME]`.

One command per finding: run its sweep (skipping finished steps, resuming interrupted ones), then evaluate,
draw its figures and write `DIR/<finding>/report.md`, whose verdicts are computed from the evaluations. A step
that fails is reported with its log and does not stop its siblings; the report covers what finished.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.evaldir import read_eval
from analysis.report import build_report, compare, verdict_lines
from core.config import ConfigError, load
from core.provenance import provenance
from sweeps.executors import CLUSTERS, SweepResources
from sweeps.findings import FINDINGS, Finding
from sweeps.runner import run_sweep, status_table


def finding_section(finding: Finding, evals: dict, out: Path, seed: int) -> list[str]:
    """The finding's own figure, the table of its design, and each arm judged against its own reference."""
    arms = [arm for arm in finding.arms if arm.label in evals]
    design = pd.DataFrame([{"checkpoint": arm.label, **dict(arm.design)} for arm in arms])
    results = pd.concat([evals[arm.label].results for arm in arms], ignore_index=True).merge(design, on="checkpoint")
    parts = ["## This finding", "| " + " | ".join(design.columns) + " |", "|---" * len(design.columns) + "|"]
    for row in design.astype(object).where(design.notna(), "–").itertuples(index=False):
        parts.append("| " + " | ".join(str(v) for v in row) + " |")
    figure = out / f"{finding.name}_{finding.figure}"
    first_seed = results[results["seed"].fillna(0) == 0] if "seed" in results.columns else results
    try:
        if finding.figure == "exposure":
            plots.plot_exposure(first_seed, context="teachers", out=figure)
        elif finding.figure == "budget_split":
            plots.plot_budget_split(first_seed.dropna(subset=["beta"]), out=figure)
        elif finding.figure == "reward_variants":
            plots.plot_reward_variants(first_seed, out=figure)
        else:
            plots.plot_split_bars(first_seed, order=[a.label for a in arms], out=figure)
        parts.append(f"![{finding.figure}]({figure.name}.png)  \nFigures show seed 0; tables show every seed.")
    except ValueError as err:  # too few finished arms to draw it
        parts.append(f"(figure not drawn: {err})")
    # Arms judged against the finding's base are in the verdicts above already.
    paired = [compare(evals[a.label], evals[a.reference], [1, _top_k(evals)], n_boot=1000, level=0.95, seed=seed)
              for a in arms if a.reference in evals and a.reference != finding.base_label]
    paired = [table for table in paired if not table.empty]
    if paired:
        parts += ["### Each arm against its own reference", *verdict_lines(pd.concat(paired))]
    return parts


def _top_k(evals: dict) -> int:
    return min(int(e.results["k"].max()) for e in evals.values())


def reproduce(name: str, preset: str, out: Path, cluster: str, seeds: tuple[int, ...], parallel: int) -> int:
    resources = load(SweepResources, preset, "resources").by_stage()
    names = list(FINDINGS) if name == "all" else [name]
    failed_total = 0
    for finding_name in names:
        started = time.time()
        finding = FINDINGS[finding_name](preset, seeds)
        records = run_sweep(finding.sweep(), out / "runs", cluster=cluster, resources=resources, parallel=parallel)
        failed = [r for r in records if r.status in ("failed", "blocked")]
        failed_total += len(failed)
        evals = {arm.label: read_eval(arm.eval.out_dir(out / "runs")) for arm in finding.arms
                 if arm.eval.done(out / "runs")}
        target = out / finding_name
        target.mkdir(parents=True, exist_ok=True)
        if finding.base_label not in evals:
            print(f"{finding_name}: base arm did not finish; no report", file=sys.stderr)
        else:
            ordered = [evals[finding.base_label]] + [e for label, e in evals.items() if label != finding.base_label]
            runs = [dict(arm.eval.inputs)["--model"].out_dir(out / "runs") for arm in finding.arms if arm.label in evals]
            report = build_report(ordered, target / "report.md", runs=[r for r in runs if (r / "metrics.jsonl").exists()])
            extra = finding_section(finding, evals, target, seed=0)
            meta = provenance(preset=preset, cluster=cluster, seeds=list(seeds), wall_s=round(time.time() - started, 1))
            lines = [report, "", *extra, "", "## Sweep", f"`lab reproduce {finding_name} --preset {preset}`; "
                     f"commit {meta['commit']}, {meta['hardware']['cpu']}, wall {meta['wall_s']} s.",
                     "```", status_table(out / "runs", finding_name), "```"]
            (target / "report.md").write_text("\n".join(lines) + "\n")
            print(f"{finding_name}: {len(evals)}/{len(finding.arms)} arms evaluated; report {target / 'report.md'}")
        for record in failed:
            print(f"{finding_name}: {record.label} {record.status}: {record.error or ''} (log {record.log})",
                  file=sys.stderr)
    return 1 if failed_total else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("finding", choices=[*FINDINGS, "all"])
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--cluster", default="local", choices=[c for c in CLUSTERS if c != "debug"])
    parser.add_argument("--out", type=Path, default=None, help="default: runs/<preset>")
    parser.add_argument("--seeds", default="0", help="RL seeds, comma-separated")
    parser.add_argument("--parallel", type=int, default=1, help="local jobs at once")
    args = parser.parse_args(argv)
    out = args.out or Path("runs") / args.preset
    # SIGTERM (a scheduler, `kill`) should stop the local jobs too, as Ctrl-C does: both unwind the runner.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return reproduce(args.finding, args.preset, out, args.cluster,
                         tuple(int(s) for s in args.seeds.split(",")), args.parallel)
    except ConfigError as err:
        print(f"lab reproduce: error: {err}", file=sys.stderr)
        return 2


def sweep_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab sweep", description="state of a sweep's steps")
    parser.add_argument("action", choices=["status"])
    parser.add_argument("--out", type=Path, required=True, help="the --out of lab reproduce")
    parser.add_argument("--finding", default=None, help="default: every finding run under --out")
    args = parser.parse_args(argv)
    states = sorted((args.out / "runs" / "sweeps").glob("*.json"))
    names = [args.finding] if args.finding else [p.stem for p in states]
    if not names:
        print(f"{args.out}: no sweeps run here yet", file=sys.stderr)
        return 2
    for name in names:
        try:
            print(f"# {name}\n{status_table(args.out / 'runs', name)}")
        except FileNotFoundError as err:
            print(f"lab sweep: error: {err}", file=sys.stderr)
            return 2
    return 0
