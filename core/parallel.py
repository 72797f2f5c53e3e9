"""Data parallelism and thread counts: where a stage's processes run and how many threads each one uses.

Every training and evaluation stage takes the same three fields (`--devices N --num_nodes M --threads T`), so
they live in one mixin dataclass that the stages' configs inherit. They say *where* a run executes, not *what*
it computes: a run keeps its global batch, its data order and its results whatever they are, so they are left
out of a run directory's identity (`without_placement`) and a run started on one process resumes on two.

Processes are Lightning's (DDP, gloo on CPU, NCCL on GPU): started by Lightning's launcher when run by hand, or
by SLURM (one task per device) when Lightning finds a SLURM allocation. Nothing here creates a process group.

Threads are chosen here, not left to torch, whose default (one per core of the machine) is a trap on a shared
machine: on 2 cores with another job on one of them, one micro pre-training process ran ~2.5K tokens/s on two
threads against ~7.5K on one. The count comes from `--threads`, else from the CPUs the scheduler gave the task
(SLURM_CPUS_PER_TASK, or LAB_THREADS that a local sweep sets from the preset's `resources`), else a default:
one thread per process on CPU (DDP over gloo runs one thread per process; small models measured fastest on
one), and the node's cores shared among its processes on GPU, where threads only feed the device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from core.config import ConfigError

PLACEMENT_FIELDS = ("devices", "num_nodes", "threads")


@dataclass
class Placement:
    devices: int = 1  # processes per node: GPUs on a GPU node, CPU processes (one thread each) otherwise
    num_nodes: int = 1
    threads: int = 0  # torch intra-op threads per process; 0: the scheduler's CPUs per task, else the default

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def validate(self, where: str) -> None:
        for name in ("devices", "num_nodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.threads < 0:
            raise ConfigError(f"{where}.threads: must be >= 0 (0 picks a default), got {self.threads}")

    def trainer_args(self) -> dict:
        """Lightning Trainer/Fabric arguments: the accelerator it finds, DDP as soon as there are two processes."""
        return {"accelerator": "auto", "devices": self.devices, "num_nodes": self.num_nodes,
                "strategy": "ddp" if self.world_size > 1 else "auto"}


def without_placement(config: dict) -> dict:
    """A config's identity: everything but where it runs."""
    return {k: v for k, v in config.items() if k not in PLACEMENT_FIELDS}


def choose_threads(placement: Placement) -> tuple[int, str]:
    """(intra-op threads per process, where that number came from)."""
    if placement.threads:
        return placement.threads, "--threads"
    for variable in ("SLURM_CPUS_PER_TASK", "LAB_THREADS"):
        if os.environ.get(variable, "").isdigit() and int(os.environ[variable]) > 0:
            return int(os.environ[variable]), variable
    if not torch.cuda.is_available():
        return 1, "default: one per CPU process"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // placement.devices), "default: the node's cores over its processes"


def set_threads(placement: Placement, stage: str) -> int:
    """Set torch's intra-op thread count for this process (and OMP_NUM_THREADS, which Lightning's launcher
    respects and its DDP children inherit), print it once per run, and return it."""
    threads, source = choose_threads(placement)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if rank_zero_only.rank == 0:
        print(f"{stage}: {threads} torch thread(s) per process ({source}); "
              f"{placement.world_size} process(es) on {placement.num_nodes} node(s)")
    return threads
