"""Throughput of `lab eval` (sampling + verification) on CPU for a micro-sized model, and what the paper's protocol
would cost at that rate.

The whole harness runs — problem selection, the KV-cache sampler, decoding, the verifier, the tables — on a
randomly initialised model of the `micro` preset's shape (speed does not depend on the weights). A random model
almost never emits `</answer>`, so every completion runs to `max_new_tokens`; that budget is set to 1.2 × the
longer timed op's mean gold completion, making samples about as long as correct ones. The heavy case (the
paper's 19 ops × 200 problems × 128 samples + 1 greedy) is extrapolated from tokens/s and the mean gold
completion length of each op 2–20 in the micro rendering; attention cost grows with length, so long ops will
run somewhat slower than the extrapolation says.

Threads: on a machine other processes are also using, pass --threads 1. On two busy cores, two OpenMP threads
measured 270–570 tokens/s against 4,700–5,900 for one thread; two threads on idle cores measured 8,000.

    python -m benchmarks.bench_eval [--threads 2] [--problems 10] [--samples 32] [--ops 5 10]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from analysis.config import EvalConfig, Ladder, Span
from analysis.evaluate import evaluate, prompt_of
from core import config
from datagen.corpus import build_corpus, read_split
from datagen.spec import CorpusSpec
from datagen.tokenizer import load_tokenizer
from pretrain.config import PretrainConfig
from pretrain.model import build_model

PAPER_OPS = range(2, 21)
PAPER_PROBLEMS, PAPER_SAMPLES = 200, 128


def bench_corpus(root: Path, rows_per_op: int) -> Path:
    """The micro preset's rendering and arithmetic, `rows_per_op` test (and train) problems at every op 2–20."""
    rows = rows_per_op * len(PAPER_OPS)
    data = config.load_preset_section("micro", "datagen") | {
        "splits": {"train": rows, "test": rows}, "ops": [{"lo": PAPER_OPS[0], "hi": PAPER_OPS[-1]}],
        "workers": 1}
    build_corpus(config.build(CorpusSpec, data, "datagen"), root / "corpus", progress=False)
    return root / "corpus"


def micro_model(root: Path, corpus: Path) -> Path:
    tokenizer = load_tokenizer(corpus / "tokenizer")
    model = build_model(config.load(PretrainConfig, "micro", "pretrain").model, tokenizer, seed=0)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model"


def gold_lengths(corpus: Path) -> dict[int, float]:
    """Mean tokens of a gold completion (after `<solution>`, through `</answer>`) per op; from the train split,
    which has every op (the test split may have no reasoning graph of a small op)."""
    rows = read_split(corpus, "train", columns=["op", "text"])
    tokenizer = load_tokenizer(corpus / "tokenizer")
    completions = [text[len(prompt_of(text)):] for text in rows["text"]]
    rows["length"] = [len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    return rows.groupby("op")["length"].mean().to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--problems", type=int, default=10, help="problems per op")
    parser.add_argument("--samples", type=int, default=32, help="samples per problem")
    parser.add_argument("--ops", type=int, nargs=2, default=[5, 10], help="the two ops timed")
    parser.add_argument("--batch-prompts", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = bench_corpus(root, rows_per_op=args.problems)
        model = micro_model(root, corpus)
        lengths = gold_lengths(corpus)
        low, high = args.ops
        # Two one-op splits select exactly the timed ops; the third lies beyond every corpus op.
        ladder = Ladder(ID=Span(low, low), edge=Span(high, high), hard=Span(99, 99))
        budget = round(max(lengths[low], lengths[high]) * 1.2)  # gold lengths vary within an op
        cfg = EvalConfig(problems_per_op=args.problems, samples=args.samples, max_new_tokens=budget,
                         batch_prompts=args.batch_prompts, n_boot=200)
        started = time.perf_counter()
        summary = evaluate(model, corpus, root / "eval", cfg, ladder, progress=False)
        wall = time.perf_counter() - started

    throughput = summary["provenance"]["throughput"]
    params, cpu = summary["model"]["params"], summary["provenance"]["hardware"]["cpu"]
    print(f"micro-sized Qwen2, {params / 1e6:.2f}M parameters, {args.threads} threads, {cpu}")
    print(f"timed: ops {low} and {high} × {args.problems} problems × ({args.samples} sampled + 1 greedy), "
          f"{budget} new tokens each (gold completions: op {low} {lengths[low]:.0f}, "
          f"op {high} {lengths[high]:.0f} tokens)")
    print(f"  {throughput['samples']:,} samples, {throughput['tokens']:,} tokens in {throughput['sampling_s']:.1f}s "
          f"sampling+scoring ({wall:.1f}s with loading and tables)")
    print(f"  {throughput['samples_per_s']:,.1f} samples/s, {throughput['tokens_per_s']:,.0f} tokens/s")

    heavy_samples = len(PAPER_OPS) * PAPER_PROBLEMS * (PAPER_SAMPLES + 1)
    heavy_tokens = sum(PAPER_PROBLEMS * (PAPER_SAMPLES + 1) * lengths[op] for op in PAPER_OPS)
    hours = heavy_tokens / throughput["tokens_per_s"] / 3600
    print(f"heavy case: {len(PAPER_OPS)} ops (2–20) × {PAPER_PROBLEMS} problems × ({PAPER_SAMPLES} + 1 greedy) = "
          f"{heavy_samples:,} samples, {heavy_tokens / 1e6:.1f}M tokens at gold lengths "
          f"(op 2 {lengths[2]:.0f} … op 20 {lengths[20]:.0f} tokens)")
    print(f"  ≈ {hours:.1f} h per checkpoint at {throughput['tokens_per_s']:,.0f} tokens/s")


if __name__ == "__main__":
    main()
