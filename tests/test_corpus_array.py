"""A corpus built as a job array (local subprocesses, and a real SLURM array) is byte-identical to a local build."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datagen.corpus import build_corpus, read_manifest, verify_shards
from sweeps.corpus_array import build_corpus_array, shard_ranges
from sweeps.executors import StageResources
from tests.test_corpus import spec

IMPORT_ROOT = Path(__file__).resolve().parents[1]


def same_corpus(a: Path, b: Path) -> None:
    """Every file byte-identical, and the manifests equal up to their provenance (wall time, host)."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for name in files:
        if name.name != "manifest.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (a, b)]
    for m in manifests:
        m.pop("provenance")
    assert manifests[0] == manifests[1]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "corpus"
    build_corpus(spec(), out, progress=False)
    return out


def test_shard_ranges_are_contiguous_and_cover_every_shard(tmp_path):
    from datagen.corpus import prepare

    build = prepare(spec(), tmp_path / "c")
    ranges = shard_ranges(build.jobs, 3)
    assert [job for r in ranges for job in r] == build.jobs and len(ranges) == 3
    assert len(shard_ranges(build.jobs, 64)) == len(build.jobs)


def test_local_array_is_byte_identical(tmp_path, local):
    out = tmp_path / "array"
    manifest = build_corpus_array(spec(), out, cluster="local", folder=tmp_path / "logs",
                                  resources=StageResources(timeout_min=5), tasks=2, poll_s=0.2)
    assert manifest["rows"] == read_manifest(local)["rows"]
    verify_shards(out)
    same_corpus(local, out)
    assert not list(tmp_path.glob(".array.tmp*"))


def test_a_failed_task_is_reported_by_id_without_waiting_for_the_rest(tmp_path):
    from datagen.corpus import CorpusError
    from sweeps.corpus_array import _wait
    from sweeps.executors import make_executor

    executor = make_executor("local", tmp_path, StageResources(timeout_min=5))
    slow = executor.submit(subprocess.run, ["sleep", "120"])
    bad = executor.submit(int, "not a number")
    with pytest.raises(CorpusError, match=f"(?s)datagen job {bad.job_id} failed.*invalid literal"):
        _wait([slow, bad], poll_s=0.2)
    slow.cancel()


@pytest.mark.slurm
def test_slurm_array_is_byte_identical(slurm_cluster, monkeypatch, tmp_path, local):
    # Jobs inherit our environment (sbatch --export=ALL); the shared tmp_path is the cluster's filesystem.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(IMPORT_ROOT), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "array"
    resources = StageResources(partition=slurm_cluster.partition, mem_gb=1, timeout_min=5, array_parallelism=2)
    build_corpus_array(spec(), out, cluster="slurm", folder=tmp_path / "logs", resources=resources, tasks=3,
                       poll_s=0.5)
    same_corpus(local, out)
    submissions = sorted((tmp_path / "logs").glob("*_submission.sh"))
    assert any("#SBATCH --array=0-2%2" in s.read_text() for s in submissions)


def test_cli_runs_the_array_locally(tmp_path):
    out = tmp_path / "c"
    result = subprocess.run([sys.executable, "-m", "sweeps.cli", "datagen-array", "--preset", "smoke", "--out",
                             str(out), "--cluster", "local", "--tasks", "2", "--seed", "5"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_manifest(out)["spec"]["seed"] == 5 and "wrote" in result.stdout
    assert not (tmp_path / ".c.submitit").exists()  # the jobs' files go once the corpus is built
    again = subprocess.run([sys.executable, "-m", "sweeps.cli", "datagen-array", "--preset", "smoke", "--out",
                            str(out), "--cluster", "local", "--seed", "5"], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and "already built with this spec" in again.stdout
    other = subprocess.run([sys.executable, "-m", "sweeps.cli", "datagen-array", "--preset", "smoke", "--out",
                            str(out), "--cluster", "local", "--seed", "6"], capture_output=True, text=True, cwd=tmp_path)
    assert other.returncode == 2 and "different spec" in other.stderr
    bad = subprocess.run([sys.executable, "-m", "sweeps.cli", "datagen-array", "--out", str(tmp_path / "d"),
                          "--cluster", "local", "--tasks", "0"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "--tasks" in bad.stderr and not (tmp_path / "d").exists()
