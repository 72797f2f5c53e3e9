"""Shared fixtures: small real corpora built once per test session."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models run fastest on one thread here, and one thread makes float results (and so the trajectories
    that tests pin) independent of the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_spec(rendering: str):
    from core import config
    from datagen.spec import CorpusSpec

    return config.build(CorpusSpec, {
        "seed": 11, "rendering": rendering, "splits": {"train": 150, "test": 30},
        "ops": [{"lo": 1, "hi": 12}], "shard_rows": 100,
        "contexts": [{"name": "zoo", "share": 0.4}, {"name": "teachers", "share": 0.3}, {"name": "movies", "share": 0.3}],
        "graph": {"modulus": None if rendering == "natural" else 23},
    }, "datagen")


@pytest.fixture(scope="session")
def corpus_dirs(tmp_path_factory):
    """A compact mod-23 corpus and a natural unbounded-integer corpus, all three contexts."""
    from datagen.corpus import build_corpus

    root = tmp_path_factory.mktemp("corpora")
    dirs = []
    for rendering in ("compact", "natural"):
        build_corpus(_tiny_spec(rendering), root / rendering, progress=False)
        dirs.append(root / rendering)
    return dirs


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slurm: runs jobs on a private single-node SLURM cluster (needs root; installs slurm-wlm)"
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A throwaway slurmctld + slurmd + munged for the whole session; SLURM_CONF points at it."""
    from tests.slurm_cluster import running_cluster

    with running_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
