"""The verifier: gold solutions parse back to the gold graph; each kind of corruption gets its error class;
no input makes it raise."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen.contexts import context_vocabulary, load_context
from datagen.graph import GraphConfig, Problem, generate
from datagen.render import STYLES, VARIABLES, Rendered, render
from datagen.verify import ERRORS, parse_solution, verify
from tests.test_graph import nx_values

CONTEXTS = ("zoo", "teachers", "movies")
cases = dict(seed=st.integers(0, 2**32), context=st.sampled_from(CONTEXTS), style=st.sampled_from(STYLES),
             modulus=st.sampled_from([None, 23]))


def sample(seed: int, op: int, context: str, style: str, modulus: int | None = 23) -> tuple[Problem, Rendered]:
    ctx = load_context(context)
    problem = generate(op, random.Random(seed), GraphConfig(modulus=modulus), len(ctx.groups), len(ctx.items))
    return problem, render(problem, ctx, style, random.Random(seed + 1))


def parsed_graph(text: str, style: str, names: dict[int, str]) -> dict[int, tuple[frozenset, int | None]]:
    """Predicted steps keyed by gold node index: (parent indices, value)."""
    index = {name: i for i, name in names.items()}
    steps, _ = parse_solution(text, style)
    return {index[s.name]: (frozenset(index[p] for p in s.parents), s.value) for s in steps}


def gold_graph(problem: Problem) -> dict[int, tuple[frozenset, int | None]]:
    return {n.index: (frozenset(n.parents), n.value) for n in problem.necessary_nodes()}


def step_texts(r: Rendered, style: str) -> list[str]:
    end = " ." if style == "natural" else " ;"
    return [part.strip() + end for part in r.solution.split(end) if part.strip()]


def completion(steps: list[str], answer) -> str:
    return f" {' '.join(steps)} </solution> <answer> {answer} </answer>"


@settings(max_examples=200, deadline=None)
@given(op=st.integers(1, 40), **cases)
def test_gold_solutions_verify_and_parse_back_to_the_gold_graph(seed, op, context, style, modulus):
    problem, r = sample(seed, op, context, style, modulus)
    for text in (r.text, r.text[len(r.prompt):]):
        verdict = verify(text, problem, r.names, style)
        assert verdict.verified and verdict.process_acc == 1.0 and verdict.error == "verified"
        assert (verdict.missing, verdict.extra, verdict.dependency_errors, verdict.value_errors) == (0, 0, 0, 0)
        assert parsed_graph(text, style, r.names) == gold_graph(problem)
    _, answer = parse_solution(r.text, style)
    assert answer == problem.evaluate() == nx_values(problem)[problem.query]


@settings(max_examples=60, deadline=None)
@given(op=st.integers(2, 20), **cases)
def test_two_contexts_give_the_same_graph(seed, op, context, style, modulus):
    other = CONTEXTS[(CONTEXTS.index(context) + 1) % 3]
    problem, a = sample(seed, op, context, style, modulus)
    _, b = sample(seed, op, other, style, modulus)
    assert a.text != b.text and set(a.names.values()).isdisjoint(b.names.values())
    assert parsed_graph(a.text, style, a.names) == parsed_graph(b.text, style, b.names) == gold_graph(problem)


def drop_step(problem, r, style, k):
    steps = step_texts(r, style)
    return steps[:k] + steps[k + 1:]


def change_value(problem, r, style, k):
    steps = step_texts(r, style)
    tokens = steps[k].split()
    tokens[-2] = str(int(tokens[-2]) + 1)
    steps[k] = " ".join(tokens)
    return steps


def change_parent(problem, r, style, k):
    """Step k names an earlier quantity that is not its parent instead of its first parent (None: impossible)."""
    necessary = problem.necessary_nodes()
    node = necessary[k]
    others = [j for j, n in enumerate(necessary[:k]) if n.index not in node.parents]
    if not node.parents or not others:
        return None
    ref = (lambda j: VARIABLES[j]) if style == "natural" else (lambda j: r.names[necessary[j].index])
    old, new = ref(next(j for j, n in enumerate(necessary) if n.index == node.parents[0])), ref(others[0])
    steps = step_texts(r, style)
    tokens = steps[k].split()
    first = tokens.index("=") + 1  # the expression sits between the first and the last "="
    last = len(tokens) - 1 - tokens[::-1].index("=")
    tokens[first:last] = [new if t == old else t for t in tokens[first:last]]
    steps[k] = " ".join(tokens)
    return steps


CORRUPTIONS = {
    "missing_node": (drop_step, "missing"),
    "value_error": (change_value, "value_errors"),
    "dependency_mismatch": (change_parent, "dependency_errors"),
}


@pytest.mark.parametrize("expected", CORRUPTIONS)
@settings(max_examples=60, deadline=None)
@given(op=st.integers(2, 25), pick=st.integers(0, 10**6), **cases)
def test_corruptions_are_caught_with_their_error_class(expected, seed, op, pick, context, style, modulus):
    problem, r = sample(seed, op, context, style, modulus)
    corrupt, counter = CORRUPTIONS[expected]
    n = len(problem.necessary_nodes())
    steps = corrupt(problem, r, style, pick % n)
    if steps is None:
        return
    wrong = verify(r.prompt + completion(steps, problem.answer + 1), problem, r.names, style)
    assert wrong.error == expected and getattr(wrong, counter) == 1
    assert wrong.process_acc < 1 and not wrong.verified and not wrong.answer_correct
    if expected != "missing_node":  # a dropped step also unresolves later references to it in natural text
        assert wrong.process_acc == (n - 1) / n
    hacked = verify(r.prompt + completion(steps, problem.answer), problem, r.names, style)
    assert hacked.answer_correct and not hacked.verified and hacked.error == "answer_right_process_wrong"


@pytest.mark.parametrize("style", STYLES)
def test_extra_steps_and_wrong_answers(style):
    problem, r = sample(3, 9, "zoo", style)
    steps = step_texts(r, style)
    extra = "Define imaginary quantity as ZZ ; so ZZ = 1 ." if style == "natural" else "Zzzz = 1 ;"
    padded = [*steps[:-1], extra, steps[-1]]
    right = verify(completion(padded, problem.answer), problem, r.names, style)
    assert right.verified and right.extra == 1 and right.error == "verified"
    wrong = verify(completion(padded, problem.answer + 1), problem, r.names, style)
    assert wrong.process_acc == 1 and wrong.error == "extra_nodes"
    mismatch = verify(completion(steps, problem.answer + 1), problem, r.names, style)
    assert mismatch.process_acc == 1 and not mismatch.answer_correct and mismatch.error == "answer_mismatch"
    untagged = " ".join(steps)
    assert verify(untagged, problem, r.names, style).verified  # the final step's value stands in for <answer>


@pytest.mark.parametrize("style", STYLES)
def test_right_answer_wrong_step_is_reward_hacking(style):
    problem, r = sample(11, 12, "movies", style)
    steps = change_value(problem, r, style, 0)
    verdict = verify(completion(steps, problem.answer), problem, r.names, style)
    assert verdict.answer_correct and not verdict.verified
    assert verdict.error == "answer_right_process_wrong" and verdict.value_errors == 1


@pytest.mark.parametrize("style", STYLES)
def test_truncated_completions_never_raise_and_score_monotonically(style):
    problem, r = sample(5, 14, "teachers", style)
    tokens = r.text[len(r.prompt):].split()
    scores = [verify(" ".join(tokens[:i]), problem, r.names, style).process_acc for i in range(len(tokens) + 1)]
    assert scores == sorted(scores) and scores[0] == 0 and scores[-1] == 1


GARBAGE_GOLD = {style: sample(2, 6, "zoo", style) for style in STYLES}
# Structured garbage: real format words and names in random order, plus numbers int() would choke on.
TOKENS = sorted({*(w for style in STYLES for w in context_vocabulary(load_context("zoo"), style)),
                 "0", "1", "7", "12", "99999999999999999999", "9" * 5000, "١٢", "²"})


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(), st.binary(), st.lists(st.sampled_from(TOKENS), max_size=80).map(" ".join)),
       style=st.sampled_from(STYLES))
def test_random_input_never_raises(text, style):
    problem, r = GARBAGE_GOLD[style]
    verdict = verify(text, problem, r.names, style)
    assert 0 <= verdict.process_acc <= 1 and verdict.error in ERRORS
    assert verdict.verified == (verdict.error == "verified")


def test_nothing_readable_is_unparseable():
    for style in STYLES:
        problem, r = GARBAGE_GOLD[style]
        verdict = verify("lorem ipsum", problem, r.names, style)
        assert verdict.error == "unparseable" and verdict.process_acc == 0 and verdict.missing > 0
        assert verify(b"\xff\xfe<answer>", problem, r.names, style).error == "unparseable"


def test_unknown_style_is_an_error():
    problem, r = GARBAGE_GOLD["natural"]
    with pytest.raises(ValueError, match="unknown style"):
        verify(r.text, problem, r.names, "fancy")
