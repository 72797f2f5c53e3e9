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

from core.config import ConfigError

Cluster = Literal["local", "slurm", "debug"]
CLUSTERS: tuple[Cluster, ...] = ("local", "slurm", "debug")


@dataclass
class StageResources:
    """One stage's job: `nodes` x `tasks_per_node` processes (one per device; the stage runs them as Lightning
    DDP ranks), each with `cpus_per_task` CPUs (its torch threads) and, per node, `gpus_per_node` GPUs."""

    nodes: int = 1
    tasks_per_node: int = 1  # = devices per node: one task per GPU, or per CPU process of a CPU DDP run
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float = 4  # per node
    timeout_min: int = 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64
    # Raw `#SBATCH --key=value` lines for whatever has no field here (reservation, exclusive, ...).
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        for name in ("nodes", "tasks_per_node", "cpus_per_task", "timeout_min", "array_parallelism"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0 or self.mem_gb <= 0:
            raise ConfigError(f"{where}: gpus_per_node must be >= 0 and mem_gb > 0")
        if self.gpus_per_node and self.tasks_per_node != self.gpus_per_node:
            raise ConfigError(f"{where}.tasks_per_node: {self.tasks_per_node} tasks for {self.gpus_per_node} GPUs "
                              "per node; a data-parallel stage runs one task per GPU")

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node

    def stage_flags(self) -> list[str]:
        """The stage's own placement flags, so the processes Lightning expects are the tasks SLURM starts."""
        return ["--devices", str(self.tasks_per_node), "--num_nodes", str(self.nodes)]

    def to_submitit(self) -> dict[str, Any]:
        """AutoExecutor parameters: generic names apply everywhere, ``slurm_*`` only on SLURM."""
        params: dict[str, Any] = {
            "nodes": self.nodes,
            "tasks_per_node": self.tasks_per_node,
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_gb,
            "timeout_min": self.timeout_min,
            "slurm_array_parallelism": self.array_parallelism,
        }
        # A zero GPU count is left out rather than sent as `--gpus-per-node=0`: that is still a
        # GRES request, which CPU-only partitions or job_submit policies may reject.
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        for name in ("partition", "account", "qos", "constraint"):
            if getattr(self, name) is not None:
                params[f"slurm_{name}"] = getattr(self, name)
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params


def make_executor(cluster: Cluster, folder: str | Path, resources: StageResources) -> submitit.Executor:
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; expected one of {CLUSTERS}")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = resources.to_submitit()
    if cluster != "slurm":
        if resources.nodes > 1:
            raise ValueError(f"{resources.nodes} nodes need a cluster; run with --cluster slurm")
        # Off SLURM one job process runs the stage, and Lightning's launcher starts its DDP ranks itself.
        params["tasks_per_node"] = 1
    executor.update_parameters(**params)
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
