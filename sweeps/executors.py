"""Build submitit executors for stages, with the cluster always named by the caller.

Why it is shaped so: ``submitit.AutoExecutor`` guesses the cluster when ``cluster`` is left
out, and it picks SLURM as soon as an ``srun`` binary is on PATH -- so a laptop or CI box with
SLURM client tools installed would silently start sending jobs to a scheduler. Here the
cluster is a required argument and always forwarded. Resources are one typed dataclass so a
stage declares what it needs once, and the translation to submitit's parameter names lives
in one place. "local" still runs each job in its own subprocess (submitit's LocalExecutor),
so a stage behaves the same way it will on SLURM: pickled in, pickled out, never sharing
the caller's process; "debug" (in-process) is there for stepping through with a debugger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import submitit

Cluster = Literal["local", "slurm", "debug"]
CLUSTERS: tuple[Cluster, ...] = ("local", "slurm", "debug")


@dataclass
class StageResources:
    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float = 4
    timeout_min: int = 60
    array_parallelism: int = 64
    # Raw `#SBATCH --key=value` lines for whatever submitit has no name for (qos, account, ...).
    extra: dict[str, str] = field(default_factory=dict)

    def to_submitit(self) -> dict[str, Any]:
        """AutoExecutor parameters: generic names apply everywhere, ``slurm_*`` only on SLURM."""
        params: dict[str, Any] = {
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_gb,
            "timeout_min": self.timeout_min,
            "slurm_array_parallelism": self.array_parallelism,
        }
        # A zero GPU count is left out rather than sent as `--gpus-per-node=0`: that is still a
        # GRES request, which CPU-only partitions or job_submit policies may reject.
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if self.partition is not None:
            params["slurm_partition"] = self.partition
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params


def make_executor(cluster: Cluster, folder: str | Path, resources: StageResources) -> submitit.Executor:
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; expected one of {CLUSTERS}")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**resources.to_submitit())
    return executor


@dataclass
class SweepResources:
    """Preset section `resources:`: what each stage's jobs ask the scheduler for."""

    datagen: StageResources = field(default_factory=lambda: StageResources(cpus_per_task=2, timeout_min=60))
    pretrain: StageResources = field(default_factory=StageResources)
    midtrain: StageResources = field(default_factory=StageResources)
    rl: StageResources = field(default_factory=StageResources)
    eval: StageResources = field(default_factory=StageResources)

    def by_stage(self) -> dict[str, StageResources]:
        return {name: getattr(self, name) for name in ("datagen", "pretrain", "midtrain", "rl", "eval")}
