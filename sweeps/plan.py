"""A sweep is a DAG of steps; a step is one `lab` command whose inputs are other steps' outputs.

Each step is keyed by a hash of its *resolved* config (preset section + overrides + the dataclass defaults)
and of its inputs' keys, and writes to `ROOT/<command>/<label>-<key>`. So a step shared by several arms (one
base model under four RL arms) is one directory and runs once; editing a preset or an override changes the
key and gives a new directory instead of silently reusing a stale one; and two runs never write to the same
place. Re-running a sweep finds finished steps by their completion marker and skips them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from core.config import load, to_dict
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
