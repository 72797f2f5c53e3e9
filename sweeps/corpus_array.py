"""`lab datagen-array`: build a large corpus as a job array, byte-identical to `lab datagen`.

Why it is shaped so: a paper-scale corpus is hours of CPU on one node but embarrassingly parallel by shard,
and every row is a pure function of (seed, split, index). So the submitting process plans the shards and
writes the tokenizer (`datagen.corpus.prepare`), one array task writes each contiguous range of shards into
the shared temporary directory (each task with its own `workers` processes), and one last job merges the
shard summaries into the manifest and moves the corpus into place (`datagen.corpus.finish`). The bytes are
those of a local build because the same functions write the same shards; only where they run differs. It
lives in `sweeps/` because it needs the executors, which a stage may not import.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from core.config import ConfigError, load, parse_overrides
from core.lock import LockError, exclusive
from datagen.cli import summary
from datagen.contexts import ContextError
from datagen.corpus import CorpusError, ShardJob, built_with, finish, prepare, write_shards
from datagen.spec import CorpusSpec
from sweeps.executors import CLUSTERS, Cluster, StageResources, SweepResources, make_executor


def write_shard_range(spec: CorpusSpec, tokenizer_dir: str, jobs: list[ShardJob]) -> list[dict]:
    """One array task: its shards, in order (a stage function, pickled by reference)."""
    return write_shards(spec, tokenizer_dir, jobs, progress=False)


def shard_ranges(jobs: list[ShardJob], tasks: int) -> list[list[ShardJob]]:
    """`tasks` contiguous ranges of near-equal shard counts (one shard each when there are fewer shards).
    Shards hold `shard_rows` rows except each split's last, so equal counts are near-equal work."""
    n = min(tasks, len(jobs))
    return [jobs[i * len(jobs) // n : (i + 1) * len(jobs) // n] for i in range(n)]


def build_corpus_array(spec: CorpusSpec, out: str | Path, *, cluster: Cluster, folder: str | Path,
                       resources: StageResources, tasks: int, poll_s: float = 2.0) -> dict:
    """Plan here, write shard ranges as one job array, then write the manifest as one more job."""
    out = Path(out)
    build = prepare(spec, out, tmp=out.parent / f".{out.name}.tmp-array")
    try:
        ranges = shard_ranges(build.jobs, tasks)
        executor = make_executor(cluster, folder, resources)
        array = executor.map_array(write_shard_range, [spec] * len(ranges), [build.tokenizer_dir] * len(ranges),
                                   ranges)
        shards = [shard for job in _wait(array, poll_s) for shard in job.result()]
        manifest_job = make_executor(cluster, folder, resources).submit(finish, build, shards)
        return _wait([manifest_job], poll_s)[0].result()
    except BaseException:
        shutil.rmtree(build.tmp, ignore_errors=True)
        raise


def _wait(jobs: list, poll_s: float) -> list:
    """Wait for every job, failing as soon as any one has (by its id, with its error), not after the rest."""
    checked: set[str] = set()
    while len(checked) < len(jobs):
        for job in jobs:
            if job.job_id not in checked and job.done():
                if (error := job.exception()) is not None:
                    raise CorpusError(f"datagen job {job.job_id} failed: {error}")
                checked.add(job.job_id)
        time.sleep(poll_s if len(checked) < len(jobs) else 0)
    return jobs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab datagen-array", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke", help="preset name or YAML path (sections datagen, resources)")
    parser.add_argument("--out", required=True, type=Path, help="corpus directory to create")
    parser.add_argument("--cluster", required=True, choices=CLUSTERS, help="where the array runs (never guessed)")
    parser.add_argument("--tasks", type=int, default=64, help="array tasks (contiguous shard ranges)")
    parser.add_argument("--partition", default=None, help="SLURM partition (else the preset's)")
    args, rest = parser.parse_known_args(argv)
    # The jobs' logs and pickles: kept when a job fails (the error names the job), removed once built.
    folder = args.out.parent / f".{args.out.name}.submitit"
    try:
        if args.tasks < 1:
            raise ConfigError(f"--tasks: must be >= 1, got {args.tasks}")
        spec = load(CorpusSpec, args.preset, "datagen", parse_overrides(rest))
        resources = load(SweepResources, args.preset, "resources").datagen
        resources.partition = args.partition or resources.partition
        with exclusive(args.out):
            if existing := built_with(spec, args.out):
                print(f"{args.out}: already built with this spec")
                print(summary(existing))
                return 0
            manifest = build_corpus_array(spec, args.out, cluster=args.cluster, folder=folder,
                                          resources=resources, tasks=args.tasks)
        shutil.rmtree(folder, ignore_errors=True)
    except (ConfigError, ContextError, CorpusError, LockError) as err:
        print(f"lab datagen-array: error: {err}" + (f" (job logs: {folder})" if folder.exists() else ""),
              file=sys.stderr)
        return 2
    print(summary(manifest))
    print(f"wrote {args.out}")
    return 0
