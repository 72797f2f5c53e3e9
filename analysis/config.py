"""Typed configs for evaluation: the op ladder (preset section `ladder:`) and sampling settings (`eval:`).

The ladder — which ops count as in-distribution, edge and hard — is its own top-level section, not part of
`eval:`, because every stage that names a split (evaluation, RL data ranges, reports) must mean the same ops by
"edge", and the ladder shifts with the preset's scale (micro: ID 2–6, edge 7–9, hard 10–14), so it can be
neither a constant in code nor a copy per stage. Overrides reach it as `--ladder.edge.lo 7`; a whole ladder measured on
a base (`lab calibrate`) comes from a file with the same section (`load_ladder(..., ladder_file=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import ConfigError, load
from datagen.spec import SPLITS


@dataclass
class Span:
    """Ops lo..hi inclusive."""

    lo: int  # smallest op of the split
    hi: int  # largest op of the split (inclusive)

    def validate(self, where: str) -> None:
        if self.lo < 1:
            raise ConfigError(f"{where}.lo: op must be >= 1, got {self.lo}")
        if self.hi < self.lo:
            raise ConfigError(f"{where}.hi: {self.hi} is below lo={self.lo}")


@dataclass
class Ladder:
    """The paper's three difficulty splits; ID below edge below hard, disjoint (gaps are allowed)."""

    ID: Span
    edge: Span
    hard: Span

    def validate(self, where: str) -> None:
        if self.ID.hi >= self.edge.lo:
            raise ConfigError(f"{where}.edge.lo: {self.edge.lo} must be above ID.hi={self.ID.hi}")
        if self.edge.hi >= self.hard.lo:
            raise ConfigError(f"{where}.hard.lo: {self.hard.lo} must be above edge.hi={self.edge.hi}")

    def splits(self) -> dict[str, tuple[int, int]]:
        """name -> (lo, hi), in ladder order: the mapping `analysis.tables` takes."""
        return {name: (span.lo, span.hi) for name, span in (("ID", self.ID), ("edge", self.edge),
                                                            ("hard", self.hard))}

    def covers(self, op: int) -> bool:
        return any(lo <= op <= hi for lo, hi in self.splits().values())


@dataclass
class EvalConfig:
    """Defaults are the paper's protocol: 200 problems per op, 128 samples at T = 0.7, 1,024 new tokens."""

    split: str = "test"  # corpus split the problems come from
    problems_per_op: int = 200  # per context; fewer when the corpus split has fewer
    samples: int = 128  # sampled completions per problem (n of pass@k)
    temperature: float = 0.7  # sampling temperature of the sampled completions (> 0; greedy has its own flag)
    top_p: float = 1.0  # nucleus sampling mass (1: off)
    greedy: bool = True  # also one greedy completion per problem
    max_new_tokens: int = 1024  # capped by the room left in the model's context window
    batch_prompts: int = 4  # prompts per sampled call; a call decodes batch_prompts × samples rows
    # Prompts per greedy call (one row each). Larger than batch_prompts, or the greedy pass would take as many
    # decode steps as the sampled one; bounded because the prefill's memory grows with prompts × length².
    greedy_batch_prompts: int = 64
    seed: int = 0  # seeds sampling and the bootstrap, never the choice of problems
    n_boot: int = 2000  # bootstrap resamples of problems for every CI
    level: float = 0.95  # confidence level of every interval

    def validate(self, where: str) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"{where}.split: {self.split!r} is not one of {list(SPLITS)}")
        for name in ("problems_per_op", "samples", "max_new_tokens", "batch_prompts", "greedy_batch_prompts",
                     "n_boot"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        # Greedy decoding has its own flag: n identical greedy samples would make pass@k meaningless.
        if not self.temperature > 0:
            raise ConfigError(f"{where}.temperature: must be > 0 (greedy: set greedy: true), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{where}.top_p: must lie in (0, 1], got {self.top_p}")
        if not 0 < self.level < 1:
            raise ConfigError(f"{where}.level: must lie in (0, 1), got {self.level}")


def load_ladder(preset: str, overrides: dict[str, Any] | None = None,
                ladder_file: str | Path | None = None) -> Ladder:
    """The preset's `ladder:` section, or that of `ladder_file` (e.g. `lab calibrate`'s DIR/ladder.yaml, the ladder a
    base was measured to have) in its place; `overrides` (keys without the `ladder.` prefix) apply to either."""
    source = preset
    if ladder_file is not None:
        ladder_file = Path(ladder_file)
        if not ladder_file.is_file():
            raise ConfigError(f"{ladder_file}: no such ladder file (write one with `lab calibrate`)")
        source = str(ladder_file)
    return load(Ladder, source, "ladder", overrides)


def load_eval_config(preset: str, overrides: dict[str, Any] | None = None,
                     ladder_file: str | Path | None = None) -> tuple[EvalConfig, Ladder]:
    """The preset's `eval:` and `ladder:` sections (the latter from `ladder_file` if given) with `overrides`;
    `ladder.`-prefixed keys go to the ladder."""
    overrides = overrides or {}
    ladder_overrides = {key.removeprefix("ladder."): value for key, value in overrides.items()
                        if key.startswith("ladder.")}
    eval_overrides = {key: value for key, value in overrides.items() if not key.startswith("ladder.")}
    return load(EvalConfig, preset, "eval", eval_overrides), load_ladder(preset, ladder_overrides, ladder_file)
