"""Parse a generated solution back into a graph and grade it against the gold Problem.

This is render.py's inverse, and it runs inside RL reward loops and pass@k evaluation over raw model
samples. So it must never raise on any text and must be cheap: it reads whitespace tokens in one pass, never
backtracks, and treats whatever it cannot read as absent, which then shows up as a missing node or a value
error in the Verdict rather than as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

from datagen.graph import Problem
from datagen.render import OPERATORS, STEP_MARKER, STYLES

# Error classes, from most to least specific about what went right.
ERRORS = ("verified", "answer_right_process_wrong", "unparseable", "missing_node", "dependency_mismatch",
          "value_error", "extra_nodes", "answer_mismatch")
# Longer digit strings are not read as numbers: int() refuses huge literals, and no gold value is that long.
_MAX_DIGITS = 64


@dataclass(frozen=True)
class PredictedStep:
    name: str
    parents: frozenset[str]
    value: int | None  # None when the step has no readable value


@dataclass(frozen=True)
class Verdict:
    process_acc: float  # share of gold necessary nodes present with matching parents and value
    answer_correct: bool
    verified: bool  # process_acc == 1 and answer_correct
    missing: int
    extra: int  # predicted names that are not gold necessary quantities
    dependency_errors: int
    value_errors: int
    error: str  # one of ERRORS


def parse_solution(text: str | bytes, style: str) -> tuple[list[PredictedStep], int | None]:
    """Steps and the <answer> value of a whole sequence or of a bare completion after "<solution>"."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    tokens = text.split()
    start = _index(tokens, "<solution>", 0)
    start = 0 if start is None else start + 1
    end = min(i for i in (_index(tokens, "</solution>", start), _index(tokens, "<answer>", start), len(tokens))
              if i is not None)
    body = tokens[start:end]
    steps = _natural_steps(body) if style == "natural" else _compact_steps(body)
    tag = _index(tokens, "<answer>", start)
    answer = _number(tokens[tag + 1]) if tag is not None and tag + 1 < len(tokens) else None
    return steps, answer


def verify(text: str | bytes, gold: Problem, names: dict[int, str], style: str) -> Verdict:
    """Grade `text` against `gold`, whose quantities are called `names` (node index -> name) in `style`."""
    steps, answer = parse_solution(text, style)
    predicted: dict[str, PredictedStep] = {}
    for step in steps:
        predicted.setdefault(step.name, step)  # a later repeat cannot repair a wrong first attempt

    necessary = gold.necessary_nodes()
    gold_names = set()
    missing = dependency_errors = value_errors = correct = 0
    for node in necessary:
        name = names[node.index]
        gold_names.add(name)
        step = predicted.get(name)
        if step is None:
            missing += 1
            continue
        parents_ok = step.parents == frozenset(names[p] for p in node.parents)
        value_ok = step.value == node.value
        dependency_errors += not parents_ok
        value_errors += not value_ok
        correct += parents_ok and value_ok
    extra = sum(name not in gold_names for name in predicted)

    process_acc = correct / len(necessary)
    final = answer if answer is not None else (steps[-1].value if steps else None)
    answer_correct = final is not None and final == gold.answer
    verified = process_acc == 1.0 and answer_correct
    if verified:
        error = "verified"
    elif answer_correct:
        error = "answer_right_process_wrong"
    elif not steps and answer is None:
        error = "unparseable"
    elif missing:
        error = "missing_node"
    elif dependency_errors:
        error = "dependency_mismatch"
    elif value_errors:
        error = "value_error"
    elif extra:
        error = "extra_nodes"
    else:
        error = "answer_mismatch"
    return Verdict(process_acc, answer_correct, verified, missing, extra, dependency_errors, value_errors, error)


def _index(tokens: list[str], token: str, start: int) -> int | None:
    try:
        return tokens.index(token, start)
    except ValueError:
        return None


def _number(token: str) -> int | None:
    if len(token) <= _MAX_DIGITS and token.isascii() and token.isdigit():
        return int(token)
    return None


def _right_hand_side(tokens: list[str]) -> tuple[list[str], int | None]:
    """(expression tokens, value) of "expr = value", "value" (a leaf) or a truncated "expr"."""
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == "=":
            parts.append([])
        else:
            parts[-1].append(token)
    last = parts[-1]
    value = _number(last[0]) if len(last) == 1 else None
    if len(parts) == 1:
        return ([] if value is not None else last), value
    return parts[0], value


def _operands(expression: list[str]) -> list[str]:
    return [t for t in expression if t not in OPERATORS and _number(t) is None]


def _natural_steps(tokens: list[str]) -> list[PredictedStep]:
    """Steps "Define <name> as V ; so V = <expr> = <value> .", parents resolved through earlier variables."""
    starts = [i for i, token in enumerate(tokens) if token == STEP_MARKER]
    steps = []
    variables: dict[str, str] = {}
    for start, end in zip(starts, [*starts[1:], len(tokens)]):
        segment = tokens[start + 1 : end]
        semicolon = _index(segment, ";", 0)
        if semicolon is None or semicolon < 3 or segment[semicolon - 2] != "as":
            continue
        name, var = " ".join(segment[: semicolon - 2]), segment[semicolon - 1]
        body = segment[semicolon + 1 :]
        equals = _index(body, "=", 0)
        rhs = body[equals + 1 :] if equals is not None else []
        while rhs and rhs[-1] == ".":
            rhs.pop()
        expression, value = _right_hand_side(rhs)
        parents = frozenset(variables.get(v, v) for v in _operands(expression))
        steps.append(PredictedStep(name, parents, value))
        variables[var] = name  # after reading the expression: a step cannot depend on itself
    return steps


def _compact_steps(tokens: list[str]) -> list[PredictedStep]:
    """Steps "<name> = <expr> = <value> ;" (a leaf: "<name> = <value> ;"). The values compact-inline writes
    after operand names are numbers, so `_operands` leaves them out like constants."""
    steps = []
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token != ";":
            segment.append(token)
            continue
        if len(segment) >= 3 and segment[1] == "=":
            expression, value = _right_hand_side(segment[2:])
            steps.append(PredictedStep(segment[0], frozenset(_operands(expression)), value))
        segment = []
    return steps
