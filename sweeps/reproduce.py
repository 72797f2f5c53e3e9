"""`lab reproduce finding1|finding2|finding3|finding4|sizes|all --preset NAME [--seeds 0,1,...] [--cluster local|slurm]
[--out DIR] [--parallel N] [--ladder FILE] [--dry-run]` and `lab sweep status --out DIR [--finding NAME]`.

One command per finding: print the plan (every step, the CPU time it should take from the preset's measured
rates, where the logs go), run the sweep (skipping finished steps, resuming interrupted ones) with a status line
every minute, then evaluate, draw its figures and write `DIR/<finding>/report.md`: the paper's claims judged
one by one, each arm against its reference, and (finding 3) realised against planned compute. A step that fails
is reported with its log and does not stop its siblings; the report covers what finished. `--dry-run` prints
the plan and exits, so a cluster run can be sized before it is submitted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import yaml

from analysis import plots
from analysis.claims import claims_table, group_of, judge
from analysis.config import load_ladder
from analysis.evaldir import read_eval
from analysis.report import build_report, compare, verdict_lines
from core.config import ConfigError, load, preset_path
from core.lock import LockError, exclusive
from core.provenance import provenance
from rl.budget import ComputeLedger
from sweeps.executors import CLUSTERS, SweepResources
from sweeps.findings import FINDINGS, Finding, FindingsConfig
from sweeps.plan import Step, expected_seconds, step_work
from sweeps.runner import (
    StepRecord,
    duration,
    live_status,
    ranks_of,
    run_sweep,
    state_path,
    status_table,
    stop_jobs_on_sigterm,
    summarize,
    wall_estimate,
)

COMPUTE_TOLERANCE = 0.05  # realised compute of a finding-3 arm must lie within ±5 % of its plan
STATUS_EVERY_S = 60.0


# ---- the plan --------------------------------------------------------------------------------------------------
def plan_state(step: Step, root: Path) -> str:
    """"done", "done as <twin>" (a finished step with its key under another label, which it will adopt) or
    "to run"."""
    if step.done(root):
        return "done"
    twin = step.finished_twin(root)
    return f"done as {twin.name}" if twin else "to run"


def plan_text(finding: Finding, preset: str, root: Path, parallel: int, cluster: str = "local",
              resources: dict | None = None) -> tuple[str, dict[str, float | None], set[str]]:
    """The plan as printed, each step's expected seconds (by key) for the live ETA, and the keys of the steps it
    will run (neither done nor adopting a finished twin)."""
    cfg = load(FindingsConfig, preset, "findings")
    expected, lines, to_run = {}, [], set()
    total, unknown = 0.0, 0
    steps = finding.sweep().steps()
    width = max(len(s.label) for s in steps)
    lines.append(f"{'#':>3}  {'step':<{width}}  {'stage':<8} {'work':>18} {'expected':>9}  state")
    for i, step in enumerate(steps, 1):
        amount, unit = step_work(step)
        seconds = expected_seconds(step, cfg.rates)
        state = plan_state(step, root)
        expected[step.key] = seconds
        if state == "to run":
            to_run.add(step.key)
            total += seconds or 0.0
            unknown += seconds is None
        lines.append(f"{i:>3}  {step.label:<{width}}  {step.command:<8} {f'{amount:,.0f} {unit}':>18} "
                     f"{duration(seconds) if seconds is not None else '?':>9}  {state}")
    wall = plan_wall(steps, {k: expected[k] for k in to_run}, cluster, parallel, resources or {})
    head = [f"{finding.name} at preset {preset}: {len(steps)} steps ({len(to_run)} to run), {len(finding.arms)} evaluated "
            f"arms, {len(finding.claims)} claims of the paper to judge.",
            "Op ladder: " + ", ".join(f"{name} {lo}–{hi}" for name, (lo, hi) in finding.ladder.items())
            + {"preset": " (the preset's `ladder:`)", "given": " (--ladder)"}.get(
                finding.ladder_source, f" (measured on the base: {finding.ladder_source}, findings.calibrated_ladder)"),
            f"Expected CPU time of the steps to run: {duration(total)}"
            + (f" (+ {unknown} step(s) whose stage has no measured rate in {preset_path(preset).name})" if unknown else "")
            + f"; {wall}.",
            f"Rates: {preset_path(preset)} `findings.rates`" + (f" ({cfg.rates.source})" if cfg.rates.source else "")
            + "; they are one job per core on that machine, so a loaded machine runs slower."]
    tail = [f"Logs: {root / 'logs'}/<stage>/<job id>_0_log.err (and .out); step outputs: {root}/<stage>/<label>-<key>.",
            f"State: {state_path(root, finding.name)}; `lab sweep status --out {root.parent}` shows it from another "
            "shell, live or after the fact."]
    return "\n".join(head + [""] + lines + [""] + tail), expected, to_run


def plan_wall(steps: list[Step], to_run: dict[str, float | None], cluster: str, parallel: int,
              resources: dict) -> str:
    """The wall-time estimate of the steps to run (key -> expected CPU seconds), worded for where they run."""
    left = {key: seconds for key, seconds in to_run.items() if seconds is not None}
    ranks = {s.key: ranks_of(s, resources) for s in steps}
    inputs = {s.key: [u.key for _, u in s.inputs] for s in steps}
    if cluster == "slurm":
        return (f"on SLURM: about {duration(wall_estimate(left, ranks, inputs, None))} of wall time if the cluster "
                "starts every ready job at once (the longest chain of steps; queueing adds to it)")
    return f"with --parallel {parallel}: about {duration(wall_estimate(left, ranks, inputs, parallel))} of wall time"


class Ticker:
    """The live status: a line when a step starts or ends, and a summary with the ETA every `every` seconds."""

    def __init__(self, name: str, parallel: int | None, every: float):
        self.name, self.parallel, self.every = name, parallel, every
        self.seen: dict[str, str] = {}
        self.last = 0.0

    def __call__(self, records: list[StepRecord]) -> None:
        stamp = time.strftime("%H:%M:%S")
        ended = False
        for r in records:
            if self.seen.get(r.key) != r.status:
                if r.status in ("done", "failed", "blocked") or (r.status == "running" and r.key in self.seen):
                    took = f" in {duration(r.ended - r.started)}" if r.ended and r.started else ""
                    expected = f" (expected {duration(r.expected_s)})" if r.expected_s and r.status != "running" else ""
                    note = f": {r.error} (log {r.log})" if r.status in ("failed", "blocked") else ""
                    print(f"[{stamp}] {self.name}: {r.label} {r.status}{took}{expected}{note}", flush=True)
                    ended |= r.status != "running"
                self.seen[r.key] = r.status
        if ended or time.time() - self.last >= self.every:  # a start alone gets its line, not a summary
            running = [(r.label, progress) for r in records for status, progress in [live_status(r)]
                       if status == "running"]
            print(f"[{stamp}] {self.name}: {summarize(records, self.parallel)}; running: "
                  + (", ".join(label + (f" {100 * p:.0f}%" if p is not None else "") for label, p in running)
                     or "none"), flush=True)
            self.last = time.time()


# ---- the report -----------------------------------------------------------------------------------------------
def finding_section(finding: Finding, evals: dict, out: Path, seed: int) -> list[str]:
    """The finding's own figure, the table of its design, and each arm judged against its own reference."""
    arms = [arm for arm in finding.arms if arm.label in evals]
    design = pd.DataFrame([{"checkpoint": arm.label, **dict(arm.design)} for arm in arms])
    results = tidy_results(finding, evals)
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
            variants = list(dict.fromkeys(dict(arm.design)["variant"] for arm in arms))  # base, then the paper's
            plots.plot_reward_variants(first_seed, order=variants, out=figure)
        else:
            plots.plot_split_bars(first_seed, order=[a.label for a in arms if a.label in set(first_seed["checkpoint"])],
                                  out=figure)
        parts.append(f"![{finding.figure}]({figure.name}.png)  \nFigures show seed 0 with 95% bootstrap intervals "
                     "over problems; the claims table pools every seed.")
    except ValueError as err:  # too few finished arms to draw it
        parts.append(f"(figure not drawn: {err})")
    if "top_share_pct" in results.columns and results["top_share_pct"].nunique() > 1:
        headroom = results[results["checkpoint"].str.startswith(("base", "rl-edge")) & (results["seed"].fillna(0) == 0)]
        headroom = headroom.assign(exposure_pct=headroom["top_share_pct"],
                                   arm=headroom["checkpoint"].map(lambda c: "base" if c.startswith("base") else "RL edge"))
        try:
            top = "–".join(map(str, dict.fromkeys(finding.headroom_ops)))
            plots.plot_exposure(headroom, context=headroom["context"].iat[0], out=out / f"{finding.name}_headroom",
                                xlabel=f"share of op {top} in pre-training (%)")
            parts.append(f"![headroom]({finding.name}_headroom.png)  \nHeadroom sweep: x is the share of the ID "
                         "range's upper third in pre-training (%).")
        except ValueError as err:
            parts.append(f"(headroom figure not drawn: {err})")
    # Arms judged against the finding's base are in the verdicts above already.
    paired = [compare(evals[a.label], evals[a.reference], [1, _top_k(evals)], n_boot=1000, level=0.95, seed=seed)
              for a in arms if a.reference in evals and a.reference != finding.base_label]
    paired = [table for table in paired if not table.empty]
    if paired:
        parts += ["### Each arm against its own reference", *verdict_lines(pd.concat(paired))]
    return parts


def tidy_results(finding: Finding, evals: dict) -> pd.DataFrame:
    """Every finished arm's results table with its design columns: the finding's tidy results table."""
    arms = [arm for arm in finding.arms if arm.label in evals]
    design = pd.DataFrame([{"checkpoint": arm.label, "group": group_of(arm.label), **dict(arm.design)} for arm in arms])
    return pd.concat([evals[arm.label].results for arm in arms], ignore_index=True).merge(design, on="checkpoint")


def claims_section(finding: Finding, evals: dict, target: Path, seed: int) -> list[str]:
    if not finding.claims:
        return ["## The paper's claims", "This finding goes beyond the paper; it has no claims of the paper to judge."]
    groups: dict[str, list] = {}
    for arm in finding.arms:
        if arm.label in evals:
            groups.setdefault(group_of(arm.label), []).append(evals[arm.label])
    config = evals[finding.base_label].summary["request"]["config"] if finding.base_label in evals else {}
    verdicts = judge(finding.claims, groups, n_boot=config.get("n_boot", 2000), level=0.95, seed=seed)
    verdicts.to_csv(target / "claims.csv", index=False)
    counts = verdicts["verdict"].value_counts()
    seeds = sorted({len(g) for name, g in groups.items() if any(e.checkpoint != name for e in g)})  # seeded arms
    return ["## The paper's claims",
            f"Each claim compares two arm groups on the problems both evaluated (process-verified pass@k, in "
            f"percentage points). Per problem, pass@k is averaged over a group's seeds ({'/'.join(map(str, seeds)) or '0'} "
            "seeds per RL arm); the 95% interval is a paired bootstrap over problems, and 'per-seed Δ' is the range "
            "of single seeds against the pooled reference. p-values are one-sided bootstrap p-values, "
            f"Holm-corrected over the {len(finding.claims)} claims of this finding (α = 0.05): **supports** when the "
            "paper's direction holds, **contradicts** when the opposite one does, **inconclusive** otherwise; a "
            "'no rise' claim is supported when its interval lies below +2 pp. Verdicts: "
            + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("supports", "contradicts", "inconclusive", "not run")) + ".",
            claims_table(verdicts)]


def compute_check(finding: Finding, root: Path) -> tuple[list[str], pd.DataFrame]:
    """Finding 3: each arm's realised compute (mid-training summary + RL ledger) against its plan."""
    rows = []
    for arm in finding.arms:
        plan = dict(arm.plan)
        if not plan:
            continue
        model = dict(arm.eval.inputs)["--model"]
        rl = model if model.command == "rl" else None
        mid = dict(rl.inputs)["--init"] if rl else model
        mid = mid if mid.command == "midtrain" else None
        planned_rl = plan["rl_steps"] * plan["rl_step_cost"]
        realised_mid = _summary(mid, root).get("tokens") if mid else 0
        realised_rl = 0.0
        if rl:
            summary = _summary(rl, root)
            realised_rl = ComputeLedger.from_summary(summary["ledger"]).realised(plan["l_mode"]) if summary else None
        planned = plan["mid_tokens"] + planned_rl
        realised = None if realised_mid is None or realised_rl is None else realised_mid + realised_rl
        error = None if realised is None or not planned else realised / planned - 1
        rows.append(dict(arm=arm.label, budget=plan["budget"], l_mode=plan["l_mode"], planned_mid=plan["mid_tokens"],
                         realised_mid=realised_mid, planned_rl=planned_rl, realised_rl=realised_rl, planned=planned,
                         realised=realised, error=error,
                         vs_budget=None if realised is None else realised / plan["budget"] - 1,
                         check="not run" if error is None else "ok" if abs(error) <= COMPUTE_TOLERANCE else "OFF"))
    table = pd.DataFrame(rows)
    if table.empty:
        return [], table

    def num(v):
        return "–" if v is None or pd.isna(v) else f"{v:,.0f}"

    lines = ["## Compute check", f"Realised compute of each arm (mid-training tokens from its summary + RL "
             f"token-equivalents from its ledger, priced in L mode `{table['l_mode'].iat[0]}` as the plan was) "
             f"against its plan; `ok` within ±{100 * COMPUTE_TOLERANCE:g} %. In `measured` mode the plan prices RL steps "
             "with a pilot of gold solution lengths, so a model writing longer or shorter completions than gold moves "
             "realised RL compute away from it; the plan itself lies within half a step of each kind of the budget "
             "(last column).",
             "| arm | budget | planned mid | realised mid | planned RL | realised RL | planned total | realised total "
             "| realised vs plan | check | realised vs budget |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "–" if v is None or pd.isna(v) else f"{100 * v:+.1f}%"

    for r in table.itertuples():
        lines.append(f"| {r.arm} | {num(r.budget)} | {num(r.planned_mid)} | {num(r.realised_mid)} | {num(r.planned_rl)} "
                     f"| {num(r.realised_rl)} | {num(r.planned)} | {num(r.realised)} | {pct(r.error)} | **{r.check}** "
                     f"| {pct(r.vs_budget)} |")
    return lines, table


def _summary(step, root: Path) -> dict:
    path = step.out_dir(root) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _top_k(evals: dict) -> int:
    return min(int(e.results["k"].max()) for e in evals.values())


def write_finding_report(finding: Finding, preset: str, out: Path, cluster: str, seeds: tuple[int, ...],
                         started: float, argv: str) -> int:
    root = out / "runs"
    evals = {arm.label: read_eval(arm.eval.out_dir(root)) for arm in finding.arms if arm.eval.done(root)}
    target = out / finding.name
    target.mkdir(parents=True, exist_ok=True)
    if finding.base_label not in evals:
        print(f"{finding.name}: base arm did not finish; no report", file=sys.stderr)
        return 0
    ordered = [evals[finding.base_label]] + [e for label, e in evals.items() if label != finding.base_label]
    runs = [dict(arm.eval.inputs)["--model"].out_dir(root) for arm in finding.arms if arm.label in evals]
    report = build_report(ordered, target / "report.md", runs=[r for r in runs if (r / "metrics.jsonl").exists()])
    tidy_results(finding, evals).to_csv(target / "results.csv", index=False)
    claims = claims_section(finding, evals, target, seed=0)
    extra = finding_section(finding, evals, target, seed=0)
    compute, table = compute_check(finding, root)
    if not table.empty:
        table.to_csv(target / "compute.csv", index=False)
    meta = provenance(preset=preset, cluster=cluster, seeds=list(seeds), wall_s=round(time.time() - started, 1))
    title, _, body = report.partition("\n")
    lines = [f"# {finding.name}: {title.lstrip('# ')}", *claims, "", *compute, "", body, *extra, "", "## Sweep",
             f"`{argv}`; commit {meta['commit']}, {meta['hardware']['cpu']}, wall {meta['wall_s']} s. Tables: "
             "`results.csv` (every arm's pass@k with design columns), `claims.csv`"
             + (", `compute.csv`" if not table.empty else "") + ".",
             "```", status_table(root, finding.name), "```"]
    (target / "report.md").write_text("\n".join(lines) + "\n")
    print(f"{finding.name}: {len(evals)}/{len(finding.arms)} arms evaluated; report {target / 'report.md'}")
    return len(evals)


# ---- the command ------------------------------------------------------------------------------------------------
def reproduce(name: str, preset: str, out: Path, cluster: str, seeds: tuple[int, ...], parallel: int,
              ladder: dict | None = None, dry_run: bool = False, every: float = STATUS_EVERY_S,
              argv: str = "") -> int:
    resources = load(SweepResources, preset, "resources").by_stage()
    names = list(FINDINGS) if name == "all" else [name]
    findings = [FINDINGS[n](preset, seeds, ladder) for n in names]  # every config error before any work
    root = out / "runs"
    plans, todo = {}, set()
    for finding in findings:
        text, expected, to_run = plan_text(finding, preset, root, parallel, cluster, resources)
        plans[finding.name] = expected
        todo |= to_run
        print(text + "\n", flush=True)
    if len(findings) > 1:  # findings share steps (one base under several findings): count each once
        union = {key: seconds for expected in plans.values() for key, seconds in expected.items()}
        total = sum(union[k] or 0.0 for k in todo)
        distinct = list({s.key: s for f in findings for s in f.sweep().steps()}.values())
        print(f"All {len(findings)} findings: {len(union)} distinct steps ({len(todo)} to run), expected CPU time "
              f"{duration(total)} (shared steps counted once); "
              f"{plan_wall(distinct, {k: union[k] for k in todo}, cluster, parallel, resources)}.\n", flush=True)
    if len(seeds) < 2:
        print(f"Note: one RL seed ({seeds[0]}): each claim's interval covers problems, not RL-seed variance; "
              "pass --seeds 0,1 (the default) or more to pool seeds.\n", flush=True)
    if dry_run:
        return 0
    failed_total = 0
    for finding in findings:
        started = time.time()
        print(f"{finding.name}: starting; a status line every {every:g} s", flush=True)
        records = run_sweep(finding.sweep(), root, cluster=cluster, resources=resources, parallel=parallel,
                            expected=plans[finding.name], on_progress=Ticker(finding.name, None if cluster == "slurm" else parallel, every),
                            every=every)
        failed = [r for r in records if r.status in ("failed", "blocked")]
        failed_total += len(failed)
        write_finding_report(finding, preset, out, cluster, seeds, started, argv)
        for record in failed:
            print(f"{finding.name}: {record.label} {record.status}: {record.error or ''} (log {record.log})",
                  file=sys.stderr)
    return 1 if failed_total else 0


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--seeds: {text!r} is not a comma-separated list of integers (e.g. 0,1)") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: {text!r} must list distinct non-negative integers")
    return seeds


def read_ladder(path: Path) -> dict:
    """A calibrated ladder (`lab calibrate`'s ladder.yaml, one `ladder:` section), read as `lab eval --ladder-file`
    reads it."""
    try:
        ladder = load_ladder("", ladder_file=path)
    except (ConfigError, yaml.YAMLError) as err:
        raise ValueError(f"--ladder: {err}") from None
    return {name: {"lo": lo, "hi": hi} for name, (lo, hi) in ladder.splits().items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("finding", choices=[*FINDINGS, "all"])
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--cluster", default="local", choices=[c for c in CLUSTERS if c != "debug"])
    parser.add_argument("--out", type=Path, default=None, help="default: runs/<preset>")
    parser.add_argument("--seeds", default="0,1", help="RL seeds, comma-separated (claims pool them over problems)")
    parser.add_argument("--parallel", type=int, default=1, help="local jobs at once (>= 1)")
    parser.add_argument("--ladder", type=Path, default=None,
                        help="a calibrated op ladder (YAML with ID / edge / hard: {lo, hi}), e.g. from lab calibrate; "
                             "default: the preset's findings.calibrated_ladder, else its ladder")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--every", type=float, default=STATUS_EVERY_S, help="seconds between status lines")
    args = parser.parse_args(argv)
    out = args.out or Path("runs") / args.preset
    try:  # every check before anything is written
        seeds = parse_seeds(args.seeds)
        if args.parallel < 1:
            raise ValueError(f"--parallel: must be >= 1, got {args.parallel}")
        if not args.every > 0:
            raise ValueError(f"--every: must be > 0, got {args.every}")
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} exists and is not a directory")
        ladder = read_ladder(args.ladder) if args.ladder else None
    except ValueError as err:
        print(f"lab reproduce: error: {err}", file=sys.stderr)
        return 2
    stop_jobs_on_sigterm()
    try:
        # Two reproductions into one tree would submit the same steps twice and race on the sweep state; a dry run
        # writes nothing, so it takes no lock and may run beside a reproduction.
        with nullcontext() if args.dry_run else exclusive(out):
            return reproduce(args.finding, args.preset, out, args.cluster, seeds, args.parallel, ladder, args.dry_run,
                             args.every, argv="lab reproduce " + " ".join(argv))
    except (ConfigError, LockError) as err:
        print(f"lab reproduce: error: {err}", file=sys.stderr)
        return 2


def sweep_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab sweep", description="live state of a sweep's steps: done / running "
                                     "with progress / queued / failed with its log, and an ETA")
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
