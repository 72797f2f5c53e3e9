"""Dependency graphs of quantities whose op count is hit exactly by construction.

op(G) is the paper's difficulty: GSM-Infinite's `num_op`, the number of edges of the *necessary* graph when
every number a statement introduces is an edge from a constant source. Per necessary quantity that is its
number of parents with the constant counted as one: `X = 3` is 1, `X = 3 + Y` is 2, a sum of k quantities is
k, an (unstated) group total over k items is k, `3 * (A + B)` is 3. So op = necessary quantities + arithmetic
operations, and `arith_ops` (the old count) is kept beside it.

The official generator samples graphs and rejects until one has the requested op (16 draws per accepted
problem). Here the graph is grown bottom-up while keeping the set of *unused* nodes (not yet a parent of
anything) and an invariant saying the edges left can still be spent exactly (`_Builder._feasible`: the
cheapest way to fold every unused node into the query, which in most problems is a target group's total):
every move is chosen among those that keep it, so the walk always ends with no edges left and one unused
node, the query, of which every earlier node is then an ancestor.

Nodes live in abstract (group, item) slots; which names they get is the renderer's business, so one Problem
can be skinned by any context and its hashes ignore slots entirely. Randomness comes from a
`random.Random`: the generator draws scalars one at a time, where numpy's per-call overhead would dominate.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from core.config import ConfigError

# GSM-Infinite's statement forms (reference meta.statement_forms). `const` is a stated number; `copy` X = Y;
# `c_op_X` X = c + Y or c * Y (the '-' knob: X = Y - c); `sum2`/`sumk` a sum of 2 / 3-4 quantities; `diff2`
# Y - Z; `c_op_sum2`/`c_op_sumk`/`c_op_diff2` a constant added to or multiplying such a sum or difference;
# `aggregate` the unstated total of a group (the sum of every quantity stated in it).
KINDS = ("const", "copy", "c_op_X", "sum2", "diff2", "sumk", "c_op_sum2", "c_op_diff2", "c_op_sumk", "aggregate")
OPS = ("+", "-", "*")  # operators a constant can be applied with (Node.op)
DIFFERENCE_KINDS = ("diff2", "c_op_diff2")
MAX_SUM_TERMS = 4  # sumk / c_op_sumk fold at most this many quantities, as GSM-Infinite's almost always do

# Relative odds of each form among the feasible moves, with the constants below tuned by hand
# (benchmarks/bench_generator.py) until the per-op means of arithmetic operations, quantities, statements,
# distractors and characters all sit within 15 % of the GSM-Infinite reference (results/
# generator_vs_gsm_infinite.md). Stated numbers and copies also arise as forced moves, so their odds are low.
_FORM_WEIGHTS = {
    "const": 0.4, "copy": 0.3, "c_op_X": 1.8, "sum2": 0.3, "diff2": 0.2, "sumk3": 1.2, "sumk4": 0.4,
    "c_op_sum2": 0.9, "c_op_diff2": 0.5, "c_op_sumk3": 1.0, "aggregate": 3.0,
}
# Unnecessary statements are simpler (GSM-Infinite's have ~1.5 edges each): mostly numbers and one-operand forms.
_DISTRACTOR_WEIGHTS = {"const": 1.0, "copy": 0.6, "c_op_X": 0.8, "sum2": 0.3, "diff2": 0.1, "sumk3": 0.1}
# GSM-Infinite's op 2-3 problems hold no arithmetic at all (every quantity has one parent).
_ARITHMETIC_FROM_OP = 4
# GSM-Infinite asks for a group total in ~85 % of problems.
_QUERY_TOTAL_ODDS = 0.85
# A new quantity joins the target group with these odds when both placements are feasible: small problems
# are mostly the target's items (op 5: a number and 3 times it, then their total), large ones reach it
# through longer chains.
_IN_TARGET_ODDS = {"small": 0.75, "large": 0.45}
_LARGE_FROM_OP = 9
# A total over one item is a copy in disguise; GSM-Infinite's small problems rarely hold one besides the query.
_SINGLE_TOTAL_ODDS = 0.8
_MAX_RESTARTS = 1000
# How often a new quantity lands in the same group as one of its parents; clustering gives groups several
# members, which is what makes totals over more than one item common.
_SAME_GROUP_ODDS = 0.75

# GSM-Infinite's "realistic medium" generator at zero noise leaves a few unnecessary statements, with a share
# of problems that have none; both depend on op through its op_max schedule. Per op: (share of problems with
# distractors, mean count when present), measured on its forward generator (../shared/reference/
# gsm_infinite_stats.json: 1 - share_problems_without_distractors, n_distractors.mean / that share). Ops
# above 20 use op 20's values.
GSM_INFINITE_DISTRACTORS = {
    2: (1.00, 4.41), 3: (0.90, 3.00), 4: (0.97, 3.61), 5: (0.89, 4.09), 6: (0.90, 6.74), 7: (0.75, 4.81),
    8: (0.76, 5.08), 9: (0.71, 4.94), 10: (0.24, 5.38), 11: (0.28, 5.14), 12: (0.13, 6.62), 13: (0.18, 5.28),
    14: (0.47, 5.13), 15: (0.44, 4.16), 16: (0.21, 5.14), 17: (0.18, 4.28), 18: (0.23, 3.96), 19: (0.12, 3.58),
    20: (0.14, 4.86),
}


@dataclass(frozen=True)
class GraphConfig:
    """Defaults reproduce the study's distribution (GSM-Infinite realistic, medium, number_range 5)."""

    modulus: int | None = None  # None: unbounded integers (the paper); else arithmetic mod p (iGSM)
    max_const: int = 4  # stated numbers and added constants 1..max_const, multipliers 2..max_const
    # "gsm-infinite": the reference's per-op distractor counts; a number r: round(r * necessary quantities)
    distractors: float | Literal["gsm-infinite"] = "gsm-infinite"
    const_ops: tuple[str, ...] = ("+", "*")  # operators a constant may carry; add "-" for "c less than Y"
    # Unbounded mode: every value stays in 1..value_cap (GSM-Infinite: positive and <= 1000).
    value_cap: int = 1000
    # The odds of each necessary statement form (totals included) times operation_tilt ** (its arithmetic
    # operations). 1 is the study's distribution; above 1 a problem of the same op has fewer quantities and more
    # operations each (`3 * (A + B)` over `A + B`), below 1 the reverse. A lever on how many operations the
    # problems of a pre-training op range practise; at 3 it cost the micro base its 7-quantity practice and
    # narrowed its frontier (results/micro_recipe.md, round 16).
    operation_tilt: float = 1.0

    def validate(self, where: str) -> None:
        if self.modulus is not None and self.modulus < 2:
            raise ConfigError(f"{where}.modulus: must be None (unbounded) or >= 2, got {self.modulus}")
        if self.max_const < 2:
            raise ConfigError(f"{where}.max_const: must be >= 2 (multipliers are 2..max_const), got {self.max_const}")
        if self.modulus is not None and self.max_const >= self.modulus:
            # A stated constant must equal its own value, or the text would contradict the solution.
            raise ConfigError(f"{where}.max_const: must be below modulus {self.modulus}, got {self.max_const}")
        if self.distractors != "gsm-infinite" and not (
                isinstance(self.distractors, (int, float)) and self.distractors >= 0):
            raise ConfigError(f"{where}.distractors: must be 'gsm-infinite' or a number >= 0, got {self.distractors!r}")
        if not self.const_ops or any(o not in OPS for o in self.const_ops) or len(set(self.const_ops)) != len(
                self.const_ops):
            raise ConfigError(f"{where}.const_ops: must be distinct operators from {list(OPS)}, got {self.const_ops}")
        if self.value_cap < self.max_const ** 2:
            raise ConfigError(f"{where}.value_cap: must be >= max_const**2 = {self.max_const ** 2}, got {self.value_cap}")
        if not (isinstance(self.operation_tilt, (int, float)) and self.operation_tilt > 0):
            raise ConfigError(f"{where}.operation_tilt: must be a number > 0, got {self.operation_tilt!r}")


@dataclass(frozen=True, slots=True)
class Node:
    index: int  # position in construction order, which is a topological order
    group: int  # abstract group slot (a zoo, a school, a festival)
    item: int  # abstract item slot, or -1 for the group's aggregate
    kind: str  # one of KINDS
    op: str | None  # the operator applied with `const` in c_op_* kinds; None otherwise
    parents: tuple[int, ...]  # ordered: diff is parents[0] - parents[1]
    const: int | None  # the stated number (const) or the constant operand (c_op_*); None otherwise
    value: int
    necessary: bool  # ancestor-or-self of the query

    @property
    def edges(self) -> int:
        """In-edges counting the constant source: this node's share of op(G)."""
        return len(self.parents) + (self.const is not None)


@dataclass(frozen=True)
class Problem:
    nodes: tuple[Node, ...]
    query: int
    op: int  # the paper's op: edges of the necessary graph (constant source included); what generate() was asked for
    modulus: int | None

    @property
    def answer(self) -> int:
        return self.nodes[self.query].value

    @property
    def arith_ops(self) -> int:
        """Arithmetic operations over the necessary nodes (each node's edges minus one)."""
        return self.op - sum(node.necessary for node in self.nodes)

    def necessary_nodes(self) -> list[Node]:
        return [node for node in self.nodes if node.necessary]

    def to_networkx(self) -> nx.DiGraph:
        """Edges run parent -> child; `position` on an edge keeps operand order for a difference."""
        graph = nx.DiGraph(query=self.query, modulus=self.modulus, op=self.op)
        for node in self.nodes:
            graph.add_node(node.index, group=node.group, item=node.item, kind=node.kind, op=node.op,
                           const=node.const, value=node.value, necessary=node.necessary)
            for position, parent in enumerate(node.parents):
                graph.add_edge(parent, node.index, position=position)
        return graph

    def canonical_hash(self) -> str:
        """sha256 of the whole graph (distractors included), blind to slots and construction order."""
        return self._hash(self.nodes)

    def reasoning_hash(self) -> str:
        """sha256 of the necessary graph alone, up to renaming: distractors, slots and surface are ignored.

        Two problems share it exactly when solving them takes the same steps with the same numbers, which is
        what a split must keep apart.
        """
        return self._hash([node for node in self.nodes if node.necessary])

    def _hash(self, nodes) -> str:
        """Each node gets a Merkle signature of its expression (parents sorted unless the operation is
        order-sensitive); the graph is the sorted multiset of (signature, necessary, child signatures), which
        also tells a shared sub-expression from two equal copies of it."""
        signatures: dict[int, str] = {}
        children: dict[int, list[str]] = {node.index: [] for node in nodes}
        for node in nodes:
            parent_sigs = [signatures[p] for p in node.parents]
            if node.kind not in DIFFERENCE_KINDS:
                parent_sigs.sort()
            signature = _sha256(f"{node.kind}|{node.op}|{node.const}|{','.join(parent_sigs)}")
            signatures[node.index] = signature
            for parent in node.parents:
                children[parent].append(signature)
        rows = sorted(f"{signatures[n.index]}|{int(n.necessary)}|{','.join(sorted(children[n.index]))}"
                      for n in nodes)
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
            value = node_value(node, [values[p] for p in node.parents])
            values.append(value if self.modulus is None else value % self.modulus)
        return values[self.query]


def node_value(node: Node, operands: list[int]) -> int:
    """A node's value from its parents' values (in parent order), before any modulus."""
    if node.kind == "const":
        return node.const
    if node.kind in DIFFERENCE_KINDS:
        inner = operands[0] - operands[1]
    else:
        inner = sum(operands)  # copy, c_op_X (one operand) and every sum
    if node.op is None:
        return inner
    return apply_const(node.op, inner, node.const)


def apply_const(op: str, x: int, c: int) -> int:
    """c + x, c * x, or (the '-' knob) x - c."""
    if op == "+":
        return x + c
    if op == "*":
        return x * c
    return x - c


def completion_cost(unused: int) -> int:
    """Fewest edges that fold `unused` dangling nodes into one query (sums of at most MAX_SUM_TERMS)."""
    if unused <= 1:
        return 1 - unused
    return unused - 1 + math.ceil((unused - 1) / (MAX_SUM_TERMS - 1))


def distractor_count(op: int, n_necessary: int, cfg: GraphConfig, rng: random.Random) -> int:
    if cfg.distractors != "gsm-infinite":
        return round(cfg.distractors * n_necessary)
    share, mean = GSM_INFINITE_DISTRACTORS[min(max(op, 2), 20)]
    if rng.random() >= share:
        return 0
    return 1 + _poisson(mean - 1, rng)


def max_distractors(op: int, cfg: GraphConfig) -> int:
    """An upper bound on distractor_count (the Poisson tail is cut at 4x its mean)."""
    if cfg.distractors != "gsm-infinite":
        return round(cfg.distractors * op)
    return math.ceil(4 * GSM_INFINITE_DISTRACTORS[min(max(op, 2), 20)][1])


def generate(op: int, rng: random.Random, cfg: GraphConfig, n_groups: int, n_items: int) -> Problem:
    """A random problem whose necessary graph has exactly `op` edges; a pure function of (rng state, op, cfg, sizes)."""
    if op < 1:
        raise ValueError(f"op must be >= 1, got {op}")
    cfg.validate("graph")
    # Worst case: op stated quantities (one edge each), plus the distractors.
    reserve = max_distractors(op, cfg)
    needed = op + reserve
    if n_groups * n_items < needed:
        raise ValueError(
            f"{n_groups} groups x {n_items} items = {n_groups * n_items} slots cannot hold op={op} with "
            f"distractors={cfg.distractors}: up to {needed} quantities may be needed"
        )
    for _ in range(_MAX_RESTARTS):
        builder = _Builder(rng, cfg, n_groups, n_items)
        query = builder.grow_necessary(op, reserve)
        if query is not None:
            break
        # Every move left failed: a value past value_cap (unbounded mode), or parents drawn into a dead end.
        # About 1 % of problems over ops 1-40; starting over keeps op exact and every value in range.
    else:
        raise RuntimeError(f"op={op}: no problem within {_MAX_RESTARTS} draws under {cfg}")
    n_necessary = len(builder.kinds)
    builder.add_distractors(min(distractor_count(op, n_necessary, cfg, rng), reserve))
    return Problem(builder.nodes(n_necessary), query, op, cfg.modulus)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _poisson(mean: float, rng: random.Random) -> int:
    """Knuth's method; means here are a few units, so the loop is short."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


# (form, quantity parents, carries a constant, kind)
_FORMS = {
    "const": (0, True, "const"), "copy": (1, False, "copy"), "c_op_X": (1, True, "c_op_X"),
    "sum2": (2, False, "sum2"), "diff2": (2, False, "diff2"), "sumk3": (3, False, "sumk"),
    "sumk4": (4, False, "sumk"), "c_op_sum2": (2, True, "c_op_sum2"), "c_op_diff2": (2, True, "c_op_diff2"),
    "c_op_sumk3": (3, True, "c_op_sumk"),
}


class _Builder:
    """Mutable construction state; `nodes()` freezes it. Parallel lists keep the per-node cost low."""

    def __init__(self, rng: random.Random, cfg: GraphConfig, n_groups: int, n_items: int):
        self.rng = rng
        self.cfg = cfg
        # Odds of each non-total form under cfg.operation_tilt (a form of e edges carries e - 1 operations).
        self.form_weights = {form: weight * cfg.operation_tilt ** (_FORMS[form][0] + _FORMS[form][1] - 1)
                             for form, weight in _FORM_WEIGHTS.items() if form != "aggregate"}
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
        # Groups with members and no total yet: a total could be taken now.
        self.summable: list[int] = []
        self.tracking_unused = True
        self.remaining = 0  # edges left to the necessary walk
        self.target: int | None = None  # the group whose total will be the query
        self.max_edges = 0  # most edges one necessary quantity may take
        self.unused: list[int] = []
        self.unused_position: dict[int, int] = {}
        self.unused_in_group = [0] * n_groups

    # -- the necessary graph -------------------------------------------------------------------------------

    def grow_necessary(self, op: int, reserve: int) -> int | None:
        """Build the query's ancestry with exactly `op` edges, keeping `reserve` slots for distractors.

        Most questions ask for a group total, as GSM-Infinite's do. Then a target group is drawn up front and
        every quantity placed in it costs one edge more (its term in the total); the walk ends when no edges
        are left and every unused quantity lies in the target, whose total becomes the query. None when every
        move left fails (a value past value_cap, or random extra parents leading into a dead end); the caller
        starts over.
        """
        self.max_edges = op if op >= _ARITHMETIC_FROM_OP else 1
        n_groups, n_items = len(self.members), len(self.free_items[0])
        self.target = None
        if (op >= 2 and op <= 2 * n_items and (n_groups - 1) * n_items >= op + reserve
                and self.rng.random() < _QUERY_TOTAL_ODDS):
            self.target = self._below(n_groups)
        self.remaining = op
        in_target = _IN_TARGET_ODDS["large" if op >= _LARGE_FROM_OP else "small"]
        while not self._walk_done():
            n, remaining = len(self.kinds), self.remaining
            u_out, members = self._outside_unused(), self._target_members()
            placements = (False,) if self.target is None else (False, True)
            # (weight, form, unused parents outside the target needed, placed in the target)
            options: list[tuple[float, str, int, bool]] = []
            for form, weight in self.form_weights.items():
                k, has_const, _ = _FORMS[form]
                edges = k + has_const
                if k > n or edges > self.max_edges:
                    continue
                for inside in placements:
                    if inside and self.target not in self.open_position:
                        continue
                    for j in range(min(k, u_out) + 1):
                        if self._feasible(u_out - j + (not inside), members + inside, remaining - edges - inside):
                            odds = 1.0 if self.target is None else in_target if inside else 1 - in_target
                            options.append((weight * odds, form, j, inside))
                            break
            totals = self._feasible_totals(u_out, members, remaining, reserve)
            for group in totals:
                k = len(self.members[group])
                weight = (_FORM_WEIGHTS["aggregate"] * (1.0 if k > 1 else _SINGLE_TOTAL_ODDS)
                          * self.cfg.operation_tilt ** (k - 1))
                options.append((weight, "aggregate", group, False))
            while options:
                choice = self._pick(options)
                _, form, arg, inside = options[choice]
                if form == "aggregate":
                    done = self._aggregate(arg)
                else:
                    done = self._quantity(form, arg, tracked=True, inside=inside)
                if done:
                    self.remaining -= self._edges(len(self.kinds) - 1) + inside
                    break
                options.pop(choice)
            else:
                return None
        if self.target is not None and not self._aggregate(self.target):
            return None
        self.tracking_unused = False
        return self.unused[0]

    def _walk_done(self) -> bool:
        if self.remaining:
            return False
        if self.target is None:
            return len(self.unused) == 1
        return self._outside_unused() == 0 and self._target_members() > 0

    def _outside_unused(self) -> int:
        return len(self.unused) - (0 if self.target is None else self.unused_in_group[self.target])

    def _target_members(self) -> int:
        return 0 if self.target is None else len(self.members[self.target])

    def _feasible(self, outside_unused: int, members: int, remaining: int) -> bool:
        """Whether `remaining` edges can still be spent exactly from this state.

        No target: fold every unused quantity into one (completion_cost). Target: fold the unused quantities
        outside it into new members (sums of up to MAX_SUM_TERMS, one edge more each for the total); a spare
        edge or more can always be spent on copies while something outside is unused, but once nothing is,
        exactly one spare edge cannot (any new quantity costs two: itself and its term in the total, or its
        own unused term outside).
        """
        if remaining < 0:
            return False
        if self.target is None:
            return remaining >= completion_cost(outside_unused)
        if outside_unused == 0 and members == 0:
            cost = 2  # a stated number in the target, then its total
        else:
            cost = outside_unused + math.ceil(outside_unused / MAX_SUM_TERMS)
        slack = remaining - cost
        return slack >= 0 and not (slack == 1 and outside_unused == 0 and members > 0)

    def _feasible_totals(self, outside_unused: int, members: int, remaining: int, reserve: int) -> list[int]:
        """Groups (other than the target) whose total keeps the walk feasible and leaves enough slots."""
        feasible = []
        target_free = 0 if self.target is None else len(self.free_items[self.target])
        for group in self.summable:
            k = len(self.members[group])
            if group == self.target or k > min(remaining, self.max_edges):
                continue
            left = remaining - k
            if not self._feasible(outside_unused - self.unused_in_group[group] + 1, members, left):
                continue
            # At most `left` more stated quantities can follow, plus the distractors.
            if self.open_slots - len(self.free_items[group]) - target_free >= left + reserve:
                feasible.append(group)
        return feasible

    # -- distractors ---------------------------------------------------------------------------------------

    def add_distractors(self, count: int) -> None:
        """Unnecessary stated quantities over any existing nodes; none is ever a parent of a necessary node."""
        for _ in range(count):
            n = len(self.kinds)
            options = [(w, form, 0) for form, w in _DISTRACTOR_WEIGHTS.items() if _FORMS[form][0] <= n]
            while options:
                choice = self._pick(options)
                if self._quantity(options[choice][1], 0, tracked=False):
                    break
                options.pop(choice)

    # -- moves ---------------------------------------------------------------------------------------------

    def _quantity(self, form: str, from_unused: int, tracked: bool, inside: bool = False) -> bool:
        """Add a stated quantity of `form` with at least `from_unused` parents among the unused quantities
        outside the target (inside: placed in the target group); False if the walk would become infeasible or
        its value cannot be kept in range."""
        k, has_const, kind = _FORMS[form]
        parents = []
        if tracked and from_unused:
            outside = [i for i in self.unused if self.target is None or self.groups[i] != self.target
                       or self.items[i] < 0]
            parents = self._distinct(outside, from_unused, [])
        parents = self._distinct(range(len(self.kinds)), k, parents)
        if tracked and self.target is not None:
            taken = sum(p in self.unused_position and (self.groups[p] != self.target or self.items[p] < 0)
                        for p in parents)
            if not self._feasible(self._outside_unused() - taken + (not inside), self._target_members() + inside,
                                  self.remaining - k - has_const - inside):
                return False
        self._shuffle(parents)
        operands = [self.values[p] for p in parents]
        op = const = None
        if kind == "const":
            const = 1 + self._below(self.cfg.max_const)
            value = const
        else:
            if kind in DIFFERENCE_KINDS:
                if self.cfg.modulus is None:
                    if operands[0] == operands[1]:
                        return False  # a zero quantity; GSM-Infinite keeps instance values positive
                    if operands[0] < operands[1]:
                        parents.reverse()
                        operands.reverse()
                inner = operands[0] - operands[1]
            else:
                inner = sum(operands)
            value = inner
            if has_const:
                op = self.cfg.const_ops[self._below(len(self.cfg.const_ops))]
                const = (2 + self._below(self.cfg.max_const - 1)) if op == "*" else 1 + self._below(self.cfg.max_const)
                value = apply_const(op, inner, const)
                if self.cfg.modulus is None and not 1 <= value <= self.cfg.value_cap and op != "+":
                    op, const = "+", 1 + self._below(self.cfg.max_const)
                    value = inner + const
        if self.cfg.modulus is not None:
            value %= self.cfg.modulus
        elif not 1 <= value <= self.cfg.value_cap:
            return False
        if inside:
            slot = self._take_slot(None, self.target)
        else:
            if self.target is not None and self.open_groups == [self.target]:
                return False
            slot = self._take_slot(self.groups[parents[self._below(len(parents))]] if parents else None)
        self._add(kind, op, tuple(parents), const, value, slot)
        return True

    def _aggregate(self, group: int) -> bool:
        parents = tuple(self.members[group])
        value = self._reduce(sum(self.values[p] for p in parents))
        if self.cfg.modulus is None and value > self.cfg.value_cap:
            return False
        self.summable.remove(group)
        if group in self.open_position:
            self.open_slots -= len(self.free_items[group])
            self._close(group)
        self._add("aggregate", None, parents, None, value, (group, -1))
        return True

    # -- helpers -------------------------------------------------------------------------------------------

    def _edges(self, index: int) -> int:
        return len(self.parents[index]) + (self.consts[index] is not None)

    def _below(self, n: int) -> int:
        """Uniform in range(n). Scaling random() is several times faster than randrange, and its bias
        (about n / 2**53) is nil for the sizes drawn here."""
        return int(self.rng.random() * n)

    def _shuffle(self, items: list[int]) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self._below(i + 1)
            items[i], items[j] = items[j], items[i]

    def _distinct(self, pool, count: int, chosen: list[int]) -> list[int]:
        """`chosen` extended by distinct random members of `pool` up to `count` (a few, so rejection is cheap)."""
        while len(chosen) < count:
            candidate = pool[self._below(len(pool))]
            if candidate not in chosen:
                chosen.append(candidate)
        return chosen

    def _pick(self, options: list[tuple]) -> int:
        total = 0.0
        for option in options:
            total += option[0]
        x = self.rng.random() * total
        for i, option in enumerate(options):
            x -= option[0]
            if x < 0:
                return i
        return len(options) - 1

    def _reduce(self, value: int) -> int:
        return value if self.cfg.modulus is None else value % self.cfg.modulus

    def _take_slot(self, hint: int | None, group: int | None = None) -> tuple[int, int]:
        """A free item in `group`, else in an open group other than the target, often a parent's group."""
        if group is None:
            if hint is not None and hint != self.target and hint in self.open_position and (
                    self.rng.random() < _SAME_GROUP_ODDS):
                group = hint
            else:
                group = self.open_groups[self._below(len(self.open_groups))]
                while group == self.target:
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
            if len(self.members[group]) == 1:
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
