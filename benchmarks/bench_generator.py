"""Throughput, memory and sequence length of the data generator, on one process.

Corpus size is set in tokens and built by worker processes, so what matters is samples/s of one process
(generate + natural render, op uniform in 2..20), how flat its memory stays, and how long each op's text is
in each rendering. The verifier's rate is measured too, since RL grades every rollout with it.

Run: python benchmarks/bench_generator.py [--samples N] [--context zoo]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time
import tracemalloc

from datagen.contexts import load_context
from datagen.graph import GraphConfig, generate
from datagen.render import STYLES, render
from datagen.tokenizer import build_tokenizer
from datagen.verify import verify

OP_RANGE = (2, 20)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--per-op", type=int, default=200, help="samples per op for the length table")
    parser.add_argument("--context", default="zoo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ctx = load_context(args.context)

    print(f"context={args.context} samples={args.samples} op uniform {OP_RANGE[0]}-{OP_RANGE[1]}, one process")
    print("samples/s as wall / CPU seconds")
    for label, cfg in (("unbounded (paper)", GraphConfig(modulus=None)), ("mod 23 (iGSM)", GraphConfig())):
        row = {"generate": throughput(ctx, cfg, args.samples, args.seed, None)}
        for style in STYLES:
            row[f"generate+{style}"] = throughput(ctx, cfg, args.samples, args.seed, style)
        for style in STYLES:
            row[f"verify {style}"] = verify_rate(ctx, cfg, min(args.samples, 2000), args.seed, style)
        print(f"{label}:")
        for what, (wall, cpu) in row.items():
            print(f"  {what:>18}: {wall:7.0f} / {cpu:7.0f}")

    peak = traced_peak_mib(ctx, GraphConfig(modulus=None), min(args.samples, 1000), args.seed)
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"memory: tracemalloc peak {peak:.2f} MiB over generate+natural; process max RSS {max_rss:.0f} MiB")

    table = lengths_per_op(ctx, GraphConfig(modulus=None), args.per_op, args.seed)
    print("\nmean length of the full sequence (unbounded values), tokens / characters:")
    print(f"{'op':>3} | {'natural tokens':>14} {'chars':>7} | {'compact tokens':>14} {'chars':>7}")
    for op, row in table.items():
        (nw, nc), (cw, cc) = row["natural"], row["compact"]
        print(f"{op:>3} | {nw:14.1f} {nc:7.0f} | {cw:14.1f} {cc:7.0f}")


if __name__ == "__main__":
    main()
