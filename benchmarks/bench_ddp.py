"""Tokens/s of Lightning 2-process DDP against one process, one thread each, in one run, side by side.

Both sides are the real command (`lab pretrain`), micro model, 8 x 256 tokens per process per step: one process
with batch 8, then two DDP processes (gloo, one thread each) with a global batch of 16. Throughput is the run's own
figure (`summary.json`: tokens / training wall time, process start-up excluded). The sides alternate for
`--repeats` rounds and the best of each is kept, because load from other jobs only ever adds time. `uptime`
is recorded before and after: on a shared machine the ratio is only meaningful when the load stayed below the
number of cores minus the two processes measured.

    python -m benchmarks.bench_ddp [--data CORPUS] [--tokens 400000] [--repeats 2] [--out results/ddp.md]

Without --data a micro-spec corpus of 20K training rows is built in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.provenance import cpu_name, git_commit

LAB = [sys.executable, "-m", "sweeps.cli"]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def train(data: Path, out: Path, devices: int, tokens: int) -> dict:
    batch = 8 * devices  # 8 sequences per process per step, as in the single-process run
    argv = [*LAB, "pretrain", "--preset", "micro", "--data", str(data), "--out", str(out), "--quiet",
            "--devices", str(devices), "--threads", "1", "--batch_size", str(batch), "--tokens", str(tokens),
            "--eval_every", "0", "--checkpoint_every", "100000", "--log_every", "50"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="markdown file to write the table and provenance to")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ddp-") as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "corpus"
            subprocess.run([*LAB, "datagen", "--preset", "micro", "--out", str(data), "--splits",
                            "{train: 20000, val: 100}"], check=True, stdout=subprocess.DEVNULL)
        load_before, started = uptime(), time.time()
        best: dict[int, dict] = {}
        for round_ in range(args.repeats):
            for devices in (1, 2):
                summary = train(data, tmp / f"run-{devices}-{round_}", devices, args.tokens)
                print(f"round {round_}: {devices} process(es): {summary['tokens_per_s']:,.0f} tokens/s")
                if devices not in best or summary["tokens_per_s"] > best[devices]["tokens_per_s"]:
                    best[devices] = summary
        wall, load_after = time.time() - started, uptime()
    one, two = best[1]["tokens_per_s"], best[2]["tokens_per_s"]
    lines = [
        "| processes x threads | global batch (sequences x 256 tokens) | tokens/s | speed-up |",
        "|---|---|---|---|",
        f"| 1 x 1 | 8 | {one:,.0f} | 1.00 |",
        f"| 2 x 1 (Lightning DDP, gloo) | 16 | {two:,.0f} | {two / one:.2f} |",
        "",
        f"- command: `python -m benchmarks.bench_ddp {' '.join(sys.argv[1:])}`".rstrip(),
        f"- commit {git_commit()}; {cpu_name()}, {len(os.sched_getaffinity(0))} CPUs; torch threads 1 per process",
        f"- {args.tokens:,} tokens per run, best of {args.repeats} alternating rounds, wall {wall:.0f} s",
        f"- load before: `{load_before}`",
        f"- load after: `{load_after}`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"# Lightning DDP vs one process (micro model, CPU)\n\n{text}\n")


if __name__ == "__main__":
    main()
