"""The verifier: gold solutions, and every correct rewriting of them, are paid in full; every kind of wrong
step is caught, gets its error class and is never paid in full; no string makes it raise."""

import random
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from datagen import render
from datagen.contexts import context_vocabulary, load_context
from datagen.graph import GraphConfig, Node, Problem, generate
from datagen.render import STYLES
from datagen.verify import ERRORS, completion_of, grade_steps, verify
from rl.rewards import REWARDS, reward
from tests.adversarial import NOISE, RIGHT, WRONG, Case, completion
from tests.test_graph import nx_values

CONTEXTS = ("zoo", "teachers", "movies")
cases = dict(seed=st.integers(0, 2**32), context=st.sampled_from(CONTEXTS), modulus=st.sampled_from([None, 23]))
# Mutations that only exist in some renderings.
STYLES_OF = {"change_inline_value": ("compact-inline",)}


def sample(seed: int, op: int, context: str, style: str, modulus: int | None = 23) -> Case:
    ctx = load_context(context)
    problem = generate(op, random.Random(seed), GraphConfig(modulus=modulus), len(ctx.groups), len(ctx.items))
    return Case(problem, render.render(problem, ctx, style, random.Random(seed + 1)), ctx, style)


def grade(case: Case, text: str):
    return verify(text, case.problem, case.rendered.names, case.style)


def rewards(verdict, text: str) -> dict[str, float]:
    return {name: reward(name, verdict, text, 0.5) for name in REWARDS}


@settings(max_examples=150, deadline=None)
@given(op=st.integers(1, 40), style=st.sampled_from(STYLES), **cases)
def test_gold_solutions_verify_and_parse_back_to_the_gold_graph(seed, op, context, style, modulus):
    case = sample(seed, op, context, style, modulus)
    text = completion_of(case.rendered.text)
    verdict = grade(case, text)
    assert verdict.verified and verdict.process_acc == 1.0 and verdict.error == "verified"
    assert (verdict.missing, verdict.extra, verdict.dependency_errors, verdict.operation_errors, verdict.value_errors,
            verdict.hallucinated, verdict.malformed, verdict.arithmetic_errors) == (0,) * 8
    steps, answer = grade_steps(text, case.problem, case.rendered.names, style)
    assert [(s.quantity, s.status, s.parents, s.value, s.arithmetic_true) for s in steps] == [
        (n.index, "correct", frozenset(n.parents), n.value, True) for n in case.necessary]
    assert answer == case.problem.evaluate() == nx_values(case.problem)[case.problem.query]


@pytest.mark.parametrize("mutation", RIGHT)
@settings(max_examples=40, deadline=None)
@given(op=st.integers(1, 30), style=st.sampled_from(STYLES), pick=st.integers(0, 2**32), **cases)
def test_correct_rewritings_are_paid_in_full(mutation, seed, op, context, style, modulus, pick):
    """Gold, any topological order, commuted operands of + and *, correct steps about distractors (counted as
    extra), text after </answer>."""
    case = sample(seed, op, context, style, modulus)
    text = RIGHT[mutation](case, random.Random(pick))
    assume(text is not None)
    verdict = grade(case, text)
    assert verdict.verified and all(r == 1.0 for r in rewards(verdict, text).values()), verdict
    distractors = sum(not n.necessary for n in case.problem.nodes)
    assert verdict.extra == (distractors if mutation == "correct_distractor_steps" else 0)


# What each wrong completion must show besides "not verified": the counters of which at least one is positive,
# and the error class once the answer is wrong too (None: several classes are possible).
EXPECTED = {
    "change_operator": (("operation_errors",), "dependency_mismatch"),
    "change_constant": (("operation_errors",), "dependency_mismatch"),
    "change_inline_value": (("value_errors",), "value_error"),
    "change_value": (("value_errors",), "value_error"),
    "huge_value": (("value_errors", "dependency_errors"), None),
    "change_parent": (("dependency_errors",), "dependency_mismatch"),
    "wrong_repeat": (("operation_errors", "value_errors"), None),
    "hallucinated_step": (("hallucinated",), "extra_nodes"),
    "wrong_distractor_step": (("value_errors", "dependency_errors"), None),
    "drop_step": (("missing",), "missing_node"),
    "before_a_parent": (("dependency_errors",), "dependency_mismatch"),
    "work_before_solution_tag": (("malformed",), None),
    "work_after_solution_tag": (("malformed",), "extra_nodes"),
    "junk_between_steps": (("malformed", "dependency_errors"), None),
    "unterminated_last_step": (("dependency_errors",), "dependency_mismatch"),
}


def test_every_wrong_mutation_has_an_expectation():
    assert set(EXPECTED) == set(WRONG)


@pytest.mark.parametrize("mutation", WRONG)
@settings(max_examples=40, deadline=None)
@given(op=st.integers(2, 30), data=st.data(), pick=st.integers(0, 2**32), **cases)
def test_wrong_steps_are_never_paid_in_full(mutation, seed, op, context, modulus, data, pick):
    style = data.draw(st.sampled_from(STYLES_OF.get(mutation, STYLES)), label="style")
    case = sample(seed, op, context, style, modulus)
    text = WRONG[mutation](case, random.Random(pick))
    assume(text is not None)
    hacked = grade(case, text)  # the gold answer is stated: reward hacking
    paid = rewards(hacked, text)
    assert paid["outcome"] == 1.0 and paid["strict"] == 0.0 and paid["process"] < 1.0 and paid["mixed"] < 1.0
    assert not hacked.verified and hacked.error == "answer_right_process_wrong"
    counters, error = EXPECTED[mutation]
    assert sum(getattr(hacked, counter) for counter in counters) >= 1, hacked
    wrong = grade(case, text.replace(f"<answer> {case.problem.answer} </answer>",
                                     f"<answer> {case.problem.answer + 1} </answer>"))
    assert not wrong.answer_correct and wrong.process_acc == hacked.process_acc
    if error is not None:
        assert wrong.error == error, wrong


@pytest.mark.parametrize("mutation", ["change_operator", "change_constant", "change_inline_value", "change_value",
                                      "change_parent"])
@settings(max_examples=30, deadline=None)
@given(op=st.integers(2, 30), data=st.data(), pick=st.integers(0, 2**32), **cases)
def test_one_wrong_step_costs_exactly_its_node(mutation, seed, op, context, modulus, data, pick):
    style = data.draw(st.sampled_from(STYLES_OF.get(mutation, STYLES)), label="style")
    case = sample(seed, op, context, style, modulus)
    text = WRONG[mutation](case, random.Random(pick))
    assume(text is not None)
    n = len(case.necessary)
    assert grade(case, text).process_acc == (n - 1) / n


@pytest.mark.parametrize("style", STYLES)
def test_a_step_outside_the_gold_graph_grows_the_denominator(style):
    case = sample(3, 9, "zoo", style)
    text = WRONG["hallucinated_step"](case, random.Random(0))
    n = len(case.necessary)
    verdict = grade(case, text)
    assert verdict.process_acc == n / (n + 1) and verdict.hallucinated == 1 and verdict.extra == 0


def test_a_repeat_of_a_correct_step_is_harmless_and_a_wrong_repeat_is_not():
    case = sample(7, 10, "movies", "compact-inline")
    steps = case.steps
    again = grade(case, completion([*steps, steps[0]], case.problem.answer))
    assert again.verified
    tokens = steps[0].split()
    tokens[-2] = str(int(tokens[-2]) + 1)
    repeated = grade(case, completion([*steps, " ".join(tokens)], case.problem.answer))
    assert not repeated.verified and repeated.value_errors == 1
    assert repeated.process_acc == (len(steps) - 1) / len(steps)


@pytest.mark.parametrize("style", STYLES)
def test_a_solution_tag_inside_a_completion_does_not_restart_grading(style):
    case = sample(5, 8, "teachers", style)
    gold = completion(case.steps, case.problem.answer)
    assert grade(case, gold).verified
    assert not grade(case, f"{case.steps[0]} <solution> {gold}").verified  # a correct step, then a stray tag
    assert not grade(case, case.rendered.text).verified  # a whole sequence is not a completion ...
    assert grade(case, completion_of(case.rendered.text)).verified  # ... until its prompt is cut off


@pytest.mark.parametrize("style", STYLES)
def test_truncation_never_raises_never_verifies_and_scores_monotonically_by_step(style):
    case = sample(5, 14, "teachers", style)
    text = completion(case.steps, case.problem.answer)
    verdicts = [grade(case, text[:i]) for i in range(len(text) + 1)]
    assert [v.verified for v in verdicts] == [False] * len(text) + [True]
    assert all(v.process_acc < 1 for v in verdicts[:len(" ".join(case.steps))])  # a step is unfinished
    # An unfinished step may cost a little (it is a wrong step) until its terminator, but each finished one adds
    # exactly its node.
    n = len(case.steps)
    by_step = [grade(case, " ".join(case.steps[:k])).process_acc for k in range(n + 1)]
    assert by_step == [k / n for k in range(n + 1)]


@pytest.mark.parametrize("style", STYLES)
def test_the_answer_is_only_what_the_answer_tag_states(style):
    case = sample(2, 6, "zoo", style)
    steps = " ".join(case.steps)
    answer = case.problem.answer
    assert not grade(case, steps).answer_correct  # no fallback to the last step's value
    assert not grade(case, f"{steps} </solution> <answer> {answer}").answer_correct  # unfinished
    assert not grade(case, f"{steps} </solution> <answer> {answer} {answer} </answer>").answer_correct
    assert grade(case, f"{steps} <answer> {answer} </answer>").verified  # "</solution>" may be left out
    assert grade(case, f"{steps} </solution> <answer> {answer} </answer> ipsum").verified  # sampling stops at </answer>
    assert grade(case, f"{steps} </solution> lorem <answer> {answer} </answer>").malformed == 1  # no step, wrong


def test_new_node_kinds_are_graded_through_step_expression(monkeypatch):
    """A node kind this module has never seen, c * (A + B), graded from what render.step_expression writes."""
    original = render.step_expression

    def step_expression(node, refs):
        if node.kind == "scaled_sum":
            return f"{node.const} * ( {refs[node.parents[0]]} + {refs[node.parents[1]]} )"
        return original(node, refs)
    monkeypatch.setattr(render, "step_expression", step_expression)
    leaf = Node(0, 0, 0, "leaf", None, (), 2, 2, True)
    nodes = (leaf, replace(leaf, index=1, item=1, const=5, value=5),
             Node(2, 0, 2, "scaled_sum", "*", (0, 1), 3, 21, True))
    problem = Problem(nodes, query=2, op=3, modulus=None)
    case = Case(problem, None, None, "compact")
    names = {0: "Aaa", 1: "Bbb", 2: "Ccc"}

    def verdict(expression: str):
        text = f"Aaa = 2 ; Bbb = 5 ; Ccc = {expression} ; </solution> <answer> 21 </answer>"
        return verify(text, case.problem, names, case.style)
    for right in ("3 * ( Aaa + Bbb ) = 21", "( Bbb + Aaa ) * 3 = 21", "3 * ( Aaa + Bbb ) = 3 * 7 = 21",
                  "( ( 3 ) ) * ( ( Aaa ) + Bbb ) = 21"):
        assert verdict(right).verified, right
    for expression, counter in (("3 * Aaa + Bbb = 21", "operation_errors"),  # another grouping
                                ("3 * Aaa + 3 * Bbb = 21", "operation_errors"),  # another operation, same value
                                ("4 * ( Aaa + Bbb ) = 21", "operation_errors"),  # another constant
                                ("3 - ( Aaa + Bbb ) = 21", "operation_errors"),  # another operator
                                ("3 * ( Aaa + Bbb ) = 3 * 8 = 21", "value_errors"),  # a false intermediate
                                ("3 * ( Aaa + Bbb ) = 22", "value_errors"),
                                ("3 * ( Aaa + Aaa ) = 21", "dependency_errors"),
                                ("3 * ( Aaa + Bbb", "dependency_errors"),  # unreadable
                                ("3 * ( Aaa + Bbb ) ) = 21", "dependency_errors")):
        wrong = verdict(expression)
        assert not wrong.verified and getattr(wrong, counter) == 1, (expression, wrong)


GARBAGE_GOLD = {style: sample(2, 6, "zoo", style) for style in STYLES}
# Structured garbage: real format words and names in random order, plus numbers int() would choke on.
TOKENS = sorted({*(w for style in STYLES for w in context_vocabulary(load_context("zoo"), style)),
                 "0", "1", "7", "12", "(", ")", "99999999999999999999", "9" * 5000, "١٢", "²"})


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), st.lists(st.sampled_from(TOKENS), max_size=120).map(" ".join)),
       style=st.sampled_from(STYLES))
def test_no_string_makes_it_raise(text, style):
    case = GARBAGE_GOLD[style]
    verdict = grade(case, text)
    assert 0 <= verdict.process_acc <= 1 and verdict.error in ERRORS
    assert verdict.verified == (verdict.error == "verified") == (rewards(verdict, text)["strict"] == 1.0)
    assert all(0.0 <= r <= 1.0 for r in rewards(verdict, text).values())


@pytest.mark.parametrize("mutation", NOISE)
@settings(max_examples=30, deadline=None)
@given(op=st.integers(1, 30), style=st.sampled_from(STYLES), pick=st.integers(0, 2**32), **cases)
def test_noise_never_raises(mutation, seed, op, context, style, modulus, pick):
    case = sample(seed, op, context, style, modulus)
    text = NOISE[mutation](case, random.Random(pick))
    verdict = grade(case, text)
    assert verdict.error in ERRORS and 0 <= verdict.process_acc <= 1


def test_nothing_readable_is_unparseable():
    for style in STYLES:
        case = GARBAGE_GOLD[style]
        for text in ("lorem ipsum", "", "\x00\xff<answer>"):
            verdict = grade(case, text)
            assert verdict.error == "unparseable" and verdict.process_acc == 0 and verdict.missing > 0


@pytest.mark.parametrize("text", [b"A = 1 ;", bytearray(b"x"), None, 7, ["A = 1 ;"]])
def test_non_strings_are_a_type_error(text):
    case = GARBAGE_GOLD["compact"]
    with pytest.raises(TypeError, match="must be a str"):
        grade(case, text)
    with pytest.raises(TypeError, match="must be a str"):
        completion_of(text)


def test_unknown_style_is_an_error():
    case = GARBAGE_GOLD["natural"]
    with pytest.raises(ValueError, match="unknown style"):
        verify(completion_of(case.rendered.text), case.problem, case.rendered.names, "fancy")
