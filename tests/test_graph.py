"""The generator: the paper's op counted exactly, by construction; necessity = ancestry, aggregate semantics,
value ranges, determinism, hashing."""

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
MODES = {"paper": GraphConfig(), "mod23": GraphConfig(modulus=23, distractors=0.5, const_ops=("+", "-", "*"))}
CONSTANT = "constant"  # the constant source node of the paper's op(G) = |E|


def paper_op(problem: Problem) -> int:
    """op(G) = |E| of the necessary graph with a constant source node, computed with networkx alone."""
    graph = problem.to_networkx()
    necessary = nx.ancestors(graph, problem.query) | {problem.query}
    counted = nx.DiGraph(graph.subgraph(necessary))
    for v in necessary:
        if graph.nodes[v]["const"] is not None:
            counted.add_edge(CONSTANT, v)
    return counted.number_of_edges()


def nx_values(problem: Problem) -> dict[int, int]:
    """Every node's value computed over to_networkx() in a networkx topological order (no Problem code)."""
    graph = problem.to_networkx()
    modulus = graph.graph["modulus"]
    values: dict[int, int] = {}
    for v in nx.topological_sort(graph):
        attrs = graph.nodes[v]
        operands = [values[p] for p in sorted(graph.predecessors(v), key=lambda p: graph.edges[p, v]["position"])]
        if attrs["kind"] == "const":
            x = attrs["const"]
        else:
            x = operands[0] - operands[1] if attrs["kind"] in ("diff2", "c_op_diff2") else sum(operands)
            if attrs["op"] == "+":
                x = attrs["const"] + x
            elif attrs["op"] == "*":
                x = attrs["const"] * x
            elif attrs["op"] == "-":
                x = x - attrs["const"]
        values[v] = x if modulus is None else x % modulus
    return values


QUANTITY_PARENTS = {"const": {0}, "copy": {1}, "c_op_X": {1}, "sum2": {2}, "diff2": {2}, "sumk": {3, 4},
                    "c_op_sum2": {2}, "c_op_diff2": {2}, "c_op_sumk": {3, 4}}


def check_invariants(problem: Problem, op: int, cfg: GraphConfig) -> None:
    nodes = problem.nodes
    assert [n.index for n in nodes] == list(range(len(nodes)))
    necessary = problem.necessary_nodes()
    assert problem.op == op == paper_op(problem) == sum(n.edges for n in necessary)
    assert problem.arith_ops == op - len(necessary) == sum(n.edges - 1 for n in necessary)

    graph = problem.to_networkx()
    assert nx.is_directed_acyclic_graph(graph)
    ancestry = nx.ancestors(graph, problem.query) | {problem.query}
    assert {n.index for n in nodes if n.necessary} == ancestry
    if isinstance(cfg.distractors, float):
        assert len(nodes) - len(necessary) == round(cfg.distractors * len(necessary))
    assert all(n.kind != "aggregate" for n in nodes if not n.necessary)  # every distractor is a statement

    slots = [(n.group, n.item) for n in nodes]
    assert len(set(slots)) == len(slots)
    for node in nodes:
        assert all(p < node.index for p in node.parents)
        assert len(set(node.parents)) == len(node.parents)
        if node.kind == "aggregate":
            # A total is the sum of every quantity stated in its group, and the group takes none after it.
            members = [n.index for n in nodes if n.group == node.group and n.item >= 0]
            assert list(node.parents) == members and len(members) >= 1 and node.item == -1
            assert node.op is None and node.const is None
        else:
            assert len(node.parents) in QUANTITY_PARENTS[node.kind] and node.item >= 0
            has_const = node.kind == "const" or node.kind.startswith("c_op_")
            assert (node.const is not None) == has_const
            assert (node.op is not None) == (has_const and node.kind != "const")
        if node.op is not None:
            assert node.op in cfg.const_ops
            low = 2 if node.op == "*" else 1
            assert low <= node.const <= cfg.max_const  # number_range 5: addends 1-4, multipliers 2-4
        if node.kind == "const":
            assert 1 <= node.const <= cfg.max_const
        if cfg.modulus is None:
            assert 1 <= node.value <= cfg.value_cap
        else:
            assert 0 <= node.value < cfg.modulus

    values = nx_values(problem)
    assert [values[n.index] for n in nodes] == [n.value for n in nodes]
    assert problem.evaluate() == problem.answer == values[problem.query]


def hand_built(kind: str, parents: int, op: str | None = None, const: int | None = None) -> Problem:
    """One quantity of `kind` over `parents` stated numbers 5, 3, 2, 1 (all in group 0, the query in group 1)."""
    leaves = [Node(i, 0, i, "const", None, (), v, v, True) for i, v in enumerate((5, 3, 2, 1)[:parents])]
    operands = [n.value for n in leaves]
    inner = operands[0] - operands[1] if "diff" in kind else sum(operands)
    value = {None: inner, "+": const + inner if const else inner, "*": (const or 1) * inner,
             "-": inner - (const or 0)}[op]
    item, group = (-1, 0) if kind == "aggregate" else (0, 1)
    query = Node(parents, group, item, kind, op, tuple(range(parents)), const, value, True)
    return Problem((*leaves, query), parents, parents + parents + (const is not None), None)


@pytest.mark.parametrize("form, kind, parents, op, const, edges", [
    ("const", "const", 0, None, None, 1),  # X = 3
    ("copy", "copy", 1, None, None, 1),  # X = Y
    ("c_plus_X", "c_op_X", 1, "+", 3, 2),  # X = 3 + Y
    ("c_times_X", "c_op_X", 1, "*", 3, 2),  # X = 3 * Y
    ("sum2", "sum2", 2, None, None, 2),
    ("diff2", "diff2", 2, None, None, 2),
    ("sumk (k=3)", "sumk", 3, None, None, 3),
    ("sumk (k=4)", "sumk", 4, None, None, 4),
    ("c_op_sum2", "c_op_sum2", 2, "+", 3, 3),  # c plus (A + B) is 3
    ("c_op_diff2", "c_op_diff2", 2, "*", 2, 3),
    ("c_op_sumk", "c_op_sumk", 3, "*", 4, 4),
    ("aggregate (k=1)", "aggregate", 1, None, None, 1),  # a total over one item is a copy
    ("aggregate (k=3)", "aggregate", 3, None, None, 3),
])
def test_counting_rules_per_statement_form(form, kind, parents, op, const, edges):
    if kind == "const":
        problem = Problem((Node(0, 0, 0, "const", None, (), 3, 3, True),), 0, 1, None)
    else:
        problem = hand_built(kind, parents, op, const)
    query = problem.nodes[-1]
    assert query.edges == edges, form
    # Each stated operand is one edge from the constant source; the query's own edges come on top.
    assert paper_op(problem) == problem.op == parents + edges
    assert problem.arith_ops == problem.op - len(problem.nodes)
    assert query.edges - 1 == {"const": 0, "copy": 0, "aggregate": parents - 1}.get(kind, edges - 1)
    assert nx_values(problem)[problem.query] == problem.evaluate() == problem.answer


def test_paper_examples_count_as_the_reference_does():
    # GSM-Infinite's op-4 example: two stated numbers and their group's total: op 4, 1 arithmetic operation.
    nodes = (Node(0, 0, 0, "const", None, (), 4, 4, True), Node(1, 0, 1, "const", None, (), 3, 3, True),
             Node(2, 0, -1, "aggregate", None, (0, 1), None, 7, True))
    example = Problem(nodes, 2, 4, None)
    assert paper_op(example) == 4 and example.arith_ops == 1
    # Its op-12 example: 2 numbers, 2 totals of 2, two sums of three: 2 + 2*2 + 2*3 = 12 edges, 6 operations.
    nodes = (*nodes[:2], dataclasses.replace(nodes[2], value=7),
             Node(3, 1, 0, "sumk", None, (2, 1, 0), None, 14, True),
             Node(4, 1, 1, "sumk", None, (3, 2, 0), None, 25, True),
             Node(5, 1, -1, "aggregate", None, (3, 4), None, 39, True))
    example = Problem(nodes, 5, 12, None)
    assert paper_op(example) == 12 and example.arith_ops == 6 and example.evaluate() == 39


@pytest.mark.parametrize("mode", MODES)
def test_every_op_from_1_to_40_is_exact(mode):
    cfg = MODES[mode]
    for op in range(1, 41):
        for seed in range(4):
            check_invariants(generate(op, random.Random(seed), cfg, N_GROUPS, N_ITEMS), op, cfg)


def test_every_generated_problem_at_op_2_to_20_has_the_requested_op_and_values_in_range():
    rng = random.Random(0)
    for op in range(2, 21):
        for _ in range(60):
            problem = generate(op, rng, GraphConfig(), N_GROUPS, N_ITEMS)
            assert paper_op(problem) == problem.op == op
            assert all(1 <= n.value <= 1000 for n in problem.nodes)
    assert all(generate(op, rng, GraphConfig(), N_GROUPS, N_ITEMS).arith_ops == 0 for op in (2, 3) for _ in range(50))


@settings(max_examples=200, deadline=None)
@given(op=st.integers(1, 40), seed=st.integers(0, 2**32), modulus=st.sampled_from([None, 5, 23, 101]),
       max_const=st.integers(2, 4), distractors=st.sampled_from([0.0, 0.3, 0.5, 1.0, 2.0, "gsm-infinite"]),
       const_ops=st.sampled_from([("+", "*"), ("+",), ("+", "-", "*")]))
def test_invariants_hold_for_any_config(op, seed, modulus, max_const, distractors, const_ops):
    cfg = GraphConfig(modulus=modulus, max_const=max_const, distractors=distractors, const_ops=const_ops)
    check_invariants(generate(op, random.Random(seed), cfg, N_GROUPS, N_ITEMS), op, cfg)


def test_all_forms_occur_in_necessary_and_distractor_parts():
    seen = {True: set(), False: set()}
    ops = set()
    queries = set()
    for seed in range(400):
        problem = generate(4 + seed % 14, random.Random(seed), MODES["mod23"], N_GROUPS, N_ITEMS)
        seen[True].update(n.kind for n in problem.necessary_nodes())
        seen[False].update(n.kind for n in problem.nodes if not n.necessary)
        ops.update(n.op for n in problem.nodes if n.op is not None)
        queries.add(problem.nodes[problem.query].kind)
    assert seen[True] == set(KINDS)
    assert seen[False] == {"const", "copy", "c_op_X", "sum2", "diff2", "sumk"}
    assert ops == set(OPS)
    assert "aggregate" in queries and len(queries) > 5


def test_most_questions_ask_for_a_group_total():
    rng = random.Random(1)
    totals = [generate(12, rng, GraphConfig(), N_GROUPS, N_ITEMS) for _ in range(400)]
    share = sum(p.nodes[p.query].kind == "aggregate" for p in totals) / len(totals)
    assert 0.75 < share < 0.95  # GSM-Infinite: ~0.85


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
    assert digest == "e8c4a3cf583de7eb146dca46a5243546234eff2a53bd7aa1ccf0f0e249f86f91"


def test_operation_tilt_packs_more_operations_into_the_same_op():
    def mean_operations(tilt, op):
        rng = random.Random(3)
        problems = [generate(op, rng, GraphConfig(operation_tilt=tilt), N_GROUPS, N_ITEMS) for _ in range(300)]
        for problem in problems:
            check_invariants(problem, op, GraphConfig(operation_tilt=tilt))
        return sum(p.arith_ops for p in problems) / len(problems)

    # op = quantities + operations, so more operations per problem at one op means fewer, busier statements.
    for op in (10, 12):
        assert mean_operations(1 / 3, op) + 0.4 < mean_operations(1.0, op) < mean_operations(3.0, op) - 0.4
    # At the default the odds are multiplied by exactly 1: the study's generator, draw for draw.
    assert generate(12, random.Random(2024), GraphConfig(operation_tilt=1), N_GROUPS, N_ITEMS) == generate(
        12, random.Random(2024), GraphConfig(), N_GROUPS, N_ITEMS)


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
    """Two numbers, their difference, their group's total, 2 times the sum of the two; one distractor."""
    nodes = [
        Node(0, 0, 0, "const", None, (), 3, 3, True),
        Node(1, 0, 1, "const", None, (), 2, 2, True),
        Node(2, 1, 0, "diff2", None, (0, 1), None, 1, True),
        Node(3, 0, -1, "aggregate", None, (0, 1), None, 5, True),
        Node(4, 1, 1, "c_op_sum2", "*", (2, 3), 2, 12, True),
        Node(5, 2, 0, "c_op_X", "+", (4,), 1, 13, False),
    ]
    for key, fields in changes.items():  # "n2": {...} changes node 2
        nodes[int(key[1:])] = dataclasses.replace(nodes[int(key[1:])], **fields)
    return Problem(tuple(nodes), 4, 9, 23)


def test_canonical_hash_is_pinned_and_not_python_hash():
    assert tiny_problem().canonical_hash() == "7a4c7c6bd36a3dd609ba451a225203579b72a02a38de5bff8c20959ea36016df"


def test_canonical_hash_ignores_slots_but_not_structure():
    base = tiny_problem().canonical_hash()
    assert tiny_problem(n0={"group": 7, "item": 9}, n2={"group": 4}).canonical_hash() == base
    assert tiny_problem(n0={"const": 4, "value": 4}).canonical_hash() != base
    assert tiny_problem(n4={"op": "+"}).canonical_hash() != base
    assert tiny_problem(n2={"parents": (1, 0)}).canonical_hash() != base  # a difference is order-sensitive
    assert tiny_problem(n4={"parents": (3, 2)}).canonical_hash() == base  # a sum is not
    assert tiny_problem(n5={"necessary": True}).canonical_hash() != base


def test_reasoning_hash_ignores_distractors_and_slots_only():
    base = tiny_problem().reasoning_hash()
    assert tiny_problem(n5={"const": 4, "op": "*"}).reasoning_hash() == base  # the distractor changed
    assert tiny_problem(n5={"const": 4, "op": "*"}).canonical_hash() != tiny_problem().canonical_hash()
    assert tiny_problem(n0={"group": 7, "item": 9}).reasoning_hash() == base
    assert tiny_problem(n4={"const": 3}).reasoning_hash() != base
    assert tiny_problem(n2={"parents": (1, 0)}).reasoning_hash() != base
    without = Problem(tiny_problem().nodes[:5], 4, 9, 23)
    assert without.reasoning_hash() == base and without.canonical_hash() != tiny_problem().canonical_hash()


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
        assert other.reasoning_hash() == problem.reasoning_hash()


def test_capacity_shortfall_is_a_clear_error():
    with pytest.raises(ValueError, match=r"3 groups x 4 items = 12 slots cannot hold op=40"):
        generate(40, random.Random(0), GraphConfig(), 3, 4)
    with pytest.raises(ValueError, match="op must be >= 1"):
        generate(0, random.Random(0), GraphConfig(), N_GROUPS, N_ITEMS)


@pytest.mark.parametrize("op, distractors", [(6, 0.5), (10, 0.0), (15, 1.0)])
def test_just_enough_slots_always_suffice(op, distractors):
    # Totals close their group's free slots; the generator must never close more than it can spare.
    cfg = GraphConfig(modulus=23, distractors=distractors)
    needed = op + round(distractors * op)
    for n_groups in (2, 3, 4):
        n_items = -(-needed // n_groups)
        for seed in range(150):
            check_invariants(generate(op, random.Random(seed), cfg, n_groups, n_items), op, cfg)


@pytest.mark.parametrize("bad, field", [
    ({"modulus": 1}, "graph.modulus"),
    ({"max_const": 1}, "graph.max_const"),
    ({"modulus": 5, "max_const": 5}, "graph.max_const"),
    ({"distractors": -0.5}, "graph.distractors"),
    ({"distractors": "many"}, "graph.distractors"),
    ({"const_ops": ["/"]}, "graph.const_ops"),
    ({"const_ops": []}, "graph.const_ops"),
    ({"value_cap": 0}, "graph.value_cap"),
    ({"operation_tilt": 0}, "graph.operation_tilt"),
    ({"operation_tilt": -2.0}, "graph.operation_tilt"),
])
def test_bad_config_names_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        config.build(GraphConfig, bad, "graph")


def test_config_builds_from_plain_data():
    cfg = config.build(GraphConfig, {"modulus": None, "distractors": 1, "const_ops": ["+", "-"]}, "graph")
    assert cfg == GraphConfig(modulus=None, distractors=1.0, const_ops=("+", "-"))
    assert config.build(GraphConfig, {}, "graph").distractors == "gsm-infinite"


def test_tiny_problem_counts_its_op():
    assert paper_op(tiny_problem()) == tiny_problem().op == 9 and tiny_problem().arith_ops == 4
