"""The corpus spec: what a corpus contains, stated so that every ratio is exact.

Mixtures are declared per context (each with its own op restriction) because the experiments that matter
hinge on exact small shares: context B at 0 / 0.1 / 1 / 10 % of a pre-training corpus, B only at op=2. The
builder allocates whole rows to (context, op) cells by largest remainder, so a 0.1 % share of 100,000 rows is
exactly 100 rows, not 100 ± 10.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.config import ConfigError, to_dict
from datagen.graph import GraphConfig

SPLITS = ("train", "val", "test", "rl")
# Fields added after corpora were built, as (section or None, name, default): left out of `identity` at their
# defaults, so those corpora keep theirs.
_LATER_FIELDS = ((None, "curriculum", 0), ("graph", "operation_tilt", 1))


@dataclass
class OpRange:
    """Ops lo..hi inclusive; `weight` is shared evenly among them. Weights are normalised per context."""

    lo: int
    hi: int
    weight: float = 1.0

    def validate(self, where: str) -> None:
        if self.lo < 1:
            raise ConfigError(f"{where}.lo: op must be >= 1, got {self.lo}")
        if self.hi < self.lo:
            raise ConfigError(f"{where}.hi: {self.hi} is below lo={self.lo}")
        if not self.weight > 0:
            raise ConfigError(f"{where}.weight: must be > 0, got {self.weight}")


@dataclass
class ContextShare:
    name: str
    share: float
    ops: list[OpRange] | None = None  # None: the corpus-level `ops`

    def validate(self, where: str) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"{where}.share: ratio must lie in [0, 1], got {self.share}")
        if self.ops is not None and not self.ops:
            raise ConfigError(f"{where}.ops: empty op mixture")


@dataclass
class CorpusSpec:
    contexts: list[ContextShare] = field(default_factory=lambda: [ContextShare("zoo", 1.0)])
    ops: list[OpRange] = field(default_factory=lambda: [OpRange(2, 10)])
    # Rows per split. `train_tokens`, when set, replaces splits["train"] by the row count that reaches that
    # many tokens (measured on a pilot of the corpus's own rows, so it tracks the rendering and op mixture).
    splits: dict[str, int] = field(default_factory=lambda: {"train": 1000})
    train_tokens: int | None = None
    rendering: Literal["natural", "compact", "compact-inline"] = "natural"
    graph: GraphConfig = field(default_factory=GraphConfig)
    # An op curriculum: 0 writes every split in a seeded shuffled order (the paper's). c in (0, 1] sorts rows by
    # a seeded key, uniform on [c * r / n, 1] for the op of rank r of n (0 = the easiest): ops enter easiest first,
    # the mixture is unchanged, easy ops never leave, and the top op is densest at the end. Positions run ahead of
    # keys (easy rows fill the start): with the micro mixture, c = 1 lets the top op in at 61 % of the split and
    # c = 0.5 at 21 %. Pre-training reads such a corpus's shards in order (pretrain/data.py).
    curriculum: float = 0.0
    seed: int = 0
    shard_rows: int = 50_000
    workers: int = 1  # processes building shards; the bytes do not depend on it, so it is no part of `identity`

    def validate(self, where: str) -> None:
        from datagen.contexts import available_contexts

        if not self.contexts:
            raise ConfigError(f"{where}.contexts: empty context mixture")
        if not self.ops:
            raise ConfigError(f"{where}.ops: empty op mixture")
        known = available_contexts()
        names = [c.name for c in self.contexts]
        for i, name in enumerate(names):
            if name not in known:
                raise ConfigError(f"{where}.contexts[{i}].name: unknown context {name!r} (known: {', '.join(known)})")
            if names.index(name) != i:
                raise ConfigError(f"{where}.contexts[{i}].name: context {name!r} listed twice")
        total = sum(c.share for c in self.contexts)
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(f"{where}.contexts: shares must sum to 1, got {total:g}")
        if not self.splits:
            raise ConfigError(f"{where}.splits: no split requested")
        for split, rows in self.splits.items():
            if split not in SPLITS:
                raise ConfigError(f"{where}.splits.{split}: unknown split (known: {', '.join(SPLITS)})")
            if rows < 0:
                raise ConfigError(f"{where}.splits.{split}: row count must be >= 0, got {rows}")
        if self.train_tokens is not None and self.train_tokens <= 0:
            raise ConfigError(f"{where}.train_tokens: must be > 0, got {self.train_tokens}")
        if not 0 <= self.curriculum <= 1:
            raise ConfigError(f"{where}.curriculum: must be in [0, 1], got {self.curriculum}")
        if self.shard_rows < 1:
            raise ConfigError(f"{where}.shard_rows: must be >= 1")
        if self.workers < 1:
            raise ConfigError(f"{where}.workers: must be >= 1")

    def identity(self) -> dict:
        """The spec as plain data, less what the corpus's bytes do not depend on: a manifest records this, and a
        rebuild with another worker count is the same corpus, and fields newer than the first corpora
        (`_LATER_FIELDS`) are left out at their defaults."""
        identity = {k: v for k, v in to_dict(self).items() if k != "workers"}
        for section, name, default in _LATER_FIELDS:
            fields = identity if section is None else identity[section]
            if fields[name] == default:
                del fields[name]
        return identity

    def op_weights(self, context: ContextShare) -> dict[int, float]:
        """Normalised probability of each op for one context."""
        weights: dict[int, float] = {}
        for r in context.ops or self.ops:
            per_op = r.weight / (r.hi - r.lo + 1)
            for op in range(r.lo, r.hi + 1):
                weights[op] = weights.get(op, 0.0) + per_op
        total = sum(weights.values())
        return {op: w / total for op, w in sorted(weights.items())}

    def cell_weights(self) -> dict[tuple[str, int], float]:
        """Probability of each (context, op) cell; cells of zero-share contexts are dropped."""
        return {
            (c.name, op): c.share * w
            for c in self.contexts
            if c.share > 0
            for op, w in self.op_weights(c).items()
        }
