"""`lab diagnose --model RUN --data CORPUS --out DIR`: teacher-forced accuracy by token role.

Verified accuracy says *that* a small model fails; which token it gets wrong says *why*. Fed the gold solution, the
model's argmax at each position is scored against the next gold token, and each token of a compact solution step
`X = A op B = v ;` (compact-inline: `X = A a op B b = v ;`) has one job:

    step name      X: which quantity to compute next (gold order; any topological order verifies, so this
                   understates)
    format         '=', ';' and the grouping brackets '(' ')'
    operator       op, copied from the statement
    operand name   A, B, copied from the statement
    operand value  a, b (compact-inline): an earlier value looked up
    constant       a number that follows no operand name (`+ 2`, `= 3 * ( ...`), copied from the statement
    leaf value     v of a one-'=' step `X = v ;`, copied from the statement
    step result    v after the step's last '=': the arithmetic

A multi-digit number is split into single-digit tokens; every digit takes the role of the number. Writes
DIR/roles.csv (op × role counts), DIR/roles.md (role × ladder split), DIR/roles.png/.pdf (role × op heatmap) and
DIR/summary.json (request and provenance). Problems are `lab eval`'s: the first N per (context, op) cell by id.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import seaborn as sns
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.config import load_ladder
from analysis.evaldir import EvalError
from analysis.evaluate import checkpoint_name, load_inputs, load_model, select_problems
from analysis.plots import save
from analysis.tables import split_of
from core.config import ConfigError, parse_overrides
from core.provenance import provenance
from datagen.corpus import CorpusError, read_manifest, read_split

ROLES = ("step name", "format", "operator", "operand name", "operand value", "constant", "leaf value", "step result")
RENDERINGS = ("compact", "compact-inline")
OPERATORS = ("+", "-", "*")


def solution_roles(tokens: list[str]) -> list[str | None]:
    """The role of each token of a tokenized sequence; None outside `<solution> … </solution>` and for blanks."""
    words = [token.strip() for token in tokens]
    roles: list[str | None] = [None] * len(words)
    if "<solution>" not in words or "</solution>" not in words:
        return roles
    start, end = words.index("<solution>") + 1, words.index("</solution>")
    position = equals_seen = 0
    for i in range(start, end):
        word = words[i]
        if not word:
            continue
        if word.isdigit() and not tokens[i][:1].isspace() and roles[i - 1] is not None and words[i - 1].isdigit():
            roles[i] = roles[i - 1]  # a later digit of the same number
            continue
        step_end = words.index(";", i) if ";" in words[i:end] else end
        equals_in_step = equals_seen + words[i:step_end].count("=")
        if position == 0:
            role = "step name"
        elif word in ("=", ";", "(", ")"):
            role = "format"
        elif word in OPERATORS:
            role = "operator"
        elif not word.isdigit():
            role = "operand name"
        elif equals_in_step == 1:
            role = "leaf value"
        elif equals_seen == equals_in_step:
            role = "step result"
        elif words[i - 1] in OPERATORS or words[i - 1] in ("=", "(", ")"):
            role = "constant"  # no operand name before it, so not an inline value
        else:
            role = "operand value"
        roles[i] = role
        equals_seen += word == "="
        position += 1
        if word == ";":
            position = equals_seen = 0
    return roles


@torch.no_grad()
def role_counts(model, tokenizer, problems: pd.DataFrame, batch_size: int = 16) -> pd.DataFrame:
    """[op, role, correct, total]: teacher-forced argmax hits per op and role, summed over `problems`."""
    counts: dict[tuple[int, str], list[int]] = {}
    texts, ops = problems["text"].tolist(), problems["op"].astype(int).tolist()
    for begin in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[begin:begin + batch_size], add_special_tokens=False)["input_ids"]
        width = max(map(len, encoded))
        ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(encoded):
            ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
        predicted = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.argmax(-1)
        for row, seq in enumerate(encoded):
            roles = solution_roles(tokenizer.convert_ids_to_tokens(seq))
            hits = (predicted[row, :len(seq) - 1].cpu() == ids[row, 1:len(seq)]).tolist()
            for i, role in enumerate(roles):
                if role is not None and i > 0:
                    cell = counts.setdefault((ops[begin + row], role), [0, 0])
                    cell[0] += hits[i - 1]
                    cell[1] += 1
    return pd.DataFrame([(op, role, c, n) for (op, role), (c, n) in sorted(counts.items())],
                        columns=["op", "role", "correct", "total"])


def by_split(counts: pd.DataFrame, ladder: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """Accuracy per role (rows, in ROLES order) and ladder split (columns) plus all ops, with token counts."""
    frame = counts.assign(split=split_of(counts["op"], ladder).to_numpy())
    parts = [frame.assign(split="all ops"), frame.dropna(subset=["split"])]
    grouped = pd.concat(parts).groupby(["role", "split"])[["correct", "total"]].sum()
    table = (grouped["correct"] / grouped["total"]).unstack("split")
    columns = [name for name in (*ladder, "all ops") if name in table.columns]
    return table.reindex([r for r in ROLES if r in table.index])[columns].join(
        grouped["total"].unstack("split")["all ops"].rename("tokens"))


def markdown(table: pd.DataFrame) -> str:
    """The role × split table as markdown (accuracies to 3 places, token counts as integers)."""
    header = ["role", *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for role, row in table.iterrows():
        cells = [f"{int(v):,}" if name == "tokens" else ("—" if pd.isna(v) else f"{v:.3f}")
                 for name, v in row.items()]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_roles(counts: pd.DataFrame, title: str, out: Path) -> None:
    accuracy = (counts.assign(accuracy=counts["correct"] / counts["total"])
                .pivot(index="role", columns="op", values="accuracy"))
    accuracy = accuracy.reindex([r for r in ROLES if r in accuracy.index])
    fig = Figure(figsize=(2.5 + 0.7 * len(accuracy.columns), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sns.heatmap(accuracy, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="viridis", ax=ax,
                cbar_kws={"label": "teacher-forced argmax accuracy"})
    ax.set(xlabel="op", ylabel="token role", title=title)
    save(fig, out)


def diagnose(model_path: str | Path, data: str | Path, out: str | Path, preset: str, overrides: dict,
             split: str = "test", problems_per_op: int = 32, batch_size: int = 16, ladder_file=None) -> pd.DataFrame:
    started = time.time()
    out = Path(out)
    if out.exists():
        raise EvalError(f"{out}: already exists; choose another --out")
    ladder = load_ladder(preset, overrides, ladder_file)
    try:
        rendering = read_manifest(data)["spec"]["rendering"]
    except (CorpusError, FileNotFoundError) as err:
        raise EvalError(str(err)) from None
    if rendering not in RENDERINGS:
        raise EvalError(f"{data}: token roles are defined for the {' and '.join(RENDERINGS)} renderings, "
                        f"not {rendering!r}")
    model_dir, _, tokenizer = load_inputs(model_path, data)
    try:
        rows = read_split(data, split, columns=["id", "context", "op", "text"])
    except CorpusError as err:
        raise EvalError(str(err)) from None
    problems = select_problems(rows, ladder, problems_per_op)
    if problems.empty:
        raise EvalError(f"{data}: split {split!r} has no problems with ops on the ladder {ladder.splits()}")
    model = load_model(model_dir, progress=False)
    counts = role_counts(model, tokenizer, problems, batch_size)

    table = by_split(counts, ladder.splits())
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"  # renamed into place: a DIR that exists is complete
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        counts.assign(accuracy=counts["correct"] / counts["total"]).to_csv(tmp / "roles.csv", index=False)
        header = (f"Teacher-forced argmax accuracy by token role: {model_dir} on {len(problems)} {split} problems "
                  f"of {data} ({rendering}); columns are ladder splits {ladder.splits()}.\n\n")
        (tmp / "roles.md").write_text(header + markdown(table))
        plot_roles(counts, f"{checkpoint_name(model_dir)}: {split}, {rendering}", tmp / "roles")
        summary = {"model": str(Path(model_dir).resolve()), "data": str(Path(data).resolve()), "split": split,
                   "problems": len(problems), "ladder": ladder.splits(), "rendering": rendering,
                   "provenance": provenance(wall_s=round(time.time() - started, 3))}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab diagnose", description=__doc__.split("\n\n")[0],
                                     epilog="the ladder: the preset's, a --ladder-file, or --ladder.ID.hi OP ...")
    parser.add_argument("--model", required=True, type=Path, help="HF model directory, or a run directory")
    parser.add_argument("--data", required=True, type=Path, help="corpus (compact or compact-inline rendering)")
    parser.add_argument("--out", required=True, type=Path, help="directory to create (roles.csv/.md/.png)")
    parser.add_argument("--preset", default="smoke", help="preset name or YAML path (section 'ladder')")
    parser.add_argument("--ladder-file", type=Path, help="a ladder.yaml from lab calibrate, in place of the preset's")
    parser.add_argument("--split", default="test", help="corpus split to read problems from")
    parser.add_argument("--problems-per-op", type=int, default=32, help="problems per (context, op) cell")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = {key.removeprefix("ladder."): value for key, value in parse_overrides(rest).items()}
        if any(key not in ("ID", "edge", "hard") and not key.startswith(("ID.", "edge.", "hard."))
               for key in overrides):
            raise ConfigError(f"unknown options {rest}; only --ladder.* fields are accepted besides the flags")
        if args.problems_per_op < 1 or args.batch_size < 1:
            raise ConfigError("--problems-per-op and --batch-size must be >= 1")
        table = diagnose(args.model, args.data, args.out, args.preset, overrides, args.split, args.problems_per_op,
                         args.batch_size, args.ladder_file)
    except (ConfigError, EvalError) as err:
        print(f"lab diagnose: error: {err}", file=sys.stderr)
        return 2
    print(markdown(table), end="")
    print(f"wrote {args.out}")
    return 0
