"""`lab calibrate --model RUN --data EVAL_CORPUS --out DIR`: the op ladder this base actually has.

The paper's "edge of competence" is relative to the base model, so a preset's ladder is only a guess until the base
is measured. This evaluates the base on every op of the guessed range (`lab eval`'s own code, greedy and sampled, into
DIR/eval), and assigns each op from per-op numbers pooled over contexts (problems weigh equally):

    ID    the run of consecutive ops from the lowest evaluated one whose greedy process-verified accuracy is
          >= rules.id_greedy (0.9): what the base has mastered
    edge  the first run of consecutive ops above ID whose sampled verified pass@1 <= rules.edge_pass1_max (0.5)
          and pass@K >= rules.edge_passk_min (0.2): usually wrong, but solved within K samples
    hard  the first run of consecutive ops above edge whose pass@K <= rules.hard_passk_max (0.05)

K is the evaluation's sample count (`--samples`; the preset's calibrate.samples, else eval.samples). Ops that fit no
rule (between the splits) stay unassigned: the Ladder allows gaps. DIR/calibration.md holds the per-op table with
bootstrap CIs and answer-only pass@K beside its chance level, then how firm each split is (the share of bootstrap
draws of each op's problems under which the rules give the same span: at ~100 problems per op a rule's 0.01 margin
is one problem), then pass@1 by op and necessary quantities (op = quantities + arithmetic operations, and each
quantity is one solution step, so at one op the problems with fewer operations are longer: the table says whether
the frontier follows op or the number of steps). DIR/calibration.png/.pdf draws the per-op table; DIR/ladder.yaml (a
`ladder:` section, loaded with `analysis.config.load_ladder(..., ladder_file=...)`) is written only when all three
splits exist. Else the table says which is missing and the command exits 1: a base without a frontier is a finding,
not a ladder.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.config import Ladder, Span, load_eval_config
from analysis.evaldir import EvalError, read_eval
from analysis.evaluate import evaluate
from analysis.plots import save
from analysis.stats import bootstrap_ci
from analysis.tables import per_problem_pass_at_k
from core.config import ConfigError, build, load, parse_overrides
from core.lock import lock_path
from datagen.corpus import read_manifest

LADDER_FILE, TABLE_FILE, FIGURE = "ladder.yaml", "calibration.md", "calibration"


@dataclass
class Rules:
    """Thresholds of the split definitions (the issue's: ID greedy >= 0.9, edge pass@1 <= 0.5 and pass@K >= 0.2,
    hard pass@K <= 0.05)."""

    id_greedy: float = 0.9
    edge_pass1_max: float = 0.5
    edge_passk_min: float = 0.2
    hard_passk_max: float = 0.05

    def validate(self, where: str) -> None:
        for name, value in vars(self).items():
            if not 0 <= value <= 1:
                raise ConfigError(f"{where}.{name}: must lie in [0, 1], got {value}")


@dataclass
class CalibrateConfig:
    """A preset's `calibrate:` section: the protocol `lab calibrate` runs where it differs from the `eval:` section.

    A split's rule is decided by the problems at its margin (at 100 problems per op, 0.01 of pass@1 is one problem),
    so a preset may ask calibration for more problems and samples than its routine evaluations spend. Problems per
    op is a cap: a calibration corpus with more problems at the frontier ops than elsewhere spends them there."""

    problems_per_op: int | None = None  # per op and context, at most; None: eval.problems_per_op
    samples: int | None = None  # K of the pass@K rules; None: eval.samples
    rules: Rules = field(default_factory=Rules)

    def validate(self, where: str) -> None:
        for name in ("problems_per_op", "samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1 (or null: the eval section's), "
                                  f"got {getattr(self, name)}")


def per_op_table(samples: pd.DataFrame, k: int, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per op: problems, greedy verified accuracy, verified pass@1 and pass@k with CIs, answer-only pass@k.

    Pooled over contexts with every problem weighing the same, as the split rows of `analysis.tables` are.
    """
    wide, greedy = _per_problem(samples, k)
    rows = []
    for op, block in wide.groupby(level="op"):
        pass1, lo1, hi1 = bootstrap_ci(block[("pass@k_verified", 1)].to_numpy(), n_boot=n_boot, seed=seed)
        passk, lok, hik = bootstrap_ci(block[("pass@k_verified", k)].to_numpy(), n_boot=n_boot, seed=seed)
        on_op = greedy[greedy.index.get_level_values("op") == op]
        rows.append({"op": int(op), "problems": len(block),
                     "greedy": float(on_op.mean()) if len(on_op) else float("nan"),
                     "pass@1": pass1, "pass@1_lo": lo1, "pass@1_hi": hi1,
                     f"pass@{k}": passk, f"pass@{k}_lo": lok, f"pass@{k}_hi": hik,
                     f"pass@{k}_answer": float(block[("pass@k_answer", k)].mean())})
    return pd.DataFrame(rows).sort_values("op", ignore_index=True)


def _per_problem(samples: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.Series]:
    """Per (context, op, problem): verified and answer-only pass@1 and pass@k (columns (metric, k)), and greedy
    verified accuracy (its own index: problems without a greedy pass are absent)."""
    sampled = samples[samples["mode"] == "sampled"]
    wide = per_problem_pass_at_k(sampled, ks=sorted({1, k})).pivot_table(
        index=["context", "op", "problem_id"], columns=["metric", "k"], values="value")
    greedy = samples[samples["mode"] == "greedy"].groupby(["context", "op", "problem_id"])["verified"].mean()
    return wide, greedy


def by_quantities_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Verified pass@1 and problem count per (op, necessary quantities = op - arithmetic operations), problems pooled
    over contexts and weighing equally."""
    sampled = samples[samples["mode"] == "sampled"]
    per_problem = sampled.groupby(["context", "op", "problem_id"]).agg(
        pass1=("verified", "mean"), arith_ops=("arith_ops", "first")).reset_index()
    per_problem["quantities"] = per_problem["op"] - per_problem["arith_ops"]
    return (per_problem.groupby(["op", "quantities"]).agg(problems=("pass1", "size"), pass1=("pass1", "mean"))
            .reset_index())


def render_by_quantities(table: pd.DataFrame) -> str:
    """The op x quantities grid as markdown, each cell `pass@1 (problems)`, with a pooled row over all ops."""
    columns = sorted(table["quantities"].unique())
    pooled = table.assign(hits=table["pass1"] * table["problems"]).groupby("quantities")[["hits", "problems"]].sum()
    lines = ["## Verified pass@1 by necessary quantities", "",
             "op = necessary quantities + arithmetic operations; each quantity is one solution step. "
             "Cells: pass@1 (problems).", "",
             "| op | " + " | ".join(f"{q} quantities" for q in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    cells = {(r["op"], r["quantities"]): f"{r['pass1']:.2f} ({r['problems']})" for r in table.to_dict("records")}
    for op in sorted(table["op"].unique()):
        lines.append(f"| {op} | " + " | ".join(cells.get((op, q), "") for q in columns) + " |")
    lines.append("| all | " + " | ".join(f"{pooled.at[q, 'hits'] / pooled.at[q, 'problems']:.2f} "
                                         f"({pooled.at[q, 'problems']})" for q in columns) + " |")
    return "\n".join(lines) + "\n"


def assign(table: pd.DataFrame, k: int, rules: Rules) -> dict[str, tuple[int, int] | None]:
    """split -> (lo, hi) by the rules in the module docstring; None where no op qualifies."""
    return _spans(table["op"].tolist(), table["greedy"].tolist(), table["pass@1"].tolist(),
                  table[f"pass@{k}"].tolist(), rules)


def _spans(ops: list[int], greedy: list[float], pass1: list[float], passk: list[float],
           rules: Rules) -> dict[str, tuple[int, int] | None]:
    """`assign` on per-op lists, so that many resampled tables can be judged without building frames."""
    at = {op: i for i, op in enumerate(ops)}
    is_id = lambda op: greedy[at[op]] >= rules.id_greedy  # noqa: E731 (NaN: no greedy pass, never ID)
    is_edge = lambda op: (pass1[at[op]] <= rules.edge_pass1_max  # noqa: E731
                          and passk[at[op]] >= rules.edge_passk_min)
    is_hard = lambda op: passk[at[op]] <= rules.hard_passk_max  # noqa: E731
    splits: dict[str, tuple[int, int] | None] = {}
    start = 0
    for name, rule, anchored in (("ID", is_id, True), ("edge", is_edge, False), ("hard", is_hard, False)):
        run = _first_run(ops[start:], rule, anchored)
        splits[name] = (run[0], run[-1]) if run else None
        if run:
            start = ops.index(run[-1]) + 1
    return splits


def ladder_stability(samples: pd.DataFrame, k: int, rules: Rules, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Counter]:
    """How the ladder varies with the problems drawn: each op's problems are resampled with replacement (as the
    per-op CIs are), the rules applied to every draw; split -> Counter of spans (None: no such split) over draws.

    A split's thresholds cut through per-op means measured on ~100 problems, so an op one problem away from a
    threshold falls on either side of it in many resamples: this says how firm each measured span is.
    """
    wide, greedy = _per_problem(samples, k)
    greedy = greedy.reindex(wide.index).to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    ops, means = [], []  # means: per op, an (n_boot, 3) array of resampled greedy, pass@1, pass@k
    for op in sorted(wide.index.get_level_values("op").unique()):
        rows = np.flatnonzero(wide.index.get_level_values("op") == op)
        values = np.column_stack([greedy[rows], wide[("pass@k_verified", 1)].to_numpy()[rows],
                                  wide[("pass@k_verified", k)].to_numpy()[rows]])
        draws = rng.integers(0, len(rows), size=(n_boot, len(rows)))
        ops.append(int(op))
        means.append(values[draws].mean(axis=1))
    stacked = np.stack(means, axis=1)  # (n_boot, ops, 3)
    counts: dict[str, Counter] = {"ID": Counter(), "edge": Counter(), "hard": Counter()}
    for draw in stacked:
        for name, span in _spans(ops, draw[:, 0].tolist(), draw[:, 1].tolist(), draw[:, 2].tolist(), rules).items():
            counts[name][span] += 1
    return counts


def render_stability(counts: dict[str, Counter], splits: dict) -> str:
    """Markdown: per split, the share of draws that give the measured span, the other spans, and the edge's width."""
    n = sum(counts["edge"].values())
    text = lambda span: "none" if span is None else f"{span[0]}–{span[1]}"  # noqa: E731
    lines = ["## How firm the ladder is", "",
             f"Each op's problems resampled with replacement {n} times and the rules applied to every draw: the "
             "share of draws that give each split as measured, and the spans the others give (shares under 0.005 "
             "left out).", "",
             "| split | measured | same in | other spans (share of draws) |", "|---|---|---|---|"]
    for name, span in splits.items():
        others = ", ".join(f"{text(s)} {c / n:.2f}" for s, c in counts[name].most_common()
                           if s != span and c / n >= 0.005)
        lines.append(f"| {name} | {text(span)} | {counts[name][span] / n:.2f} | {others or '—'} |")
    widths = Counter()
    for span, c in counts["edge"].items():
        widths[0 if span is None else span[1] - span[0] + 1] += c
    lines += ["", "Edge width in ops (share of draws): "
              + ", ".join(f"{w}: {c / n:.2f}" for w, c in sorted(widths.items())) + "."]
    return "\n".join(lines) + "\n"


def _first_run(ops: list[int], rule, anchored: bool) -> list[int]:
    """The first run of consecutive ops that satisfy `rule`; `anchored`: it must start at ops[0]."""
    run: list[int] = []
    for op in ops:
        if rule(op) and (not run or op == run[-1] + 1):
            run.append(op)
        elif run or anchored:
            break
    return run


def chance_pass_at_k(modulus: int | None, k: int) -> float | None:
    """Answer-only pass@k of uniform guessing over residues mod `modulus`; None for unbounded answers."""
    return None if modulus is None else 1 - (1 - 1 / modulus) ** k


def render(table: pd.DataFrame, splits: dict, k: int, rules: Rules, chance: float | None, source: str) -> str:
    names = {op: name for name, span in splits.items() if span for op in range(span[0], span[1] + 1)}
    chance_text = "—" if chance is None else f"{chance:.2f}"
    lines = [f"# Calibration of {source}", "",
             f"Rules: ID greedy >= {rules.id_greedy} (from the lowest op on); edge pass@1 <= {rules.edge_pass1_max}"
             f" and pass@{k} >= {rules.edge_passk_min}; hard pass@{k} <= {rules.hard_passk_max}. Verified = "
             f"process-verified; 95% bootstrap CIs over problems; answer-only pass@{k} by chance: {chance_text}.", "",
             "Ladder: " + ", ".join(f"{name} {span[0]}–{span[1]}" if span else f"{name} none"
                                    for name, span in splits.items()) + ".", "",
             f"| op | split | problems | greedy | pass@1 [CI] | pass@{k} [CI] | answer pass@{k} (chance) |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['op']} | {names.get(r['op'], '—')} | {r['problems']} | {r['greedy']:.2f} | "
                     f"{r['pass@1']:.2f} [{r['pass@1_lo']:.2f}, {r['pass@1_hi']:.2f}] | "
                     f"{r[f'pass@{k}']:.2f} [{r[f'pass@{k}_lo']:.2f}, {r[f'pass@{k}_hi']:.2f}] | "
                     f"{r[f'pass@{k}_answer']:.2f} ({chance_text}) |")
    return "\n".join(lines) + "\n"


def plot_calibration(table: pd.DataFrame, splits: dict, k: int, rules: Rules, title: str, out: Path) -> None:
    """Greedy, pass@1 and pass@k per op with their CIs, the thresholds as lines, the assigned splits shaded."""
    fig = Figure(figsize=(7.5, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for (name, span), shade in zip(splits.items(), (0.06, 0.14, 0.24)):
        if span:
            ax.axvspan(span[0] - 0.5, span[1] + 0.5, color="k", alpha=shade, lw=0)
            ax.text((span[0] + span[1]) / 2, 1.04, name, ha="center", va="bottom")
    ops = table["op"]
    ax.plot(ops, table["greedy"], "s--", color="C2", label="greedy verified")
    for column, colour in (("pass@1", "C0"), (f"pass@{k}", "C1")):
        error = [table[column] - table[f"{column}_lo"], table[f"{column}_hi"] - table[column]]
        ax.errorbar(ops, table[column], yerr=error, fmt="o-", color=colour, capsize=3,
                    label=f"verified {column} (95% CI)")
    for y, style in ((rules.id_greedy, ":"), (rules.edge_pass1_max, "--"), (rules.edge_passk_min, "-."),
                     (rules.hard_passk_max, ":")):
        ax.axhline(y, color="grey", lw=0.8, ls=style)
    ax.set(xlabel="op", ylabel="accuracy", ylim=(-0.02, 1.12), xticks=list(ops), title=title)
    ax.legend(loc="center right", fontsize=8, frameon=False)
    save(fig, out)


def calibrate(model: str | Path, data: str | Path, out: str | Path, preset: str, overrides: dict,
              progress: bool = True) -> tuple[dict, pd.DataFrame] | None:
    """Evaluate into OUT/eval, write OUT/calibration.md and (if complete) OUT/ladder.yaml; (splits, table), or None
    on a data-parallel run's ranks other than 0."""
    out = Path(out)
    protocol = load(CalibrateConfig, preset, "calibrate",
                    {key: v for key, v in overrides.items() if key.startswith("rules.")})
    rules = protocol.rules
    # The section's protocol over the eval section, and the command line over both.
    eval_overrides = {name: getattr(protocol, name) for name in ("problems_per_op", "samples")
                      if getattr(protocol, name) is not None}
    eval_overrides.update({key: v for key, v in overrides.items() if not key.startswith("rules.")})
    cfg, guess = load_eval_config(preset, eval_overrides)
    if not cfg.greedy:
        raise ConfigError("eval.greedy: calibration needs the greedy pass (the ID rule is greedy accuracy)")
    # Every op of the guessed range is evaluated: the guess's gaps are closed, its splits only label DIR/eval.
    covering = Ladder(ID=Span(guess.ID.lo, guess.edge.lo - 1), edge=Span(guess.edge.lo, guess.hard.lo - 1),
                      hard=guess.hard)
    own = {"eval", lock_path(out / "eval").name, LADDER_FILE, TABLE_FILE, f"{FIGURE}.png", f"{FIGURE}.pdf"}
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - own):
        raise EvalError(f"{out}: exists and is not a calibration directory; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    evaluate(model, data, out / "eval", cfg, covering, progress=progress)
    if rank_zero_only.rank != 0:  # a data-parallel evaluation's other ranks: rank 0 gathered their samples
        return None
    evaluation = read_eval(out / "eval")
    k = cfg.samples
    table = per_op_table(evaluation.samples, k, n_boot=cfg.n_boot, seed=cfg.seed)
    splits = assign(table, k, rules)
    chance = chance_pass_at_k(read_manifest(data)["spec"]["graph"].get("modulus"), k)
    stability = ladder_stability(evaluation.samples, k, rules, n_boot=cfg.n_boot, seed=cfg.seed)
    (out / TABLE_FILE).write_text(render(table, splits, k, rules, chance, str(model)) + "\n"
                                  + render_stability(stability, splits) + "\n"
                                  + render_by_quantities(by_quantities_table(evaluation.samples)))
    plot_calibration(table, splits, k, rules, f"{evaluation.checkpoint}: measured ladder (T={cfg.temperature})",
                     out / FIGURE)
    ladder_path = out / LADDER_FILE
    if all(splits.values()):
        write_ladder(ladder_path, splits, f"Measured by `lab calibrate --model {model} --data {data}` "
                                          f"(k={k}, T={cfg.temperature}); rules and per-op table: {TABLE_FILE}")
    else:
        ladder_path.unlink(missing_ok=True)  # a stale ladder from an earlier calibration would mislead
    return splits, table


def write_ladder(path: Path, splits: dict[str, tuple[int, int]], note: str) -> None:
    """A YAML file with one `ladder:` section, checked by building it as a `Ladder` before it is written."""
    section = {name: {"lo": lo, "hi": hi} for name, (lo, hi) in splits.items()}
    build(Ladder, section, "ladder")
    path.write_text(f"# {note}\n" + yaml.safe_dump({"ladder": section}, sort_keys=False))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab calibrate", description=__doc__.split("\n\n")[0],
                                     epilog="eval fields as in lab eval (--samples K --problems-per-op P ...; "
                                            "defaults: the preset's calibrate section, else its eval section); "
                                            "the guessed range: --ladder.ID.lo OP --ladder.hard.hi OP; thresholds: "
                                            "--rules.id_greedy --rules.edge_pass1_max --rules.edge_passk_min "
                                            "--rules.hard_passk_max")
    parser.add_argument("--model", required=True, type=Path, help="HF model directory, or a run directory")
    parser.add_argument("--data", required=True, type=Path, help="corpus whose test split covers the ops")
    parser.add_argument("--out", required=True, type=Path, help="calibration directory (eval/, ladder.yaml, table)")
    parser.add_argument("--preset", default="smoke",
                        help="preset name or YAML path (sections 'calibrate', 'eval', 'ladder')")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    try:
        calibrated = calibrate(args.model, args.data, args.out, args.preset, parse_overrides(rest),
                               progress=not args.quiet)
    except (ConfigError, EvalError) as err:
        print(f"lab calibrate: error: {err}", file=sys.stderr)
        return 2
    if calibrated is None:  # not rank 0
        return 0
    splits, table = calibrated
    print((args.out / TABLE_FILE).read_text())
    missing = [name for name, span in splits.items() if span is None]
    if missing:
        print(f"lab calibrate: under these rules the base has no {' and no '.join(missing)} split; "
              f"no {LADDER_FILE} written (the per-op table says why)", file=sys.stderr)
        return 1
    print(f"wrote {args.out / LADDER_FILE}")
    return 0

