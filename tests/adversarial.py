"""Adversarial completions built from real gold solutions, each with what the verifier must conclude.

Shared by tests/test_verify.py (property tests) and benchmarks/bench_verify.py (the fuzz campaign), so both
attack the verifier the same way. A mutation returns a completion (the text after the prompt) or None when it
does not apply to the problem. Each mutation is in one of three groups: WRONG (the completion holds a wrong
step, a missing step or wrong work, so no reward may be paid in full), RIGHT (every step is correct and the
answer stated: every reward must be paid in full) and NOISE (truncations and garbage: anything but a crash).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from datagen.contexts import Context
from datagen.graph import Problem
from datagen.render import STEP_MARKER, VARIABLES, Rendered, step_expression

_OPERATORS = ("+", "-", "*")


@dataclass(frozen=True)
class Case:
    problem: Problem
    rendered: Rendered
    ctx: Context
    style: str

    @property
    def steps(self) -> list[str]:
        """The gold solution's steps, one string per necessary node in order."""
        solution = self.rendered.solution
        if self.style == "natural":
            return [f"{STEP_MARKER} {part.strip()}" for part in solution.split(STEP_MARKER) if part.strip()]
        return [f"{part.strip()} ;" for part in solution.split(";") if part.strip()]

    @property
    def necessary(self):
        return self.problem.necessary_nodes()


def completion(steps: list[str], answer) -> str:
    return f" {' '.join(steps)} </solution> <answer> {answer} </answer>"


def _expression_span(tokens: list[str], style: str) -> tuple[int, int] | None:
    """[first, last) token positions of a step's expression, None for a leaf ("name = value")."""
    first = tokens.index("=") + 1
    last = len(tokens) - 1 - tokens[::-1].index("=")
    return (first, last) if last > first else None


def _step_tokens(case: Case, rng: random.Random, want_expression: bool = True):
    steps = case.steps
    candidates = [k for k, s in enumerate(steps) if not want_expression or _expression_span(s.split(), case.style)]
    if not candidates:
        return None
    k = rng.choice(candidates)
    return steps, k, steps[k].split()


def _is_inline_value(tokens: list[str], i: int, style: str) -> bool:
    return style == "compact-inline" and tokens[i - 1] not in (*_OPERATORS, "(", "=") and tokens[i].isdigit()


# -- WRONG ---------------------------------------------------------------------------------------------------

def change_operator(case: Case, rng: random.Random) -> str | None:
    picked = _step_tokens(case, rng)
    if picked is None:
        return None
    steps, k, tokens = picked
    first, last = _expression_span(tokens, case.style)
    spots = [i for i in range(first, last) if tokens[i] in _OPERATORS]
    if not spots:
        return None
    i = rng.choice(spots)
    tokens[i] = rng.choice([o for o in _OPERATORS if o != tokens[i]])
    steps[k] = " ".join(tokens)
    return completion(steps, case.problem.answer)


def change_constant(case: Case, rng: random.Random) -> str | None:
    picked = _step_tokens(case, rng)
    if picked is None:
        return None
    steps, k, tokens = picked
    first, last = _expression_span(tokens, case.style)
    spots = [i for i in range(first, last) if tokens[i].isdigit() and not _is_inline_value(tokens, i, case.style)]
    if not spots:
        return None
    i = rng.choice(spots)
    tokens[i] = str(int(tokens[i]) + rng.randint(1, 5))
    steps[k] = " ".join(tokens)
    return completion(steps, case.problem.answer)


def change_inline_value(case: Case, rng: random.Random) -> str | None:
    if case.style != "compact-inline":
        return None
    steps, k, tokens = _step_tokens(case, rng) or (None, None, None)
    if steps is None:
        return None
    first, last = _expression_span(tokens, case.style)
    spots = [i for i in range(first, last) if _is_inline_value(tokens, i, case.style)]
    i = rng.choice(spots)
    tokens[i] = str(int(tokens[i]) + rng.randint(1, 5))
    steps[k] = " ".join(tokens)
    return completion(steps, case.problem.answer)


def change_value(case: Case, rng: random.Random) -> str | None:
    steps, k, tokens = _step_tokens(case, rng, want_expression=False)
    tokens[-2] = str(int(tokens[-2]) + rng.randint(1, 5))
    steps[k] = " ".join(tokens)
    return completion(steps, case.problem.answer)


def huge_value(case: Case, rng: random.Random) -> str | None:
    steps, k, tokens = _step_tokens(case, rng, want_expression=False)
    tokens[-2] = "9" * rng.choice([30, 64, 65, 500])
    steps[k] = " ".join(tokens)
    return completion(steps, case.problem.answer)


def change_parent(case: Case, rng: random.Random) -> str | None:
    """A step names an earlier quantity that is not its parent in place of one of its parents."""
    steps, necessary = case.steps, case.necessary
    options = [(k, j) for k, node in enumerate(necessary) if node.parents
               for j in range(k) if necessary[j].index not in node.parents]
    if not options:
        return None
    k, j = rng.choice(options)
    node = necessary[k]
    position = {n.index: i for i, n in enumerate(necessary)}
    old = _reference(case, position[rng.choice(node.parents)])
    tokens = steps[k].split()
    first, last = _expression_span(tokens, case.style)
    tokens[first:last] = [_reference(case, j) if t == old else t for t in tokens[first:last]]
    steps[k] = " ".join(tokens)
    return completion(steps, case.problem.answer)


def _reference(case: Case, k: int) -> str:
    """How a step refers to the k-th necessary quantity: its variable (natural) or its name."""
    return VARIABLES[k] if case.style == "natural" else case.rendered.names[case.necessary[k].index]


def wrong_repeat(case: Case, rng: random.Random) -> str | None:
    """A step stated again later with another operator or final value (the first statement stays correct)."""
    steps = case.steps
    k = rng.randrange(len(steps))
    tokens = steps[k].split()
    span = _expression_span(tokens, case.style)
    operators = [i for i in range(*span) if tokens[i] in _OPERATORS] if span else []
    if operators and rng.random() < 0.5:
        i = rng.choice(operators)
        tokens[i] = rng.choice([o for o in _OPERATORS if o != tokens[i]])
    else:
        tokens[-2] = str(int(tokens[-2]) + rng.randint(1, 5))
    at = rng.randint(k + 1, len(steps))
    return completion([*steps[:at], " ".join(tokens), *steps[at:]], case.problem.answer)


def hallucinated_step(case: Case, rng: random.Random) -> str | None:
    """A correct-looking step about a quantity the problem does not have."""
    names = set(case.rendered.names.values())
    ctx = case.ctx
    for _ in range(50):
        group, item = rng.randrange(len(ctx.groups)), rng.randrange(len(ctx.items))
        if case.style == "natural":
            name = f"{ctx.items[item]} in {ctx.groups[group]}"
            step = f"{STEP_MARKER} {name} as ZZ ; so ZZ = {rng.randint(1, 9)} ."
        else:
            name = ctx.compact_groups[group] + ctx.compact_items[item]
            step = f"{name} = {rng.randint(1, 9)} ;"
        if name not in names:
            steps = case.steps
            at = rng.randint(0, len(steps))
            return completion([*steps[:at], step, *steps[at:]], case.problem.answer)
    return None


def wrong_distractor_step(case: Case, rng: random.Random) -> str | None:
    """A leaf-form step about an unnecessary quantity with a value it does not have."""
    distractors = [n for n in case.problem.nodes if not n.necessary]
    if not distractors:
        return None
    node = rng.choice(distractors)
    wrong = node.value + rng.randint(1, 5)
    name = case.rendered.names[node.index]
    step = (f"{STEP_MARKER} {name} as ZZ ; so ZZ = {wrong} ." if case.style == "natural" else f"{name} = {wrong} ;")
    steps = case.steps
    at = rng.randint(0, len(steps))
    return completion([*steps[:at], step, *steps[at:]], case.problem.answer)


def drop_step(case: Case, rng: random.Random) -> str | None:
    steps = case.steps
    k = rng.randrange(len(steps))
    return completion(steps[:k] + steps[k + 1:], case.problem.answer)


def before_a_parent(case: Case, rng: random.Random) -> str | None:
    """A step moved before one of its parents' steps: it uses a quantity not yet stated."""
    steps, necessary = case.steps, case.necessary
    position = {n.index: i for i, n in enumerate(necessary)}
    options = [(k, min(position[p] for p in n.parents)) for k, n in enumerate(necessary) if n.parents]
    if not options:
        return None
    k, j = rng.choice(options)
    moved = [*steps[:j], steps[k], *steps[j:k], *steps[k + 1:]]
    return completion(moved, case.problem.answer)


def work_before_solution_tag(case: Case, rng: random.Random) -> str | None:
    """Wrong work, then a fresh "<solution>" and the gold solution: the tag must not reset grading."""
    wrong = change_value(case, rng).split("</solution>")[0]
    return f"{wrong} <solution> {completion(case.steps, case.problem.answer)}"


def work_after_solution_tag(case: Case, rng: random.Random) -> str | None:
    """The gold solution, then a wrong step between "</solution>" and "<answer>"."""
    steps, k, tokens = _step_tokens(case, rng, want_expression=False)
    tokens[-2] = str(int(tokens[-2]) + rng.randint(1, 5))
    return completion(case.steps, case.problem.answer).replace("</solution>", f"</solution> {' '.join(tokens)}")


def junk_between_steps(case: Case, rng: random.Random) -> str | None:
    steps = case.steps
    at = rng.randint(0, len(steps))
    junk = rng.choice(["lorem ipsum", "<question>", "= = =", "( ( )", "7", "so", "Define", "ZZ ;"])
    return completion([*steps[:at], junk, *steps[at:]], case.problem.answer)


def unterminated_last_step(case: Case, rng: random.Random) -> str | None:
    steps = case.steps
    steps[-1] = steps[-1].rsplit(" ", 1)[0]
    return completion(steps, case.problem.answer)


# -- RIGHT ---------------------------------------------------------------------------------------------------

def gold(case: Case, rng: random.Random) -> str | None:
    return completion(case.steps, case.problem.answer)


def topological_reorder(case: Case, rng: random.Random) -> str | None:
    """The gold steps in a random topological order of the necessary graph."""
    steps, necessary = case.steps, case.necessary
    position = {n.index: i for i, n in enumerate(necessary)}
    waiting = [len(n.parents) for n in necessary]
    children: list[list[int]] = [[] for _ in necessary]
    for k, node in enumerate(necessary):
        for p in node.parents:
            children[position[p]].append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    order = []
    while ready:
        k = ready.pop(rng.randrange(len(ready)))
        order.append(k)
        for child in children[k]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return completion([steps[k] for k in order], case.problem.answer)


def commuted_operands(case: Case, rng: random.Random) -> str | None:
    """Every two-operand + or * step with its operands swapped (same operation, so still correct)."""
    steps = case.steps
    for k, text in enumerate(steps):
        tokens = text.split()
        span = _expression_span(tokens, case.style)
        if span is None:
            continue
        first, last = span
        expression = tokens[first:last]
        operators = [i for i, t in enumerate(expression) if t in _OPERATORS]
        if len(operators) == 1 and expression[operators[0]] in "+*" and rng.random() < 0.7:
            i = operators[0]
            tokens[first:last] = [*expression[i + 1:], expression[i], *expression[:i]]
            steps[k] = " ".join(tokens)
    return completion(steps, case.problem.answer)


def correct_distractor_steps(case: Case, rng: random.Random) -> str | None:
    """Gold steps plus correct steps about every unnecessary quantity, all in construction order."""
    problem, names = case.problem, case.rendered.names
    if all(n.necessary for n in problem.nodes):
        return None
    if case.style == "natural":
        variables = {n.index: VARIABLES[i] for i, n in enumerate(problem.nodes)}
        steps = []
        for n in problem.nodes:
            var = variables[n.index]
            rhs = str(n.value) if not n.parents else f"{step_expression(n, variables)} = {n.value}"
            steps.append(f"{STEP_MARKER} {names[n.index]} as {var} ; so {var} = {rhs} .")
    else:
        operands = {i: name if case.style == "compact" else f"{name} {problem.nodes[i].value}"
                    for i, name in names.items()}
        steps = [f"{names[n.index]} = {n.value} ;" if not n.parents
                 else f"{names[n.index]} = {step_expression(n, operands)} = {n.value} ;" for n in problem.nodes]
    return completion(steps, problem.answer)


def text_around_tags(case: Case, rng: random.Random) -> str | None:
    junk = rng.choice(["lorem ipsum", "<question> x </question>", "= ; .", "12 34"])
    return f"{completion(case.steps, case.problem.answer)} {junk}"


# -- NOISE ---------------------------------------------------------------------------------------------------

def truncated(case: Case, rng: random.Random) -> str | None:
    text = gold(case, rng)
    return text[:rng.randrange(len(text))]


def random_unicode(case: Case, rng: random.Random) -> str | None:
    return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000), rng.randrange(0x10000,
                                                                                                      0x10FFFF)]))
                   for _ in range(rng.randrange(1, 400)))


def decoded_bytes(case: Case, rng: random.Random) -> str | None:
    return rng.randbytes(rng.randrange(1, 400)).decode("utf-8", "replace")


def shuffled_tokens(case: Case, rng: random.Random) -> str | None:
    tokens = gold(case, rng).split()
    rng.shuffle(tokens)
    return " ".join(tokens)


WRONG = {f.__name__: f for f in (change_operator, change_constant, change_inline_value, change_value, huge_value,
                                 change_parent, wrong_repeat, hallucinated_step, wrong_distractor_step, drop_step,
                                 before_a_parent, work_before_solution_tag, work_after_solution_tag,
                                 junk_between_steps,
                                 unterminated_last_step)}
RIGHT = {f.__name__: f for f in (gold, topological_reorder, commuted_operands, correct_distractor_steps,
                                 text_around_tags)}
NOISE = {f.__name__: f for f in (truncated, random_unicode, decoded_bytes, shuffled_tokens)}
