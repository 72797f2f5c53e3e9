"""The verifier under attack: a fuzz campaign over adversarial completions, and its speed.

RL pays rewards from `datagen.verify.verify` and evaluation counts process-verified samples with it, so two
things are measured here rather than asserted in timed tests: (1) on completions built from real gold
solutions of every rendering by the mutations in tests/adversarial.py, the verifier never raises, never pays a
full `strict` or `process` reward to a completion with a wrong, missing or unfinished step, and pays every
reward in full for gold solutions, their topological reorderings, commuted operands and added correct steps;
(2) the time to grade a completion of 4,096 whitespace tokens (an upper bound for 4,096 model tokens, since
every whitespace token is at least one model token) and a 1 MB string.

Run: python -m benchmarks.bench_verify [--problems N] [--seed S] [--baseline REV] [--out results/verify.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import types
from collections import Counter

from datagen.contexts import load_context
from datagen.graph import GraphConfig, generate
from datagen.render import STYLES, render
from datagen.verify import verify
from rl.rewards import reward
from tests.adversarial import NOISE, RIGHT, WRONG, Case, correct_distractor_steps

CONTEXTS = ("zoo", "teachers", "movies")
OP_RANGE = (1, 30)
TIMED_TOKENS = 4096


def sample_case(rng: random.Random, style: str, op: int | None = None) -> Case:
    ctx = load_context(rng.choice(CONTEXTS))
    cfg = GraphConfig(modulus=rng.choice([None, 23]))
    problem = generate(op or rng.randint(*OP_RANGE), rng, cfg, len(ctx.groups), len(ctx.items))
    return Case(problem, render(problem, ctx, style, rng), ctx, style)


def grade(case: Case, text: str, verifier=verify):
    verdict = verifier(text, case.problem, case.rendered.names, case.style)
    return verdict, {name: reward(name, verdict, text, 0.5) for name in ("outcome", "process", "mixed", "strict")}


def baseline_verifier(rev: str):
    """`verify` of datagen/verify.py at git revision `rev`, to count side by side what it got wrong."""
    source = subprocess.run(["git", "show", f"{rev}:datagen/verify.py"], capture_output=True, text=True,
                            check=True).stdout
    module = types.ModuleType(f"verify_at_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up by name
    exec(compile(source, f"{rev}:datagen/verify.py", "exec"), module.__dict__)
    return module.verify


def campaign(problems: int, seed: int, repeats: int, verifiers: dict) -> tuple[dict, list[str]]:
    """Per verifier and mutation: completions, crashes, full strict / process rewards, verified, failures; and
    failure examples of the first verifier."""
    rng = random.Random(seed)
    counts = {name: {} for name in verifiers}
    failures: list[str] = []
    mutations = {**{k: ("WRONG", f) for k, f in WRONG.items()}, **{k: ("RIGHT", f) for k, f in RIGHT.items()},
                 **{k: ("NOISE", f) for k, f in NOISE.items()}}
    for i in range(problems):
        case = sample_case(rng, STYLES[i % len(STYLES)])
        for name, (group, mutate) in mutations.items():
            for _ in range(repeats):
                text = mutate(case, rng)
                if text is None:
                    continue
                for which, verifier in verifiers.items():
                    row = counts[which].setdefault(name, Counter())
                    row["completions"] += 1
                    try:
                        verdict, rewards = grade(case, text, verifier)
                    except Exception as err:  # the one thing the verifier must never do
                        row["crashes"] += 1
                        if which == "ours":
                            failures.append(f"{name}: crash {type(err).__name__}: {err}")
                        continue
                    row["full strict"] += rewards["strict"] == 1.0
                    row["full process"] += rewards["process"] == 1.0
                    row["verified"] += verdict.verified
                    bad = (group == "WRONG" and (rewards["strict"] == 1.0 or rewards["process"] == 1.0)) or (
                        group == "RIGHT" and not all(r == 1.0 for r in rewards.values()))
                    row["failures"] += bad
                    if bad and which == "ours" and len(failures) < 20:
                        failures.append(f"{name} [{case.style}]: {verdict} <- {text[:300]!r}")
    return counts, failures


def long_completions(rng: random.Random, style: str) -> dict[str, tuple[Case, str]]:
    """Completions of up to TIMED_TOKENS whitespace tokens: "distinct" states every quantity of a large problem
    with many distractors once, correctly; "looping" repeats a correct solution, as a model stuck in a loop
    does (a correct step stated again is still correct); "distinct wrong" is wrong steps, none repeated."""
    ctx = load_context("zoo")
    problem = generate(rng.randint(30, 40), rng, GraphConfig(modulus=None, distractors=2.0), len(ctx.groups),
                       len(ctx.items))
    big = Case(problem, render(problem, ctx, style, rng), ctx, style)
    small = sample_case(rng, style, op=rng.randint(10, 20))
    out = {}
    for name, case in (("distinct", big), ("looping", small)):
        body, tail = correct_distractor_steps(case, rng).split("</solution>")
        steps, limit = body.split(), TIMED_TOKENS - len(tail.split()) - 1
        while name == "looping" and len(steps) < limit:
            steps += body.split()
        out[name] = case, " ".join(steps[:limit]) + " </solution>" + tail
    wrong = " ".join(_wrong_steps(rng, small)).split()[:limit]
    out["distinct wrong"] = small, " ".join(wrong) + " </solution>" + tail
    return out


def time_calls(case: Case, text: str, repeats: int, verifier=verify) -> float:
    """Best CPU seconds of `repeats` gradings: on a machine shared by other jobs, wall time measures them too."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        verifier(text, case.problem, case.rendered.names, case.style)
        best = min(best, time.process_time() - started)
    return best


def megabyte_strings(rng: random.Random, case: Case) -> dict[str, str]:
    size = 1 << 20
    gold = f" {case.rendered.solution} "
    words = case.rendered.text.split()
    return {
        "gold solution repeated": (gold * (size // len(gold) + 1))[:size],
        "shuffled sequence words": " ".join(rng.choice(words) for _ in range(size // 6))[:size],
        "random unicode": "".join(chr(rng.randrange(32, 0x3000)) for _ in range(size // 2)),
        "one 1 MB token": "9" * size,
        "nested parentheses": "X = " + "( " * (size // 4) + "1",
        "one long sum": "X = " + " + ".join(["1"] * (size // 4))[:size] + " = 5 ;",
        "distinct wrong steps": " ".join(_wrong_steps(rng, case))[:size],
    }


def _wrong_steps(rng: random.Random, case: Case):
    """Steps about real quantities with random operands and numbers, none repeated: nothing to remember."""
    names = list(case.rendered.names.values())
    size = 0
    while size < 1 << 20:
        a, b, c = (rng.choice(names) for _ in range(3))
        if case.style == "natural":
            step = f"Define {a} as Q ; so Q = A {rng.choice('+-*')} {rng.randrange(10**6)} = {rng.randrange(10**6)} ."
        else:
            step = f"{a} = {b} {rng.randrange(99)} {rng.choice('+-*')} {c} = {rng.randrange(10**6)} ;"
        size += len(step) + 1
        yield step


def provenance(argv: list[str], wall: float, load_at_start: str) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    load = open("/proc/loadavg").read().split()[:3]
    return (f"Command `python -m benchmarks.bench_verify {' '.join(argv)}`, commit `{commit}`"
            f"{' (with uncommitted changes)' if dirty else ''}, {cpu}, {os.cpu_count()} cores, one thread, "
            f"Python {platform.python_version()}, wall {wall:.0f} s, load average (1/5/15 min) {load_at_start} at "
            f"the start and {' '.join(load)} at the end (other jobs share the cores).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=500, help="gold problems to attack (styles in turn)")
    parser.add_argument("--repeats", type=int, default=2, help="draws of each mutation per problem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timed", type=int, default=60, help="long completions to time")
    parser.add_argument("--baseline", default=None, help="a git revision whose verifier grades the same completions")
    parser.add_argument("--out", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_at_start = " ".join(open("/proc/loadavg").read().split()[:3])

    verifiers = {"ours": verify}
    if args.baseline:
        verifiers["baseline"] = baseline_verifier(args.baseline)
    counts, failures = campaign(args.problems, args.seed, args.repeats, verifiers)
    header = "| group | mutation | completions | crashes | full strict | full process | verified | failures |"
    rule = "|---|---|---|---|---|---|---|---|"
    if args.baseline:
        header, rule = header + f" `{args.baseline}`: full strict | full process | failures |", rule + "---|---|---|"
    lines = ["## Fuzz campaign", "", header, rule]
    groups = {**dict.fromkeys(WRONG, "WRONG"), **dict.fromkeys(RIGHT, "RIGHT"), **dict.fromkeys(NOISE, "NOISE")}
    totals = {which: Counter() for which in verifiers}
    for name in [*groups, "all"]:
        rows = {which: totals[which] if name == "all" else counts[which].get(name, Counter()) for which in verifiers}
        ours = rows["ours"]
        line = (f"| {groups.get(name, 'all')} | {name if name != 'all' else ''} | {ours['completions']:,} | "
                f"{ours['crashes']} | {ours['full strict']:,} | {ours['full process']:,} | {ours['verified']:,} | "
                f"{ours['failures']:,} |")
        if args.baseline:
            base = rows["baseline"]
            line += f" {base['full strict']:,} | {base['full process']:,} | {base['failures']:,} |"
        lines.append(line)
        if name != "all":
            for which in verifiers:
                totals[which].update(rows[which])
    lines += ["", "A failure is a WRONG completion paid a full `strict` or `process` reward, or a RIGHT one not paid "
              "every reward (`outcome`, `process`, `mixed`, `strict`) in full."
              + (f" The last columns grade the same completions with the verifier at commit `{args.baseline}`."
                 if args.baseline else ""), ""]
    lines += [f"- {failure}" for failure in failures[:20]]

    rng = random.Random(args.seed + 1)
    base = f" | `{args.baseline}` median ms" if args.baseline else ""
    lines += ["", f"## Speed: completions of up to {TIMED_TOKENS:,} whitespace tokens (CPU time, best of 5 each)",
              "", f"| style | kind | completions | tokens (median) | median ms | max ms{base} |",
              "|---|---|---|---|---|---|" + ("---|" if base else "")]
    timed: dict[tuple[str, str], list[tuple]] = {}
    for style in STYLES:
        for _ in range(args.timed):
            for kind, (case, text) in long_completions(rng, style).items():
                timed.setdefault((style, kind), []).append(
                    (len(text.split()), *(time_calls(case, text, 5, verifier) * 1e3 for verifier in verifiers.values())))
    for (style, kind), rows in timed.items():
        ms = [row[1] for row in rows]
        line = (f"| {style} | {kind} | {len(rows)} | {statistics.median(row[0] for row in rows):,.0f} | "
                f"{statistics.median(ms):.2f} | {max(ms):.2f} |")
        lines.append(line + (f" {statistics.median(row[2] for row in rows):.2f} |" if base else ""))
    lines += ["", "## Speed: 1 MB strings (CPU time, best of 3)", "", "| string | style | s |", "|---|---|---|"]
    for style in STYLES:
        case = sample_case(rng, style, op=20)
        for name, text in megabyte_strings(rng, case).items():
            lines.append(f"| {name} | {style} | {time_calls(case, text, repeats=3):.3f} |")
    lines += ["", provenance(sys.argv[1:] if argv is None else argv, time.perf_counter() - started, load_at_start)]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"# Verifier: fuzz campaign and speed\n\n{report}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
