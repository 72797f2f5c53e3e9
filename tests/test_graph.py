"""The generator: exact op by construction, necessity = ancestry, aggregate semantics, determinism, hashing."""

import dataclasses
import hashlib
import json
import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import config
from core.config import ConfigError
from datagen.graph import KINDS, OPS, GraphConfig, Node, Problem, generate

N_GROUPS, N_ITEMS = 12, 22  # the shipped contexts' sizes
MODES = {"mod23": GraphConfig(), "unbounded": GraphConfig(modulus=None)}


def op_cost(node: Node) -> int:
    return {"leaf": 0, "const": 1, "binary": 1, "sum3": 2}.get(node.kind, len(node.parents) - 1)


def nx_values(problem: Problem) -> dict[int, int]:
    """Every node's value computed over to_networkx() in a networkx topological order (no Problem code)."""
    graph = problem.to_networkx()
    modulus = graph.graph["modulus"]
    values: dict[int, int] = {}
    for v in nx.topological_sort(graph):
        attrs = graph.nodes[v]
        operands = [values[p] for p in sorted(graph.predecessors(v), key=lambda p: graph.edges[p, v]["position"])]
        if attrs["kind"] == "leaf":
            x = attrs["const"]
        else:
            if attrs["kind"] == "const":
                operands.append(attrs["const"])
            if attrs["op"] == "+":
                x = sum(operands)
            elif attrs["op"] == "-":
                x = operands[0] - operands[1]
            else:
                x = operands[0] * operands[1]
        values[v] = x if modulus is None else x % modulus
    return values


def check_invariants(problem: Problem, op: int, cfg: GraphConfig) -> None:
    nodes = problem.nodes
    assert [n.index for n in nodes] == list(range(len(nodes)))
    necessary = problem.necessary_nodes()
    assert problem.op == op == sum(op_cost(n) for n in necessary)

    graph = problem.to_networkx()
    assert nx.is_directed_acyclic_graph(graph)
    ancestry = nx.ancestors(graph, problem.query) | {problem.query}
    assert {n.index for n in nodes if n.necessary} == ancestry
    assert len(nodes) - len(necessary) == round(cfg.distractors * len(necessary))

    slots = [(n.group, n.item) for n in nodes]
    assert len(set(slots)) == len(slots)
    for node in nodes:
        assert all(p < node.index for p in node.parents)
        assert len(set(node.parents)) == len(node.parents)
        arity = {"leaf": 0, "const": 1, "binary": 2, "sum3": 3}
        if node.kind == "aggregate":
            members = [n.index for n in nodes if n.group == node.group and n.item >= 0]
            assert list(node.parents) == members and len(members) >= 2 and node.item == -1
            assert node.op == "+"
        else:
            assert len(node.parents) == arity[node.kind] and node.item >= 0
            assert node.op == {"leaf": None, "sum3": "+"}.get(node.kind, node.op)
            assert node.kind in ("leaf", "sum3") or node.op in OPS
        if node.kind in ("leaf", "const"):
            assert 1 <= node.const <= cfg.max_const
        if cfg.modulus is None:
            assert node.value >= 0
            if node.op in ("-", "*"):
                assert node.value <= cfg.value_cap
        else:
            assert 0 <= node.value < cfg.modulus

    values = nx_values(problem)
    assert [values[n.index] for n in nodes] == [n.value for n in nodes]
    assert problem.evaluate() == problem.answer == values[problem.query]


@pytest.mark.parametrize("mode", MODES)
def test_every_op_from_1_to_40_is_exact(mode):
    cfg = MODES[mode]
    for op in range(1, 41):
        for seed in range(4):
            check_invariants(generate(op, random.Random(seed), cfg, N_GROUPS, N_ITEMS), op, cfg)


@settings(max_examples=200, deadline=None)
@given(op=st.integers(1, 40), seed=st.integers(0, 2**32), modulus=st.sampled_from([None, 5, 23, 101]),
       max_const=st.integers(1, 4), distractors=st.sampled_from([0.0, 0.3, 0.5, 1.0, 2.0]))
def test_invariants_hold_for_any_config(op, seed, modulus, max_const, distractors):
    cfg = GraphConfig(modulus=modulus, max_const=max_const, distractors=distractors)
    check_invariants(generate(op, random.Random(seed), cfg, N_GROUPS, N_ITEMS), op, cfg)


def test_all_moves_occur_in_necessary_and_distractor_parts():
    seen = {True: set(), False: set()}
    ops = set()
    queries = set()
    for seed in range(300):
        problem = generate(2 + seed % 12, random.Random(seed), GraphConfig(), N_GROUPS, N_ITEMS)
        seen[True].update(n.kind for n in problem.necessary_nodes())
        seen[False].update(n.kind for n in problem.nodes if not n.necessary)
        ops.update(n.op for n in problem.nodes if n.kind in ("const", "binary"))
        queries.add(problem.nodes[problem.query].kind)
    assert seen[True] == set(KINDS) and seen[False] == set(KINDS)
    assert ops == set(OPS)
    assert queries == set(KINDS) - {"leaf"}


def test_distractors_never_sit_in_aggregated_groups():
    for seed in range(200):
        problem = generate(10, random.Random(seed), GraphConfig(distractors=1.5), N_GROUPS, N_ITEMS)
        for aggregate in (n for n in problem.nodes if n.kind == "aggregate"):
            later = [n for n in problem.nodes[aggregate.index + 1 :] if n.group == aggregate.group]
            assert later == []


def test_same_seed_same_problem_and_different_seeds_differ():
    a = generate(15, random.Random(7), GraphConfig(), N_GROUPS, N_ITEMS)
    b = generate(15, random.Random(7), GraphConfig(), N_GROUPS, N_ITEMS)
    assert a.to_dict() == b.to_dict()
    hashes = {generate(15, random.Random(s), GraphConfig(), N_GROUPS, N_ITEMS).canonical_hash() for s in range(50)}
    assert len(hashes) == 50


def test_generator_output_is_pinned():
    # Corpora are only reproducible while this holds; if a change is intended, bump the generator version.
    problem = generate(12, random.Random(2024), GraphConfig(), N_GROUPS, N_ITEMS)
    digest = hashlib.sha256(json.dumps(problem.to_dict(), sort_keys=True).encode()).hexdigest()
    assert digest == "c02ec04ea990ffb896bafb425d7777c83bc2f0e4dd561c34d84a711bf2ca327c"


@pytest.mark.parametrize("mode", MODES)
def test_dict_round_trip_is_lossless_and_json_safe(mode):
    for seed in range(20):
        problem = generate(1 + seed, random.Random(seed), MODES[mode], N_GROUPS, N_ITEMS)
        data = json.loads(json.dumps(problem.to_dict()))
        assert Problem.from_dict(data) == problem
        assert Problem.from_dict(data).canonical_hash() == problem.canonical_hash()


def test_evaluate_ignores_stored_values():
    problem = generate(9, random.Random(3), GraphConfig(modulus=None), N_GROUPS, N_ITEMS)
    data = problem.to_dict()
    for node in data["nodes"]:
        node["value"] = -1
    assert Problem.from_dict(data).evaluate() == problem.answer


def tiny_problem(**changes) -> Problem:
    """Two leaves, their difference, their group's total, and the product of the two; one distractor."""
    nodes = [
        Node(0, 0, 0, "leaf", None, (), 3, 3, True),
        Node(1, 0, 1, "leaf", None, (), 2, 2, True),
        Node(2, 1, 0, "binary", "-", (0, 1), None, 1, True),
        Node(3, 0, -1, "aggregate", "+", (0, 1), None, 5, True),
        Node(4, 1, 1, "binary", "*", (2, 3), None, 5, True),
        Node(5, 2, 0, "const", "+", (4,), 1, 6, False),
    ]
    for key, fields in changes.items():  # "n2": {...} changes node 2
        nodes[int(key[1:])] = dataclasses.replace(nodes[int(key[1:])], **fields)
    return Problem(tuple(nodes), 4, 3, 23)


def test_canonical_hash_is_pinned_and_not_python_hash():
    assert tiny_problem().canonical_hash() == "f6551c26927fdfb0495fa68d3af30b215f212bf86c00366f5025bfc8fd3fb064"


def test_canonical_hash_ignores_slots_but_not_structure():
    base = tiny_problem().canonical_hash()
    assert tiny_problem(n0={"group": 7, "item": 9}, n2={"group": 4}).canonical_hash() == base
    assert tiny_problem(n0={"const": 4, "value": 4}).canonical_hash() != base
    assert tiny_problem(n4={"op": "+"}).canonical_hash() != base
    assert tiny_problem(n2={"parents": (1, 0)}).canonical_hash() != base  # '-' is order-sensitive
    assert tiny_problem(n4={"parents": (3, 2)}).canonical_hash() == base  # '*' is not
    assert tiny_problem(n5={"necessary": True}).canonical_hash() != base


def renumber(problem: Problem, rng: random.Random) -> Problem:
    """The same graph built in another (random) topological order, with its slots permuted."""
    graph = problem.to_networkx()
    keys = {v: rng.random() for v in graph}
    order = list(nx.lexicographical_topological_sort(graph, key=keys.__getitem__))
    new = {old: i for i, old in enumerate(order)}
    groups = rng.sample(range(100), 1 + max(n.group for n in problem.nodes))
    nodes = tuple(
        Node(new[n.index], groups[n.group], n.item if n.item < 0 else n.item + 50, n.kind, n.op,
             tuple(new[p] for p in n.parents), n.const, n.value, n.necessary)
        for n in sorted(problem.nodes, key=lambda n: new[n.index])
    )
    return Problem(nodes, new[problem.query], problem.op, problem.modulus)


def test_canonical_hash_ignores_construction_order():
    rng = random.Random(0)
    for seed in range(30):
        problem = generate(3 + seed % 15, random.Random(seed), GraphConfig(), N_GROUPS, N_ITEMS)
        other = renumber(problem, rng)
        assert other.evaluate() == problem.answer
        assert other.canonical_hash() == problem.canonical_hash()


def test_capacity_shortfall_is_a_clear_error():
    with pytest.raises(ValueError, match=r"3 groups x 4 items = 12 slots cannot hold op=40"):
        generate(40, random.Random(0), GraphConfig(), 3, 4)
    with pytest.raises(ValueError, match="op must be >= 1"):
        generate(0, random.Random(0), GraphConfig(), N_GROUPS, N_ITEMS)


@pytest.mark.parametrize("op, distractors", [(6, 0.5), (10, 0.0), (15, 1.0)])
def test_just_enough_slots_always_suffice(op, distractors):
    # Aggregates close their group's free slots; the generator must never close more than it can spare.
    cfg = GraphConfig(distractors=distractors)
    needed = 2 * op + 1 + round(distractors * (2 * op + 1))
    for n_groups in (2, 3, 4):
        n_items = -(-needed // n_groups)
        for seed in range(150):
            check_invariants(generate(op, random.Random(seed), cfg, n_groups, n_items), op, cfg)


@pytest.mark.parametrize("bad, field", [
    ({"modulus": 1}, "graph.modulus"),
    ({"max_const": 0}, "graph.max_const"),
    ({"modulus": 5, "max_const": 5}, "graph.max_const"),
    ({"distractors": -0.5}, "graph.distractors"),
    ({"value_cap": 0}, "graph.value_cap"),
])
def test_bad_config_names_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        config.build(GraphConfig, bad, "graph")


def test_config_builds_from_plain_data():
    cfg = config.build(GraphConfig, {"modulus": None, "distractors": 1}, "graph")
    assert cfg == GraphConfig(modulus=None, distractors=1.0)
