"""Tokens/s of Lightning 2-process DDP against one process, one thread each, in one run, side by side.

Both sides are the real command (`lab pretrain`), micro model, 8 x 256 tokens per process per step: one process
with batch 8, then two DDP processes (gloo, one thread each) with a global batch of 16. The sides alternate for
`--repeats` rounds and the best of each is kept, because load from other jobs only ever adds time.

Two figures per side, both over the steady state (from the first to the last logged step, so start-up and saving
are excluded): tokens per wall-clock second, the speed-up a user sees; and tokens per CPU-second of the whole
process tree (from /proc), which on a machine shared with other jobs is barely moved by their load. Their ratio
(DDP over one process) is the parallel efficiency; 2 x efficiency is the speed-up two idle cores would give if no
rank ever waited for a descheduled partner, a projection, not a measurement. `uptime` is recorded before and
after: the wall-clock ratio is only meaningful when the load stayed below the number of cores minus two.

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


def tree_cpu_s(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of process `root` and all its descendants, per process (from /proc)."""
    ticks, stats = os.sysconf("SC_CLK_TCK"), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # fields after the command name: state, ppid, ..., utime (12th), stime (13th)
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited while we looked
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            tree[pid] = stats[pid][1]
            todo += [child for child, (parent, _) in stats.items() if parent == pid]
    return tree


def train(data: Path, out: Path, devices: int, tokens: int) -> dict:
    """Run one side; tokens/s over wall and over CPU time between the first and the last logged step."""
    batch = 8 * devices  # 8 sequences per process per step, as in the single-process run
    argv = [*LAB, "pretrain", "--preset", "micro", "--data", str(data), "--out", str(out), "--quiet",
            "--devices", str(devices), "--threads", "1", "--batch_size", str(batch), "--tokens", str(tokens),
            "--eval_every", "0", "--checkpoint_every", "100000", "--log_every", "25"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, cpu, marks = out / "metrics.jsonl", {}, []  # marks: (logged steps, wall, cpu) at each new log line
    while proc.poll() is None:
        cpu.update(tree_cpu_s(proc.pid))
        lines = metrics.read_text().count("\n") if metrics.exists() else 0
        if lines and (not marks or lines > marks[-1][0]):
            last = json.loads(metrics.read_text().splitlines()[-1])["step"]
            marks.append((lines, time.perf_counter(), sum(cpu.values()), last))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}")
    summary = json.loads((out / "summary.json").read_text())
    (_, wall0, cpu0, step0), (_, wall1, cpu1, step1) = marks[0], marks[-1]
    window_tokens = (step1 - step0) * batch * 256
    return {"tokens_per_s": window_tokens / (wall1 - wall0), "tokens_per_cpu_s": window_tokens / (cpu1 - cpu0),
            "steps": step1 - step0, "run_tokens_per_s": summary["tokens_per_s"]}


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
                result = train(data, tmp / f"run-{devices}-{round_}", devices, args.tokens)
                print(f"round {round_}: {devices} process(es): {result['tokens_per_s']:,.0f} tokens/s, "
                      f"{result['tokens_per_cpu_s']:,.0f} tokens/CPU-s", flush=True)
                if devices not in best or result["tokens_per_s"] > best[devices]["tokens_per_s"]:
                    best[devices] = result
        wall, load_after = time.time() - started, uptime()
    one, two = best[1], best[2]
    efficiency = two["tokens_per_cpu_s"] / one["tokens_per_cpu_s"]
    lines = [
        "| processes x threads | global batch (x 256 tokens) | tokens/s (wall) | tokens per CPU-s | wall speed-up |",
        "|---|---|---|---|---|",
        f"| 1 x 1 | 8 | {one['tokens_per_s']:,.0f} | {one['tokens_per_cpu_s']:,.0f} | 1.00 |",
        f"| 2 x 1 (Lightning DDP, gloo) | 16 | {two['tokens_per_s']:,.0f} | {two['tokens_per_cpu_s']:,.0f} | "
        f"{two['tokens_per_s'] / one['tokens_per_s']:.2f} |",
        "",
        f"Parallel efficiency (tokens per CPU-second, DDP / one process): {efficiency:.2f}; projected speed-up on two "
        f"idle cores: {2 * efficiency:.2f} (a projection: it assumes no rank waits for a descheduled partner).",
        "",
        f"- command: `python -m benchmarks.bench_ddp {' '.join(sys.argv[1:])}`".rstrip(),
        f"- commit {git_commit()}; {cpu_name()}, {len(os.sched_getaffinity(0))} CPUs; torch threads 1 per process",
        f"- {args.tokens:,} tokens per run, steady state over {one['steps']} / {two['steps']} steps, best of "
        f"{args.repeats} alternating rounds by wall tokens/s, total wall {wall:.0f} s",
        f"- load before: `{load_before}`",
        f"- load after: `{load_after}`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"# Lightning DDP vs one process (micro model, CPU)\n\n{text}\n")


if __name__ == "__main__":
    main()
