"""Corpus build time: one worker process against all cores, same spec, in one run.

Builds the `micro` pre-training spec (compact, op 2-6) or `--preset`'s, sized by `--samples`, once per worker
count, and prints rows/s, tokens/s and wall time side by side. `--samples 1000000` gives the issue's figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from core.config import load
from core.provenance import cpu_name, git_commit
from datagen.corpus import build_corpus
from datagen.spec import CorpusSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--workers", default=f"1,{len(os.sched_getaffinity(0))}")
    args = parser.parse_args()
    print(f"commit {git_commit()[:12]}, {cpu_name()}, {len(os.sched_getaffinity(0))} cpus, preset {args.preset}")
    print(f"{'workers':>7} {'rows':>10} {'wall s':>8} {'rows/s':>9} {'tokens/s':>11} {'shards':>6}")
    for workers in sorted({int(w) for w in args.workers.split(",")}):
        spec = load(CorpusSpec, args.preset, "datagen", {"splits": {"train": args.samples}, "train_tokens": None,
                                                          "workers": workers, "shard_rows": 25_000})
        out = Path(tempfile.mkdtemp()) / "corpus"
        started = time.perf_counter()
        manifest = build_corpus(spec, out, progress=False)
        wall = time.perf_counter() - started
        rows, tokens = manifest["rows"]["train"], manifest["tokens"]["train"]
        print(f"{workers:>7} {rows:>10,} {wall:>8.1f} {rows / wall:>9,.0f} {tokens / wall:>11,.0f} "
              f"{len(manifest['shards']):>6}")
        shutil.rmtree(out.parent)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: parent {peak:.0f} MiB, largest worker {children:.0f} MiB")


if __name__ == "__main__":
    main()
