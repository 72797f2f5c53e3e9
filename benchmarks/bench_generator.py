"""The generator against the study's: per-op problem statistics beside GSM-Infinite's, throughput, memory and
sequence length, on one process.

The per-op table is the acceptance test of the default GraphConfig: for op 2..20 the means of arithmetic
operations, necessary quantities, statements, distractor statements and characters (natural rendering, as the
reference counts them: problem + question + solution) are printed beside the reference's
(../shared/reference/gsm_infinite_stats.json, GSM-Infinite's forward generator as the study drove it), and any
cell more than 15 % off is flagged. Corpus size is set in tokens and built by worker processes, so what
matters next is samples/s of one process (generate + natural render, op uniform in 2..20), how flat its memory
stays, and how long each op's text is in each rendering. The verifier's rate is measured too, since RL grades
every rollout with it.

Run: python benchmarks/bench_generator.py [--samples N] [--per-op N] [--compare-per-op N] [--reference PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import time
import tracemalloc
from pathlib import Path

from datagen.contexts import load_context
from datagen.graph import GraphConfig, generate
from datagen.render import STYLES, render
from datagen.tokenizer import build_tokenizer
from datagen.verify import verify

OP_RANGE = (2, 20)
TOLERANCE = 0.15
REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "gsm_infinite_stats.json"
CONTEXTS = ("zoo", "teachers", "movies")  # the reference rotates its three templates the same way
# column -> (our per-problem measurement, the reference's field)
COLUMNS = {
    "arith ops": (lambda p, r: p.arith_ops, lambda ref: ref["ops_objects"]["mean"]),
    "quantities": (lambda p, r: len(p.necessary_nodes()), lambda ref: ref["n_quantities"]["mean"]),
    "statements": (lambda p, r: sum(n.kind != "aggregate" for n in p.nodes), lambda ref: ref["n_statements"]["mean"]),
    "distractors": (lambda p, r: sum(not n.necessary for n in p.nodes), lambda ref: ref["n_distractors"]["mean"]),
    "chars": (lambda p, r: len(r.problem) + len(r.question) + len(r.solution),
              lambda ref: sum(ref[f"chars_{k}"]["mean"] for k in ("problem", "question", "solution"))),
}


def rates(run, samples: int) -> tuple[float, float]:
    """(per wall second, per CPU second) of `run()`; on a shared machine the two differ and CPU is the fair one."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return samples / (time.perf_counter() - wall), samples / (time.process_time() - cpu)


def throughput(ctx, cfg: GraphConfig, samples: int, seed: int, style: str | None) -> tuple[float, float]:
    """Samples per second of generate (+ render in `style`, unless None)."""
    rng = random.Random(seed)
    n_groups, n_items = len(ctx.groups), len(ctx.items)

    def run():
        for _ in range(samples):
            problem = generate(rng.randint(*OP_RANGE), rng, cfg, n_groups, n_items)
            if style is not None:
                render(problem, ctx, style, rng)
    return rates(run, samples)


def verify_rate(ctx, cfg: GraphConfig, samples: int, seed: int, style: str) -> tuple[float, float]:
    rng = random.Random(seed)
    cases = []
    for _ in range(samples):
        problem = generate(rng.randint(*OP_RANGE), rng, cfg, len(ctx.groups), len(ctx.items))
        rendered = render(problem, ctx, style, rng)
        cases.append((rendered.text[len(rendered.prompt):], problem, rendered.names))

    def run():
        for completion, problem, names in cases:
            verify(completion, problem, names, style)
    return rates(run, samples)


def traced_peak_mib(ctx, cfg: GraphConfig, samples: int, seed: int) -> float:
    tracemalloc.start()
    throughput(ctx, cfg, samples, seed, "natural")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def lengths_per_op(ctx, cfg: GraphConfig, per_op: int, seed: int) -> dict[int, dict[str, tuple[float, float]]]:
    """op -> style -> (mean tokens under that rendering's corpus tokenizer, mean characters) of the sequence."""
    tokenizers = {style: build_tokenizer(styles=(style,)) for style in STYLES}
    rng = random.Random(seed)
    table = {}
    for op in range(OP_RANGE[0], OP_RANGE[1] + 1):
        texts = {style: [] for style in STYLES}
        for _ in range(per_op):
            problem = generate(op, rng, cfg, len(ctx.groups), len(ctx.items))
            for style in STYLES:
                texts[style].append(render(problem, ctx, style, rng).text)
        table[op] = {style: (statistics.mean(map(len, tokenizers[style](ts)["input_ids"])),
                             statistics.mean(len(t) for t in ts)) for style, ts in texts.items()}
    return table


def reference_table(cfg: GraphConfig, per_op: int, seed: int, reference: dict) -> tuple[list[list[str]], int]:
    """Rows of op | ours / reference per column (flagged '!' beyond TOLERANCE); and the number of flags.

    Also checks what must hold exactly: every problem has the requested op, and every value is in 1..1000.
    """
    contexts = [load_context(c) for c in CONTEXTS]
    rng = random.Random(seed)
    rows, flags = [], 0
    for op in range(OP_RANGE[0], OP_RANGE[1] + 1):
        sums = dict.fromkeys(COLUMNS, 0.0)
        max_values = []
        for i in range(per_op):
            ctx = contexts[i % len(contexts)]
            problem = generate(op, rng, cfg, len(ctx.groups), len(ctx.items))
            assert sum(n.edges for n in problem.necessary_nodes()) == problem.op == op
            assert all(1 <= n.value <= cfg.value_cap for n in problem.nodes)
            rendered = render(problem, ctx, "natural", rng)
            for column, (ours, _) in COLUMNS.items():
                sums[column] += ours(problem, rendered)
            max_values.append(max(n.value for n in problem.necessary_nodes()))
        ref = reference[str(op)]
        row = [str(op)]
        for column, (_, theirs) in COLUMNS.items():
            mine, target = sums[column] / per_op, theirs(ref)
            off = abs(mine - target) > TOLERANCE * target if target else mine != 0
            flags += off
            row.append(f"{mine:.2f} / {target:.2f}{' !' if off else ''}" if column != "chars"
                       else f"{mine:.0f} / {target:.0f}{' !' if off else ''}")
        row.append(f"{statistics.mean(max_values):.1f} / {ref['node_value_max']['mean']:.1f}")
        rows.append(row)
    return rows, flags


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--per-op", type=int, default=200, help="samples per op for the length table")
    parser.add_argument("--context", default="zoo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="gsm_infinite_stats.json")
    parser.add_argument("--compare-per-op", type=int, default=2000, help="problems per op for the reference table")
    args = parser.parse_args()
    ctx = load_context(args.context)
    started = time.perf_counter()

    reference = json.loads(args.reference.read_text())
    header = ["op", *(f"{c} (ours / ref)" for c in COLUMNS), "max value (ours / ref)"]
    rows, flags = reference_table(GraphConfig(), args.compare_per_op, args.seed, reference)
    print(f"default GraphConfig vs GSM-Infinite ({reference['meta']['generator']}), {args.compare_per_op} problems "
          f"per op over {', '.join(CONTEXTS)}; '!' = more than {TOLERANCE:.0%} off; every op exact, values 1-1000")
    print(markdown_table(header, rows))
    print(f"cells outside ±{TOLERANCE:.0%}: {flags} of {len(rows) * len(COLUMNS)}\n")

    print(f"context={args.context} samples={args.samples} op uniform {OP_RANGE[0]}-{OP_RANGE[1]}, one process")
    print("samples/s as wall / CPU seconds")
    for label, cfg in (("study (default)", GraphConfig()), ("mod 23, '-' constants, distractors 0.5",
                                                            GraphConfig(modulus=23, distractors=0.5,
                                                                        const_ops=("+", "-", "*")))):
        row = {"generate": throughput(ctx, cfg, args.samples, args.seed, None)}
        for style in STYLES:
            row[f"generate+{style}"] = throughput(ctx, cfg, args.samples, args.seed, style)
        for style in STYLES:
            row[f"verify {style}"] = verify_rate(ctx, cfg, min(args.samples, 2000), args.seed, style)
        print(f"{label}:")
        for what, (wall, cpu) in row.items():
            print(f"  {what:>18}: {wall:7.0f} / {cpu:7.0f}")

    peak = traced_peak_mib(ctx, GraphConfig(), min(args.samples, 1000), args.seed)
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"memory: tracemalloc peak {peak:.2f} MiB over generate+natural; process max RSS {max_rss:.0f} MiB")

    table = lengths_per_op(ctx, GraphConfig(), args.per_op, args.seed)
    print(f"\nmean length of the full sequence (default GraphConfig, context {args.context}), tokens / characters:")
    print(markdown_table(["op", *(f"{style} tokens / chars" for style in STYLES)],
                         [[str(op), *(f"{row[style][0]:.1f} / {row[style][1]:.0f}" for style in STYLES)]
                          for op, row in table.items()]))
    print(f"\nwall {time.perf_counter() - started:.0f} s, python {platform.python_version()}, {platform.machine()}")


if __name__ == "__main__":
    main()
