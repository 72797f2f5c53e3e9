"""Renderings: exact sequence format, statement coverage, closed vocabulary, determinism."""

import dataclasses
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen.contexts import context_vocabulary, load_context
from datagen.graph import GraphConfig, Node, Problem, generate
from datagen.render import STYLES, VARIABLES, quantity_names, render, step_expression

CONTEXTS = ("zoo", "teachers", "movies")


def sample(seed: int, op: int, context: str = "zoo", modulus: int | None = 23):
    ctx = load_context(context)
    problem = generate(op, random.Random(seed), GraphConfig(modulus=modulus), len(ctx.groups), len(ctx.items))
    return problem, ctx


def split(text: str, end: str) -> list[str]:
    """Statements of a problem text, each keeping its closing punctuation `end`."""
    return [part.strip() + end for part in text.split(end) if part.strip()]


def leaf_const_total() -> Problem:
    """A = 3; B = 2 + A; C = total of their group (A + B); one distractor D = 2 * B; query C (op 5)."""
    return Problem((
        Node(0, 0, 0, "const", None, (), 3, 3, True),
        Node(1, 0, 1, "c_op_X", "+", (0,), 2, 5, True),
        Node(2, 0, -1, "aggregate", None, (0, 1), None, 8, True),
        Node(3, 1, 0, "c_op_X", "*", (1,), 2, 10, False),
    ), 2, 5, None)


def test_natural_rendering_of_a_known_problem():
    problem = leaf_const_total()
    r = render(problem, load_context("zoo"), "natural", random.Random(1))
    a, b, c, d = (r.names[i] for i in range(4))
    assert re.fullmatch(r"adult \w+ in [A-Z]\w+ (Zoo|Valley|Park|Ridge|Grove)", a)
    assert c.startswith("total number of animals in ") and c.endswith(a.split(" in ")[1])
    assert r.solution == (f"Define {a} as A ; so A = 3 . Define {b} as B ; so B = 2 + A = 5 . "
                          f"Define {c} as C ; so C = A + B = 8 .")
    assert sorted(split(r.problem, " .")) == sorted([
        f"The number of {a} equals 3 .",
        f"The number of {b} equals 2 plus the number of {a} .",
        f"The number of {d} equals 2 times the number of {b} .",
    ])
    assert r.question == f"What is the {c} ?"
    assert r.answer == "8"
    assert r.prompt == f"<question> {r.problem} {r.question} </question> <solution>"
    assert r.text == f"{r.prompt} {r.solution} </solution> <answer> 8 </answer>"


def test_compact_rendering_of_a_known_problem():
    problem = leaf_const_total()
    r = render(problem, load_context("zoo"), "compact", random.Random(1))
    a, b, c, d = (r.names[i] for i in range(4))
    assert all(re.fullmatch(r"[A-Z][a-z]{3}", n) for n in (a, b, c, d))
    assert c == a[0] + "ani" and b[0] == a[0]
    statements = [f"{a} = 3 ;", f"{b} = 2 + {a} ;", f"{c} = {a} + {b} ;", f"{d} = 2 * {b} ;"]
    assert sorted(split(r.problem, " ;")) == sorted(statements)
    assert r.question == f"? {c}"
    assert r.solution == f"{a} = 3 ; {b} = 2 + {a} = 5 ; {c} = {a} + {b} = 8 ;"
    assert r.text == (f"<question> {r.problem} ? {c} </question> "
                      f"<solution> {r.solution} </solution> <answer> 8 </answer>")


def test_inline_rendering_writes_operand_values_and_keeps_the_problem():
    problem = leaf_const_total()
    plain = render(problem, load_context("zoo"), "compact", random.Random(1))
    r = render(problem, load_context("zoo"), "compact-inline", random.Random(1))
    a, b, c = (r.names[i] for i in range(3))
    assert r.solution == f"{a} = 3 ; {b} = 2 + {a} 3 = 5 ; {c} = {a} 3 + {b} 5 = 8 ;"
    assert (r.problem, r.question, r.answer, r.names) == (plain.problem, plain.question, plain.answer, plain.names)


def form(kind: str, parents: tuple[int, ...], op: str | None = None, const: int | None = None) -> Node:
    return Node(9, 0, 0, kind, op, parents, const, 0, True)


@pytest.mark.parametrize("node, expression", [
    (form("const", (), const=3), "3"),
    (form("copy", (0,)), "A"),
    (form("c_op_X", (0,), "+", 3), "3 + A"),
    (form("c_op_X", (0,), "*", 3), "3 * A"),
    (form("c_op_X", (0,), "-", 3), "A - 3"),
    (form("sum2", (0, 1)), "A + B"),
    (form("diff2", (1, 0)), "B - A"),
    (form("sumk", (0, 1, 2, 3)), "A + B + C + D"),
    (form("c_op_sum2", (0, 1), "+", 2), "2 + ( A + B )"),
    (form("c_op_diff2", (0, 1), "*", 4), "4 * ( A - B )"),
    (form("c_op_sumk", (0, 1, 2), "-", 1), "( A + B + C ) - 1"),
    (form("aggregate", (2,)), "C"),
    (form("aggregate", (0, 2)), "A + C"),
])
def test_step_expression_covers_every_form(node, expression):
    assert step_expression(node, "ABCD") == expression
    inline = ["A 7", "B 5", "C 2", "D 1"]  # compact-inline: each reference followed by its value
    assert step_expression(node, inline) == re.sub(r"\b([A-D])\b", lambda m: inline["ABCD".index(m[1])], expression)


def test_natural_statements_spell_out_every_form():
    nodes = (
        Node(0, 0, 0, "const", None, (), 3, 3, True), Node(1, 0, 1, "const", None, (), 2, 2, True),
        Node(2, 0, 2, "sumk", None, (0, 1, 0), None, 8, True),  # (operands need not be distinct here)
        Node(3, 1, 0, "c_op_diff2", "*", (0, 1), 4, 4, True),
        Node(4, 1, 1, "c_op_sumk", "+", (0, 1, 2), 1, 14, True),
        Node(5, 1, -1, "aggregate", None, (3, 4), None, 18, True),
    )
    r = render(Problem(nodes, 5, 17, None), load_context("zoo"), "natural", random.Random(0))
    a, b, c, d, e = (f"number of {r.names[i]}" for i in range(5))
    assert sorted(split(r.problem, " .")) == sorted([
        f"The {a} equals 3 .", f"The {b} equals 2 .",
        f"The {c} equals the sum of the {a} , the {b} , and the {a} .",
        f"The {d} equals 4 times the difference between the {a} and the {b} .",
        f"The {e} equals 1 plus the sum of the {a} , the {b} , and the {c} .",
    ])
    assert "so D = 4 * ( A - B ) = 4 ." in r.solution and "so E = 1 + ( A + B + C ) = 14 ." in r.solution


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), op=st.integers(1, 40), context=st.sampled_from(CONTEXTS),
       style=st.sampled_from(STYLES), modulus=st.sampled_from([None, 23]))
def test_every_token_is_in_the_closed_vocabulary(seed, op, context, style, modulus):
    problem, ctx = sample(seed, op, context, modulus)
    r = render(problem, ctx, style, random.Random(seed))
    vocabulary = set(context_vocabulary(ctx, style))
    outside = [t for t in r.text.split() if t not in vocabulary and not re.fullmatch(r"0|[1-9][0-9]*", t)]
    assert outside == []
    assert r.text == " ".join(r.text.split())  # single spaces, no stray whitespace


@pytest.mark.parametrize("context", CONTEXTS)
def test_statements_cover_the_problem(context):
    for seed in range(30):
        problem, ctx = sample(seed, 2 + seed % 19, context)
        stated = [n for n in problem.nodes if n.kind != "aggregate"]
        natural = render(problem, ctx, "natural", random.Random(seed))
        assert natural.problem.split().count(".") == len(stated)  # aggregates are implicit in natural text
        assert not re.search(r"(^|\. )The total number of", natural.problem)
        assert natural.solution.split().count("Define") == len(problem.necessary_nodes())
        compact = render(problem, ctx, "compact", random.Random(seed))
        assert compact.problem.split().count(";") == len(problem.nodes)  # compact states aggregates as sums
        assert compact.solution.split().count(";") == len(problem.necessary_nodes())
        for r in (natural, compact):
            assert r.answer == str(problem.evaluate())
            assert len(set(r.names.values())) == len(problem.nodes)
            assert r.text.startswith(r.prompt) and r.prompt.endswith("</question> <solution>")


def test_statements_are_shuffled_and_seeded():
    problem, ctx = sample(0, 12)
    texts = {render(problem, ctx, "compact", random.Random(s)).problem for s in range(20)}
    assert len(texts) == 20
    assert render(problem, ctx, "natural", random.Random(5)) == render(problem, ctx, "natural", random.Random(5))
    in_order = 0
    for seed in range(20):
        r = render(problem, ctx, "compact", random.Random(seed))
        defined = [s.split()[0] for s in split(r.problem, " ;")]
        in_order += defined == [r.names[n.index] for n in problem.nodes]
    assert in_order < 2


def test_quantity_names_match_render():
    for seed in range(20):
        problem, ctx = sample(seed, 8, CONTEXTS[seed % 3])
        for style in STYLES:
            assert quantity_names(problem, ctx, style, random.Random(seed)) == \
                render(problem, ctx, style, random.Random(seed)).names


def test_two_contexts_same_seed_differ_only_in_surface():
    problem, zoo = sample(4, 15)
    teachers = load_context("teachers")
    # A context of another size must not shift the statement order either.
    bigger = dataclasses.replace(
        teachers, groups=(*teachers.groups, "Elm High"), compact_groups=(*teachers.compact_groups, "EH"),
        items=(*teachers.items, "poetry teacher"), compact_items=(*teachers.compact_items, "poe"))

    def skeleton(r):
        index = {name: f"<q{i}>" for i, name in r.names.items()}
        return " ".join(index.get(t, t) for t in r.text.split())
    a = render(problem, zoo, "compact", random.Random(9))
    for other in (teachers, bigger):
        b = render(problem, other, "compact", random.Random(9))
        assert a.text != b.text
        assert skeleton(a) == skeleton(b)


def test_long_solutions_use_two_letter_variables():
    problem, ctx = sample(1, 80)
    assert len(problem.necessary_nodes()) > 26
    r = render(problem, ctx, "natural", random.Random(1))
    assert " as AA ; so AA = " in r.solution
    assert VARIABLES[26] == "AA" and len(set(VARIABLES)) == 26 * 27


def test_unknown_style_and_too_small_context_are_errors():
    problem, ctx = sample(0, 5)
    with pytest.raises(ValueError, match="unknown style 'fancy'"):
        render(problem, ctx, "fancy", random.Random(0))
    big = generate(30, random.Random(0), GraphConfig(), 40, 40)
    with pytest.raises(ValueError, match=r"context 'zoo' has only 12 x 22"):
        render(big, ctx, "natural", random.Random(0))


def test_render_does_not_import_contexts():
    # contexts.py checks phrasing overrides against render.py, so the dependency runs one way only (issue 13).
    import subprocess
    import sys

    code = "import sys, datagen.render; assert 'datagen.contexts' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
