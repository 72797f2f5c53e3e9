"""Dependency graphs of quantities whose op count is hit exactly by construction.

The difficulty knob of every experiment is op(G), so a generator that samples and rejects would skew the
shape distribution at each op and waste time at high op. Instead the graph is grown bottom-up while keeping
the set of *unused* nodes (not yet a parent of anything) and the invariant `remaining_ops >= unused - 1`:
every move is chosen among those that keep it, so the walk always ends with no ops left and one unused node,
the query, of which every earlier node is then an ancestor.

Nodes live in abstract (group, item) slots; which names they get is the renderer's business, so one Problem
can be skinned by any context and its canonical hash ignores slots entirely. Randomness comes from a
`random.Random`: the generator draws scalars one at a time, where numpy's per-call overhead would dominate.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

import networkx as nx

from core.config import ConfigError

KINDS = ("leaf", "const", "binary", "sum3", "aggregate")
OPS = ("+", "-", "*")

# Relative odds of each feasible construction move. Two-operand moves dominate as in iGSM; leaves are common
# enough that graphs grow wide and reuse nodes rather than forming one long chain.
_MOVE_WEIGHTS = {"leaf": 3, "const": 2, "binary": 4, "sum3": 1, "aggregate": 1}
# How often a new instance quantity lands in the same group as its first parent; clustering gives groups
# several members, which is what makes aggregates ("total ... in a group") possible.
_SAME_GROUP_ODDS = 0.5


@dataclass(frozen=True)
class GraphConfig:
    modulus: int | None = 23  # None: unbounded non-negative integers (the paper); else arithmetic mod p (iGSM)
    max_const: int = 4  # leaf and operand constants are drawn from 1..max_const
    distractors: float = 0.5  # unnecessary nodes = round(distractors * necessary nodes)
    # Unbounded mode: a '-' or '*' whose result would leave [0, value_cap] becomes '+'. Sums stay uncapped, so
    # values can still grow large, as in the paper; the cap only stops products from exploding.
    value_cap: int = 10**6

    def validate(self, where: str) -> None:
        if self.modulus is not None and self.modulus < 2:
            raise ConfigError(f"{where}.modulus: must be None (unbounded) or >= 2, got {self.modulus}")
        if self.max_const < 1:
            raise ConfigError(f"{where}.max_const: must be >= 1, got {self.max_const}")
        if self.modulus is not None and self.max_const >= self.modulus:
            # A stated constant must equal its own value, or the text would contradict the solution.
            raise ConfigError(f"{where}.max_const: must be below modulus {self.modulus}, got {self.max_const}")
        if not self.distractors >= 0:
            raise ConfigError(f"{where}.distractors: must be >= 0, got {self.distractors}")
        if self.value_cap < 1:
            raise ConfigError(f"{where}.value_cap: must be >= 1, got {self.value_cap}")


@dataclass(frozen=True, slots=True)
class Node:
    index: int  # position in construction order, which is a topological order
    group: int  # abstract group slot (a zoo, a school, a festival)
    item: int  # abstract item slot, or -1 for the group's aggregate
    kind: str  # one of KINDS
    op: str | None  # '+', '-', '*' for const/binary; '+' for sum3/aggregate; None for leaf
    parents: tuple[int, ...]  # ordered: binary '-' is parents[0] - parents[1]
    const: int | None  # the leaf's number, or the const move's operand
    value: int
    necessary: bool  # ancestor-or-self of the query


@dataclass(frozen=True)
class Problem:
    nodes: tuple[Node, ...]
    query: int
    op: int  # arithmetic operations over the necessary nodes; exactly what generate() was asked for
    modulus: int | None

    @property
    def answer(self) -> int:
        return self.nodes[self.query].value

    def necessary_nodes(self) -> list[Node]:
        return [node for node in self.nodes if node.necessary]

    def to_networkx(self) -> nx.DiGraph:
        """Edges run parent -> child; `position` on an edge keeps operand order for '-'."""
        graph = nx.DiGraph(query=self.query, modulus=self.modulus, op=self.op)
        for node in self.nodes:
            graph.add_node(node.index, group=node.group, item=node.item, kind=node.kind, op=node.op,
                           const=node.const, value=node.value, necessary=node.necessary)
            for position, parent in enumerate(node.parents):
                graph.add_edge(parent, node.index, position=position)
        return graph

    def canonical_hash(self) -> str:
        """sha256 of a form blind to slots and construction order, so a graph keeps its hash in any context.

        Each node gets a Merkle signature of its expression (parents sorted unless the operation is
        order-sensitive); the problem is the sorted multiset of (signature, necessary, child signatures),
        which also tells a shared sub-expression from two equal copies of it.
        """
        signatures: list[str] = []
        children: list[list[str]] = [[] for _ in self.nodes]
        for node in self.nodes:
            parent_sigs = [signatures[p] for p in node.parents]
            if not (node.kind == "binary" and node.op == "-"):
                parent_sigs.sort()
            signature = _sha256(f"{node.kind}|{node.op}|{node.const}|{','.join(parent_sigs)}")
            signatures.append(signature)
            for parent in node.parents:
                children[parent].append(signature)
        rows = sorted(
            f"{signatures[n.index]}|{int(n.necessary)}|{','.join(sorted(children[n.index]))}" for n in self.nodes
        )
        form = {"modulus": self.modulus, "query": signatures[self.query], "nodes": rows}
        return _sha256(json.dumps(form, separators=(",", ":")))

    def to_dict(self) -> dict:
        return {
            "modulus": self.modulus,
            "op": self.op,
            "query": self.query,
            "nodes": [
                {"index": n.index, "group": n.group, "item": n.item, "kind": n.kind, "op": n.op,
                 "parents": list(n.parents), "const": n.const, "value": n.value, "necessary": n.necessary}
                for n in self.nodes
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Problem:
        nodes = tuple(
            Node(n["index"], n["group"], n["item"], n["kind"], n["op"], tuple(n["parents"]), n["const"],
                 n["value"], n["necessary"])
            for n in data["nodes"]
        )
        return cls(nodes, data["query"], data["op"], data["modulus"])

    def evaluate(self) -> int:
        """The query's value recomputed from kinds, ops, constants and parents alone (stored values unused)."""
        values: list[int] = []
        for node in self.nodes:
            if node.kind == "leaf":
                value = node.const
            elif node.kind == "const":
                value = _arith(node.op, values[node.parents[0]], node.const)
            elif node.kind == "binary":
                value = _arith(node.op, values[node.parents[0]], values[node.parents[1]])
            else:
                value = sum(values[p] for p in node.parents)
            values.append(value if self.modulus is None else value % self.modulus)
        return values[self.query]


def generate(op: int, rng: random.Random, cfg: GraphConfig, n_groups: int, n_items: int) -> Problem:
    """A random problem needing exactly `op` operations; a pure function of (rng state, op, cfg, sizes)."""
    if op < 1:
        raise ValueError(f"op must be >= 1, got {op}")
    cfg.validate("graph")
    # Worst case: op binary moves over op + 1 leaves, plus the distractors such a graph would get.
    max_distractors = round(cfg.distractors * (2 * op + 1))
    needed = 2 * op + 1 + max_distractors
    if n_groups * n_items < needed:
        raise ValueError(
            f"{n_groups} groups x {n_items} items = {n_groups * n_items} slots cannot hold op={op} with "
            f"distractors={cfg.distractors}: up to {needed} quantities may be needed"
        )
    builder = _Builder(rng, cfg, n_groups, n_items)
    query = builder.grow_necessary(op, max_distractors)
    n_necessary = len(builder.kinds)
    builder.add_distractors(round(cfg.distractors * n_necessary))
    return Problem(builder.nodes(n_necessary), query, op, cfg.modulus)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _arith(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


class _Builder:
    """Mutable construction state; `nodes()` freezes it. Parallel lists keep the per-node cost low."""

    def __init__(self, rng: random.Random, cfg: GraphConfig, n_groups: int, n_items: int):
        self.rng = rng
        self.cfg = cfg
        self.kinds: list[str] = []
        self.ops: list[str | None] = []
        self.parents: list[tuple[int, ...]] = []
        self.consts: list[int | None] = []
        self.values: list[int] = []
        self.groups: list[int] = []
        self.items: list[int] = []
        self.free_items = [list(range(n_items)) for _ in range(n_groups)]
        # Groups that can still take an instance node: not aggregated and not full.
        self.open_groups = list(range(n_groups))
        self.open_position = {g: g for g in range(n_groups)}
        self.open_slots = n_groups * n_items
        self.members: list[list[int]] = [[] for _ in range(n_groups)]
        self.aggregated = [False] * n_groups
        # Groups an aggregate could sum right now: >= 2 instance members and no aggregate yet.
        self.summable: list[int] = []
        self.tracking_unused = True
        self.unused: list[int] = []
        self.unused_position: dict[int, int] = {}
        self.unused_in_group = [0] * n_groups

    # -- the necessary graph -------------------------------------------------------------------------------

    def grow_necessary(self, op: int, reserve: int) -> int:
        """Build the query's ancestry with exactly `op` ops, keeping `reserve` slots for distractors."""
        remaining = op
        while remaining > 0 or len(self.unused) != 1:
            unused, n = len(self.unused), len(self.kinds)
            moves = []
            if remaining >= unused:
                moves.append("leaf")
                if n >= 1 and remaining >= 1:
                    moves.append("const")
            if remaining >= 1 and unused >= 1 and n >= 2:
                moves.append("binary")
            if remaining >= 2 and unused >= 1 and n >= 3:
                moves.append("sum3")
            groups = self._aggregatable(remaining, reserve) if remaining >= 1 else []
            if groups:
                moves.append("aggregate")
            move = self._pick(moves)
            # A move of cost c taking j unused parents leaves remaining - c >= (unused - j + 1) - 1,
            # i.e. it keeps the invariant iff j >= unused - remaining + c.
            if move == "leaf":
                self._leaf()
            elif move == "const":
                must_use = unused - remaining + 1 > 0
                self._const(self._random_unused() if must_use else self._below(n))
                remaining -= 1
            elif move == "binary":
                first = self._random_unused()
                both_unused = unused - remaining + 1 >= 2
                second = self._random_unused(exclude=first) if both_unused else self._random_other(n, first)
                self._binary(first, second)
                remaining -= 1
            elif move == "sum3":
                chosen = self._distinct(self.unused, max(1, unused - remaining + 2), [])
                self._sum3(self._distinct(range(n), 3, chosen))
                remaining -= 2
            else:
                group = groups[self._below(len(groups))]
                remaining -= len(self.members[group]) - 1
                self._aggregate(group)
        self.tracking_unused = False
        return self.unused[0]

    def _aggregatable(self, remaining: int, reserve: int) -> list[int]:
        """Groups whose aggregate keeps the op invariant and leaves enough open slots for the rest."""
        unused = len(self.unused)
        feasible = []
        for group in self.summable:
            k = len(self.members[group])
            if k - 1 > remaining:
                continue
            taken = self.unused_in_group[group]
            if taken < unused - remaining + k - 1:
                continue
            # At most 2r + 1 - u more instance nodes can follow (r ops left, u unused), plus distractors.
            left, unused_after = remaining - (k - 1), unused - taken + 1
            if self.open_slots - len(self.free_items[group]) >= 2 * left + 1 - unused_after + reserve:
                feasible.append(group)
        return feasible

    # -- distractors ---------------------------------------------------------------------------------------

    def add_distractors(self, count: int) -> None:
        """Unnecessary nodes over any existing nodes; none is ever a parent of a necessary node."""
        for left in range(count, 0, -1):
            n = len(self.kinds)
            moves = ["leaf", "const"]
            if n >= 2:
                moves.append("binary")
            if n >= 3:
                moves.append("sum3")
            groups = [g for g in self.summable if self.open_slots - len(self.free_items[g]) >= left - 1]
            if groups:
                moves.append("aggregate")
            move = self._pick(moves)
            if move == "leaf":
                self._leaf()
            elif move == "const":
                self._const(self._below(n))
            elif move == "binary":
                first = self._below(n)
                self._binary(first, self._random_other(n, first))
            elif move == "sum3":
                self._sum3(self._distinct(range(n), 3, []))
            else:
                self._aggregate(groups[self._below(len(groups))])

    # -- moves ---------------------------------------------------------------------------------------------

    def _leaf(self) -> None:
        c = 1 + self._below(self.cfg.max_const)
        self._add("leaf", None, (), c, self._reduce(c), self._take_slot(None))

    def _const(self, parent: int) -> None:
        c = 1 + self._below(self.cfg.max_const)
        op, value = self._combine(OPS[self._below(3)], self.values[parent], c)
        self._add("const", op, (parent,), c, value, self._take_slot(self.groups[parent]))

    def _binary(self, first: int, second: int) -> None:
        if self.rng.random() < 0.5:
            first, second = second, first
        op, value = self._combine(OPS[self._below(3)], self.values[first], self.values[second])
        self._add("binary", op, (first, second), None, value, self._take_slot(self.groups[first]))

    def _sum3(self, parents: list[int]) -> None:
        for i in (2, 1):  # Fisher-Yates on three
            j = self._below(i + 1)
            parents[i], parents[j] = parents[j], parents[i]
        value = self._reduce(sum(self.values[p] for p in parents))
        self._add("sum3", "+", tuple(parents), None, value, self._take_slot(self.groups[parents[0]]))

    def _aggregate(self, group: int) -> None:
        parents = tuple(self.members[group])
        value = self._reduce(sum(self.values[p] for p in parents))
        self.aggregated[group] = True
        self.summable.remove(group)
        if group in self.open_position:
            self.open_slots -= len(self.free_items[group])
            self._close(group)
        self._add("aggregate", "+", parents, None, value, (group, -1))

    # -- helpers -------------------------------------------------------------------------------------------

    def _below(self, n: int) -> int:
        """Uniform in range(n). Scaling random() is several times faster than randrange, and its bias
        (about n / 2**53) is nil for the sizes drawn here."""
        return int(self.rng.random() * n)

    def _distinct(self, pool, count: int, chosen: list[int]) -> list[int]:
        """`chosen` extended by distinct random members of `pool` up to `count` (a few, so rejection is cheap)."""
        while len(chosen) < count:
            candidate = pool[self._below(len(pool))]
            if candidate not in chosen:
                chosen.append(candidate)
        return chosen

    def _pick(self, moves: list[str]) -> str:
        total = 0
        for move in moves:
            total += _MOVE_WEIGHTS[move]
        x = self.rng.random() * total
        for move in moves:
            x -= _MOVE_WEIGHTS[move]
            if x < 0:
                return move
        return moves[-1]

    def _reduce(self, value: int) -> int:
        return value if self.cfg.modulus is None else value % self.cfg.modulus

    def _combine(self, op: str, a: int, b: int) -> tuple[str, int]:
        value = _arith(op, a, b)
        if self.cfg.modulus is not None:
            return op, value % self.cfg.modulus
        if op != "+" and not 0 <= value <= self.cfg.value_cap:
            return "+", a + b
        return op, value

    def _random_unused(self, exclude: int | None = None) -> int:
        unused = self.unused
        if exclude is None:
            return unused[self._below(len(unused))]
        i = self._below(len(unused) - 1)
        return unused[i + 1] if i >= self.unused_position[exclude] else unused[i]

    def _random_other(self, n: int, exclude: int) -> int:
        i = self._below(n - 1)
        return i + 1 if i >= exclude else i

    def _take_slot(self, hint: int | None) -> tuple[int, int]:
        """A free (group, item) in an open group, often the first parent's group."""
        if hint is not None and hint in self.open_position and self.rng.random() < _SAME_GROUP_ODDS:
            group = hint
        else:
            group = self.open_groups[self._below(len(self.open_groups))]
        free = self.free_items[group]
        i = self._below(len(free))
        free[i], free[-1] = free[-1], free[i]
        item = free.pop()
        self.open_slots -= 1
        if not free:
            self._close(group)
        return group, item

    def _close(self, group: int) -> None:
        i = self.open_position.pop(group)
        last = self.open_groups.pop()
        if last != group:
            self.open_groups[i] = last
            self.open_position[last] = i

    def _add(self, kind: str, op: str | None, parents: tuple[int, ...], const: int | None, value: int,
             slot: tuple[int, int]) -> None:
        index = len(self.kinds)
        group, item = slot
        self.kinds.append(kind)
        self.ops.append(op)
        self.parents.append(parents)
        self.consts.append(const)
        self.values.append(value)
        self.groups.append(group)
        self.items.append(item)
        if item >= 0:
            self.members[group].append(index)
            if len(self.members[group]) == 2:
                self.summable.append(group)
        if self.tracking_unused:
            for parent in parents:
                if parent in self.unused_position:
                    self._mark_used(parent)
            self.unused_position[index] = len(self.unused)
            self.unused.append(index)
            self.unused_in_group[group] += 1

    def _mark_used(self, index: int) -> None:
        i = self.unused_position.pop(index)
        last = self.unused.pop()
        if last != index:
            self.unused[i] = last
            self.unused_position[last] = i
        self.unused_in_group[self.groups[index]] -= 1

    def nodes(self, n_necessary: int) -> tuple[Node, ...]:
        return tuple(
            Node(i, self.groups[i], self.items[i], self.kinds[i], self.ops[i], self.parents[i], self.consts[i],
                 self.values[i], i < n_necessary)
            for i in range(len(self.kinds))
        )
