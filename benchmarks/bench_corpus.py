"""Corpus build: peak resident memory per worker and rows/s, against the builder before memory was bounded.

Each build runs in a fresh process with one worker (the process itself) by default, so its peak RSS is what one
worker of a `workers: N` build or one array task needs; rows/s per worker then scales with cores, since shards are
independent. `--workers N` builds with N worker processes (a big size in less wall time): the peak is then the
largest process's (a worker's, or the parent's while it merges the manifest) and CPU time sums them all. The baseline is the builder at `--baseline-rev` (which held a whole shard as Python dicts and
every reasoning hash of the corpus), run at a size where it still fits. The last lines extrapolate the
paper's 10B-token corpus from the largest measured build (tokens per row, and rows per CPU-second: the
cores are shared with other jobs, so wall-clock rows/s understates a dedicated core).

    python benchmarks/bench_corpus.py --sizes 1000000,10000000 --out results/corpus_build.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.config import load
from core.provenance import cpu_name, git_commit
from datagen.spec import CorpusSpec

REPO = Path(__file__).resolve().parents[1]
PAPER_TOKENS = 10_000_000_000


def _builder(rev: str | None):
    """`datagen.corpus` as it is, or as it was at git revision `rev` (loaded from `git show`)."""
    import datagen.corpus

    if rev is None:
        return datagen.corpus
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:datagen/corpus.py"], capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_corpus.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_corpus"] = module
    spec.loader.exec_module(module)
    return module


def _one(preset: str, rows: int, rev: str | None, out: str, workers: int) -> None:
    """Child process: build, then print one JSON line with the figures."""
    spec = load(CorpusSpec, preset, "datagen", {"splits": {"train": rows}, "train_tokens": None, "workers": workers})
    builder = _builder(rev)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    manifest = builder.build_corpus(spec, Path(out) / "corpus", progress=False)
    wall = time.perf_counter() - started
    usage, workers_usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
           + workers_usage.ru_utime + workers_usage.ru_stime)
    print(json.dumps({"rows": manifest["rows"]["train"], "tokens": manifest["tokens"]["train"], "wall_s": wall,
                      "cpu_s": cpu, "peak_rss_mib": max(usage.ru_maxrss, workers_usage.ru_maxrss) / 1024,
                      "shards": len(manifest["shards"]), "shard_rows": spec.shard_rows, "workers": workers}))


def measure(preset: str, rows: int, rev: str | None, workers: int = 1) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as out:
        cmd = [sys.executable, __file__, "--_one", preset, str(rows), rev or "-", out, str(workers)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    if sys.argv[1:2] == ["--_one"]:
        preset, rows, rev, out, workers = sys.argv[2:7]
        return _one(preset, int(rows), None if rev == "-" else rev, out, int(workers))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="datagen section to build (natural, op 2-10: the paper's)")
    parser.add_argument("--sizes", default="1000000,10000000", help="train rows of the bounded builder")
    parser.add_argument("--baseline-rev", default="308d4b1", help="git revision of the unbounded builder")
    parser.add_argument("--baseline-sizes", default="30000", help="rows for both builders side by side")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the --sizes builds")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    load_before, started = _load(), time.time()
    runs = []
    for rows in [int(r) for r in args.baseline_sizes.split(",") if r]:
        runs += [("baseline " + args.baseline_rev, measure(args.preset, rows, args.baseline_rev)),
                 ("bounded", measure(args.preset, rows, None))]
    runs += [("bounded" + (f", {args.workers} workers" if args.workers > 1 else ""),
              measure(args.preset, int(rows), None, args.workers)) for rows in args.sizes.split(",") if rows]
    lines = [
        f"# Corpus build: memory per worker and throughput (`{args.preset}` preset's datagen spec)", "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- commit {git_commit()[:12]}, {cpu_name()}, {len(os.sched_getaffinity(0))} cpus shared with other "
        f"agents, one worker process per build unless the row says more, OMP_NUM_THREADS=1",
        f"- load before: `{load_before}`", f"- load after: `{_load()}`",
        f"- total wall {time.time() - started:.0f} s", "",
        "| builder | rows | shards (rows each) | wall s | rows/s wall | CPU s | rows/CPU-s | tokens/row "
        "| peak RSS MiB (largest process) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in runs:
        lines.append(f"| {name} | {r['rows']:,} | {r['shards']} ({r['shard_rows']:,}) | {r['wall_s']:.0f} | "
                     f"{r['rows'] / r['wall_s']:,.0f} | {r['cpu_s']:.0f} | {r['rows'] / r['cpu_s']:,.0f} | "
                     f"{r['tokens'] / r['rows']:.0f} | {r['peak_rss_mib']:,.0f} |")
    largest = runs[-1][1]
    rate, tokens_per_row = largest["rows"] / largest["cpu_s"], largest["tokens"] / largest["rows"]
    paper_rows = PAPER_TOKENS / tokens_per_row
    lines += ["", f"Paper corpus (10B tokens at {tokens_per_row:.0f} tokens/row = {paper_rows / 1e6:.1f}M rows), "
              f"extrapolated from the largest build's {rate:,.0f} rows per CPU-second (linear: shards are "
              f"independent; planning and the manifest merge are not included): "
              f"{paper_rows / rate / 3600:.1f} h on 1 core, {paper_rows / rate / 64 / 3600:.2f} h on 64 cores."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
