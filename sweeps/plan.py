"""A sweep is a DAG of steps; a step is one `lab` command whose inputs are other steps' outputs.

Each step is keyed by a hash of its *resolved* config (preset section + overrides + the dataclass defaults)
and of its inputs' keys, and writes to `ROOT/<command>/<label>-<key>`. So a step shared by several arms (one
base model under four RL arms) is one directory and runs once; editing a preset or an override changes the
key and gives a new directory instead of silently reusing a stale one; and two runs never write to the same
place. Re-running a sweep finds finished steps by their completion marker and skips them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from core.config import ConfigError, build, load, to_dict
from core.parallel import without_placement
from sweeps.stages import STAGES

KEY_CHARS = 10


@dataclass(frozen=True)
class Step:
    command: str
    label: str
    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()
    inputs: tuple[tuple[str, "Step"], ...] = ()  # (flag, upstream step): ("--data", corpus), ("--init", base)
    args: tuple[str, ...] = ()  # extra flags that are not config fields (e.g. eval's --samples)

    @staticmethod
    def make(command: str, label: str, preset: str, overrides: dict | None = None,
             inputs: dict[str, "Step"] | None = None, args: tuple[str, ...] = ()) -> "Step":
        if command not in STAGES:
            raise ValueError(f"unknown stage {command!r} (known: {', '.join(STAGES)})")
        return Step(command, label, preset, tuple(sorted((overrides or {}).items())),
                    tuple(sorted((inputs or {}).items(), key=lambda kv: kv[0])), tuple(args))

    @cached_property
    def resolved(self) -> dict:
        """Every preset section the stage reads, with this step's overrides applied (`ladder.edge.lo` style
        overrides reach the other sections)."""
        info = STAGES[self.command]
        others = [section for section, _ in info.sections()[1:]]

        def owner(key: str) -> str:
            return next((s for s in others if key.startswith(f"{s}.")), info.section)

        resolved = {}
        for section, cls in info.sections():
            prefix = "" if section == info.section else f"{section}."
            mine = {k.removeprefix(prefix): v for k, v in self.overrides if owner(k) == section}
            resolved[section] = to_dict(load(cls, self.preset, section, mine))
        return resolved if others else resolved[info.section]

    @cached_property
    def key(self) -> str:
        # Devices, nodes and threads are not part of a step's identity: they change how fast it runs, not what.
        config = self.resolved
        if STAGES[self.command].also:
            config = {section: without_placement(values) for section, values in config.items()}
        else:
            config = without_placement(config)
        identity = {"command": self.command, "config": config, "args": list(self.args),
                    "inputs": {flag: step.key for flag, step in self.inputs}}
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:KEY_CHARS]

    def out_dir(self, root: Path) -> Path:
        return Path(root) / self.command / f"{self.label}-{self.key}"

    def done(self, root: Path) -> bool:
        return (self.out_dir(root) / STAGES[self.command].marker).exists()

    def finished_twin(self, root: Path) -> Path | None:
        """A finished step directory with this step's key under another label (two findings naming one
        computation differently, e.g. finding 1's edge RL and finding 4's outcome-reward RL). The key hashes the
        whole identity (config, arguments, inputs' keys), so a twin is the same run."""
        out = self.out_dir(root)
        for twin in sorted(out.parent.glob(f"*-{self.key}")):
            if twin != out and (twin / STAGES[self.command].marker).exists():
                return twin
        return None

    def adopt_twin(self, root: Path) -> bool:
        """Link this step's directory to its finished twin, so the computation runs once; True when adopted."""
        out = self.out_dir(root)
        if out.exists() or out.is_symlink():
            return False
        twin = self.finished_twin(root)
        if twin is not None:
            out.symlink_to(twin.name, target_is_directory=True)
        return twin is not None

    def argv(self, root: Path) -> list[str]:
        """The exact `lab` command line of this step."""
        argv = [self.command, "--preset", self.preset, "--out", str(self.out_dir(root)), "--quiet"]
        for flag, step in self.inputs:
            argv += [flag, str(step.out_dir(root))]
        argv += list(self.args)
        for name, value in self.overrides:
            argv += [f"--{name}", _inline_yaml(value)]
        return argv


def _inline_yaml(value: Any) -> str:
    """One-line YAML that `core.config.parse_overrides` reads back to `value`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
    return text.removesuffix("...").strip()


@dataclass
class Sweep:
    name: str
    targets: list[Step] = field(default_factory=list)

    def steps(self) -> list[Step]:
        """Every step the targets need, each once, upstream before downstream."""
        ordered: dict[str, Step] = {}

        def visit(step: Step) -> None:
            if step.key in ordered:
                if ordered[step.key].label != step.label:  # two directories for one config: one would never run
                    raise ValueError(f"steps {ordered[step.key].label!r} and {step.label!r} resolve to the same "
                                     f"{step.command} config; build it once and share the Step")
                return
            for _, upstream in step.inputs:
                visit(upstream)
            ordered[step.key] = step

        for target in self.targets:
            visit(target)
        return list(ordered.values())

    def waves(self) -> list[list[Step]]:
        """Steps grouped by depth: every step's inputs lie in earlier waves."""
        depth: dict[str, int] = {}
        for step in self.steps():
            depth[step.key] = 1 + max((depth[s.key] for _, s in step.inputs), default=-1)
        waves: list[list[Step]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for step in self.steps():
            waves[depth[step.key]].append(step)
        return waves


# ---- how long a step should take, from measured rates ------------------------------------------------------------


@dataclass
class Rates:
    """Measured throughput of each stage on a preset's target machine (preset section `findings.rates`), for
    the plan's time estimates; null where nobody has measured it (the plan then says so instead of guessing)."""

    datagen_rows_per_s: float | None = None
    pretrain_tokens_per_s: float | None = None
    midtrain_tokens_per_s: float | None = None
    rl_samples_per_s: float | None = None
    eval_samples_per_s: float | None = None
    job_overhead_s: float = 0.0  # start-up of every job (interpreter, torch import) before its work begins
    source: str = ""  # where and how the figures were measured

    def validate(self, where: str) -> None:
        for name in ("datagen_rows_per_s", "pretrain_tokens_per_s", "midtrain_tokens_per_s", "rl_samples_per_s",
                     "eval_samples_per_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{where}.{name}: must be > 0, got {value}")
        if self.job_overhead_s < 0:
            raise ConfigError(f"{where}.job_overhead_s: must be >= 0, got {self.job_overhead_s}")


def step_config(step: Step):
    """The typed config of `step`'s own stage section."""
    info = STAGES[step.command]
    resolved = step.resolved[info.section] if info.also else step.resolved
    return build(info.config_class(), resolved, info.section)


def step_cap(planned_steps: int) -> int:
    """The most steps a fixed-compute RL run (`rl.compute_budget`) may take: 1.5 × its planned steps (+ 2), room
    for completions shorter than its plan's pilot; its pool holds that many steps' prompts."""
    return planned_steps + planned_steps // 2 + 2


def planned_steps(cap: int) -> int:
    """The planned steps of a fixed-compute RL run whose cap is `cap` (the inverse of `step_cap`)."""
    return next(n for n in range(cap + 1) if step_cap(n) >= cap)


def step_work(step: Step) -> tuple[float, str]:
    """(amount, unit) of the work `step` does, in the unit its rate is measured in."""
    cfg = step_config(step)
    if step.command == "datagen":
        rows = sum(v for k, v in cfg.splits.items() if not (k == "train" and cfg.train_tokens))
        if cfg.train_tokens:
            rows += math.ceil(cfg.train_tokens / _mean_row_tokens(json.dumps(to_dict(cfg), sort_keys=True)))
        return rows, "rows"
    if step.command in ("pretrain", "midtrain"):
        return cfg.tokens, "tokens"
    if step.command == "rl":  # a fixed-compute run is expected to take its planned steps, not its cap
        steps = cfg.steps if cfg.compute_budget is None else planned_steps(cfg.steps)
        return steps * cfg.prompts_per_step * cfg.rollouts, "samples"
    data = step_config(dict(step.inputs)["--data"])
    return data.splits.get(cfg.split, 0) * (cfg.samples + int(cfg.greedy)), "samples"


def total_steps(step: Step) -> int | None:
    """Optimizer / RL steps of a training step (what its metrics.jsonl counts), None for the others."""
    cfg = step_config(step)
    if step.command == "rl" and cfg.compute_budget is not None:
        return planned_steps(cfg.steps)  # what its budget should buy (progress is capped at 100 %)
    return getattr(cfg, "steps", None) if step.command in ("pretrain", "midtrain", "rl") else None


def expected_seconds(step: Step, rates: Rates) -> float | None:
    amount, _ = step_work(step)
    rate = getattr(rates, {"datagen": "datagen_rows_per_s", "pretrain": "pretrain_tokens_per_s",
                           "midtrain": "midtrain_tokens_per_s", "rl": "rl_samples_per_s",
                           "eval": "eval_samples_per_s"}[step.command])
    return None if rate is None else rates.job_overhead_s + amount / rate


@functools.cache
def tokenizer_for(rendering: str):
    from datagen.tokenizer import build_tokenizer

    return build_tokenizer(styles=(rendering,))


@functools.cache
def _mean_row_tokens(spec_json: str, n: int = 32) -> float:
    """Mean tokens per row of a corpus spec, from a pilot of `n` rows drawn from its cells."""
    from datagen.corpus import make_sample
    from datagen.spec import CorpusSpec

    spec = build(CorpusSpec, json.loads(spec_json), "datagen")
    cells = spec.cell_weights()
    rng = random.Random(f"{spec.seed}/plan")
    picks = rng.choices(list(cells), weights=list(cells.values()), k=n)
    rows = [make_sample(spec, "train", -1 - i, context, op) for i, (context, op) in enumerate(picks)]
    texts = [row["text"] for row in rows if row is not None]  # None: no graph of that op fits the split
    return sum(map(len, tokenizer_for(spec.rendering)(texts)["input_ids"])) / len(texts)
