"""Grade a generated solution step by step against the gold Problem.

This is render.py's inverse, and it runs inside RL reward loops and pass@k evaluation over raw model
samples, where a reward that pays for wrong reasoning is exactly what finding 4 measures. So a step is judged
by everything it writes, not by its name and final value: it is correct only if its quantity exists, every
operand it names was stated by an earlier step and the operands are the gold parents, its expression is the
gold expression up to the order of the operands of `+` and `*` (operators, constants and grouping as
stated), every number it writes (inline operand values, intermediate and final values) is the gold number
and its arithmetic is true. The gold expression is read with the same parser from `render.step_expression`,
the one function that writes every step's right-hand side, so new node kinds are graded without a change
here.

Expressions are parsed by shunting-yard into hash-consed trees: each sub-expression is interned to an integer
id, with the operands of an un-parenthesised chain of `+` (or of `*`) flattened and sorted, so comparing a
step with the gold one is one integer comparison and nothing recurses on adversarial nesting. The verifier
reads whitespace tokens in one pass and treats whatever it cannot read as a wrong step rather than raising;
the cost is linear in the text (a 1 MB string included).

ProcessAcc and VerifiedCorrect are the paper's (mean over gold necessary nodes of "present, parents match,
value matches"; verified = ProcessAcc 1 and the right answer), with these stricter checks:
- a gold node counts as correct only if *every* step about it is correct, so a later repeat with another
  operation or value makes it wrong (a repeat of the correct step is harmless);
- a step's operation, inline operand values, intermediate values and arithmetic are checked as well;
- a step that is not about a necessary node and is wrong (its quantity does not exist, or it is a wrong step
  about an unnecessary quantity, or the text is not a step at all) adds one to ProcessAcc's denominator, so it
  can never be paid in full; correct steps about unnecessary quantities cost nothing and are counted (`extra`);
- a step must end with its terminator (";" compact, "." natural); an unfinished one, truncated text included,
  is a wrong step;
- everything before `<answer>` must be steps (`</solution>` may close them); the answer is only what
  `<answer> N </answer>` states (no fallback to the last step's value); text after `</answer>` is not graded
  (sampling stops there);
- the completion is graded from its first token: a `<solution>` tag inside it does not restart parsing, so
  wrong work before one still counts. A whole corpus sequence is graded with `verify(completion_of(text), ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from datagen import render
from datagen.graph import Problem
from datagen.render import FORMAT_TOKENS, STEP_MARKER, STYLES

# Error classes, from most to least specific about what went right. The first failing check names the class:
# missing node, then a wrong dependency or operation, then a wrong number, then a step outside the gold graph
# ("extra_nodes": a quantity that does not exist, or text that is no step).
ERRORS = ("verified", "answer_right_process_wrong", "unparseable", "missing_node", "dependency_mismatch",
          "value_error", "extra_nodes", "answer_mismatch")
# Longer digit strings are not read as numbers: int() refuses huge literals, and no gold number is that long.
_MAX_DIGITS = 64
# Intermediate results beyond this are not evaluated (a product of many 64-digit numbers would take seconds);
# such a step cannot be gold, whose values are far smaller.
_MAX_MAGNITUDE = 10**200
_PRECEDENCE = {"+": 1, "-": 1, "*": 2}
# Tokens that can never name an operand.
_NOT_REFERENCES = frozenset({*_PRECEDENCE, "(", ")", "=", ";", ".", *FORMAT_TOKENS})
_STATUSES = ("correct", "dependency", "operation", "value", "hallucinated", "malformed")


@dataclass(frozen=True)
class Step:
    """One graded step of a completion.

    `status` is "correct"; "dependency" (an operand that is not a gold parent, was not stated earlier or cannot
    be read; an unreadable or unfinished step about a known quantity counts here); "operation" (the gold
    parents with another operator, constant or grouping); "value" (a wrong inline, intermediate or final
    number, or false arithmetic); "hallucinated" (its quantity does not exist); or "malformed" (no quantity
    can be read: text that is not a step).
    """

    quantity: int | None  # gold node index, None when the step names no known quantity
    status: str  # one of _STATUSES
    parents: frozenset[int]  # the known quantities its expression names
    value: int | None  # the final number it writes
    arithmetic_true: bool | None  # its chain evaluates to its final number; None when it cannot be evaluated


@dataclass(frozen=True)
class Verdict:
    process_acc: float  # correct gold necessary nodes / (necessary nodes + wrong steps outside them)
    answer_correct: bool  # <answer> N </answer> states the gold answer
    verified: bool  # process_acc == 1 and answer_correct
    missing: int  # gold necessary nodes no step is about
    extra: int  # unnecessary (distractor) quantities stated only by correct steps
    dependency_errors: int  # steps with status "dependency"
    value_errors: int  # steps with status "value"
    error: str  # one of ERRORS
    operation_errors: int = 0  # steps with status "operation"
    hallucinated: int = 0  # steps about quantities that do not exist
    malformed: int = 0  # stretches of the solution that are not steps
    arithmetic_errors: int = 0  # steps whose written arithmetic is false (a diagnostic; such steps are wrong)


def completion_of(sequence: str) -> str:
    """What follows the prompt of a whole corpus sequence ("<question> ... <solution>"): the part to grade."""
    _check_text(sequence)
    marker = sequence.find("<solution>")
    return sequence if marker < 0 else sequence[marker + len("<solution>"):]


def verify(completion: str, gold: Problem, names: dict[int, str], style: str) -> Verdict:
    """Grade `completion` (the text after the prompt's "<solution>") against `gold`, whose quantities are
    called `names` (node index -> name) in `style`. Never raises on a string; raises TypeError otherwise,
    bytes included (decode with the tokenizer first: a silent decoding here would hide an encoding bug)."""
    steps, answer = grade_steps(completion, gold, names, style)
    necessary = {node.index for node in gold.nodes if node.necessary}
    about: dict[int, list[Step]] = {}
    counts = dict.fromkeys(_STATUSES, 0)
    invalid = arithmetic_errors = 0
    for step in steps:
        counts[step.status] += 1
        arithmetic_errors += step.arithmetic_true is False
        if step.quantity is not None:
            about.setdefault(step.quantity, []).append(step)
        if step.quantity not in necessary and step.status != "correct":
            invalid += 1
    correct = sum(all(s.status == "correct" for s in about[i]) for i in necessary if i in about)
    missing = sum(i not in about for i in necessary)
    extra = sum(i not in necessary and all(s.status == "correct" for s in group) for i, group in about.items())

    process_acc = correct / (len(necessary) + invalid)
    answer_correct = answer is not None and answer == gold.answer
    verified = process_acc == 1.0 and answer_correct
    if verified:
        error = "verified"
    elif answer_correct:
        error = "answer_right_process_wrong"
    elif counts["malformed"] == len(steps) and answer is None:
        error = "unparseable"
    elif missing:
        error = "missing_node"
    elif counts["dependency"] or counts["operation"]:
        error = "dependency_mismatch"
    elif counts["value"]:
        error = "value_error"
    elif invalid:
        error = "extra_nodes"
    else:
        error = "answer_mismatch"
    return Verdict(process_acc, answer_correct, verified, missing, extra, counts["dependency"], counts["value"],
                   error, counts["operation"], counts["hallucinated"], counts["malformed"], arithmetic_errors)


def grade_steps(completion: str, gold: Problem, names: dict[int, str], style: str
                ) -> tuple[list[Step], int | None]:
    """Every step of the solution in `completion`, graded, and the <answer> value (None if not stated)."""
    _check_text(completion)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    tokens = completion.split()
    tag = _index(tokens, "<answer>", 0)
    end = _index(tokens, "</solution>", 0)
    grader = _Grader(gold, names, style)
    body = tokens[:min(end, tag)]
    steps = grader.natural(body) if style == "natural" else grader.compact(body)
    if end + 1 < tag:  # text between "</solution>" and "<answer>" is no step, so it is a wrong one
        steps.append(Step(None, "malformed", frozenset(), None, None))
    answer = None
    if tag + 2 < len(tokens) and tokens[tag + 2] == "</answer>":
        answer = _number(tokens[tag + 1])
    return steps, answer


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"the completion must be a str, got {type(text).__name__}"
                        + (" (decode bytes with the corpus tokenizer first)" if isinstance(text, (bytes, bytearray))
                           else ""))


def _index(tokens: list[str], token: str, start: int) -> int:
    """Position of `token` at or after `start`, or len(tokens)."""
    try:
        return tokens.index(token, start)
    except ValueError:
        return len(tokens)


def _number(token: str) -> int | None:
    if len(token) <= _MAX_DIGITS and token.isascii() and token.isdigit():
        return int(token)
    return None


@dataclass(slots=True)
class _Expression:
    tree: int  # interned id of the canonical tree
    refs: tuple[int | None, ...]  # every operand reference in order (None: it names no stated quantity)
    inline: tuple[tuple[int | None, int | None], ...]  # (reference, inline value or None) per reference
    value: int | None  # evaluated with inline values where written, else gold values; None if unknown


class _Grader:
    """Per-completion state: the interning table shared by gold and predicted trees, the gold trees computed
    so far, and which quantities earlier steps stated."""

    def __init__(self, gold: Problem, names: dict[int, str], style: str):
        self.gold = gold
        self.inline = style == "compact-inline"
        self.index = {" ".join(name.split()): i for i, name in names.items()}
        self.table: dict[tuple, int] = {}
        self.gold_steps: dict[int, tuple[int, frozenset[int]]] = {}
        self.stated: set[int] = set()

    # -- segmentation ----------------------------------------------------------------------------------------

    def compact(self, body: list[str]) -> list[Step]:
        """Steps "<name> = <expr> = <value> ;" (a leaf: "<name> = <value> ;"), references by name."""
        steps = []
        cache: dict[tuple[str, ...], Step] = {}
        start = 0
        for end in [*(i for i, token in enumerate(body) if token == ";"), None]:
            segment = body[start:end]
            start = end + 1 if end is not None else 0
            if not segment:
                continue
            named = len(segment) >= 2 and segment[1] == "=" and segment[0] not in _NOT_REFERENCES \
                and not segment[0].isdigit()
            quantity = self.index.get(segment[0]) if named else None
            if quantity is None:
                steps.append(Step(None, "hallucinated" if named else "malformed", frozenset(), None, None))
            elif end is None:  # unfinished: no terminator
                steps.append(self._unreadable(quantity))
            else:
                steps.append(self._cached(cache, tuple(segment), quantity, segment[2:], self.index.get))
        return steps

    def natural(self, body: list[str]) -> list[Step]:
        """Steps "Define <label> as V ; so V = <expr> = <value> .", operands by earlier variables."""
        starts = [i for i, token in enumerate(body) if token == STEP_MARKER]
        steps = []
        if (starts[0] if starts else len(body)) > 0:
            steps.append(Step(None, "malformed", frozenset(), None, None))  # text before the first step
        variables: dict[str, int | None] = {}
        cache: dict[tuple, Step] = {}
        for start, end in zip(starts, [*starts[1:], len(body)]):
            segment = body[start + 1:end]
            semicolon = _index(segment, ";", 0)
            if semicolon == len(segment) or semicolon < 2 or segment[semicolon - 2] != "as" \
                    or segment[semicolon - 1] in _NOT_REFERENCES:
                steps.append(Step(None, "malformed", frozenset(), None, None))
                continue
            label, var = " ".join(segment[:semicolon - 2]), segment[semicolon - 1]
            quantity = self.index.get(label)
            rest = segment[semicolon + 1:]
            stop = _index(rest, ".", 0)
            if quantity is None:
                steps.append(Step(None, "hallucinated", frozenset(), None, None))
            elif stop == len(rest) or rest[:3] != ["so", var, "="]:
                steps.append(self._unreadable(quantity))
            else:
                chain = rest[3:stop]
                key = (quantity, *chain, *(variables.get(token) for token in chain))
                steps.append(self._cached(cache, key, quantity, chain, variables.get))
            if stop + 1 < len(rest):  # text after the step's "."
                steps.append(Step(None, "malformed", frozenset(), None, None))
            variables[var] = quantity  # after the expression: a step cannot use its own variable
        return steps

    # -- grading ---------------------------------------------------------------------------------------------

    def _cached(self, cache: dict, key: tuple, quantity: int, chain: list[str],
                resolve: Callable[[str], int | None]) -> Step:
        """`_grade`, remembering steps whose grade cannot change later: all but "dependency" ones, whose
        operands might be stated by a later step. A model stuck in a loop repeats its steps many times."""
        step = cache.get(key)
        if step is None:
            step = self._grade(quantity, chain, resolve)
            if step.status != "dependency":
                cache[key] = step
        return step

    def _unreadable(self, quantity: int) -> Step:
        self.stated.add(quantity)
        return Step(quantity, "dependency", frozenset(), None, None)

    def _grade(self, quantity: int, chain: list[str], resolve: Callable[[str], int | None]) -> Step:
        """Grade "<e1> = ... = <value>" about `quantity`; with one part, that part is the value."""
        node = self.gold.nodes[quantity]
        parts: list[list[str]] = [[]]
        for token in chain:
            if token == "=":
                parts.append([])
            else:
                parts[-1].append(token)
        final = _number(parts[-1][0]) if len(parts[-1]) == 1 else None
        expressions = [self._parse(part, resolve, self.stated) for part in (parts[:-1] or parts)]
        self.stated.add(quantity)
        if any(e is None for e in expressions):
            return Step(quantity, "dependency", frozenset(), final, None)
        refs = [r for e in expressions for r in e.refs]
        parents = frozenset(r for r in refs if r is not None)
        values = [e.value for e in expressions]
        arithmetic = None if final is None or None in values else all(self._same(v, final) for v in values)
        gold_tree, gold_parents = self._gold(quantity)
        if None in refs or parents != gold_parents:
            status = "dependency"
        elif expressions[0].tree != gold_tree and not (not gold_parents and _number(parts[0][0]) is not None):
            status = "operation"  # (a leaf stated with another number has a wrong value, not operation)
        elif final != node.value or not arithmetic or not all(
                (value is not None) == self.inline and (value is None or value == self.gold.nodes[ref].value)
                for e in expressions for ref, value in e.inline):
            status = "value"
        else:
            status = "correct"
        return Step(quantity, status, parents, final, arithmetic)

    def _same(self, value: int, final: int) -> bool:
        modulus = self.gold.modulus
        return value == final if modulus is None else (value - final) % modulus == 0

    def _gold(self, quantity: int) -> tuple[int, frozenset[int]]:
        """(interned tree, parents) of the gold step, parsed from `render.step_expression`."""
        if quantity not in self.gold_steps:
            node = self.gold.nodes[quantity]
            if not node.parents:
                self.gold_steps[quantity] = (self._intern(("n", node.value)), frozenset())
            else:
                text = render.step_expression(node, {p: f"#{p}" for p in node.parents})
                parsed = self._parse(text.split(), lambda token: int(token[1:]) if token[1:].isdigit() else None)
                if parsed is None or None in parsed.refs:
                    raise ValueError(f"gold step of node {quantity} has an unreadable expression: {text!r}")
                self.gold_steps[quantity] = (parsed.tree, frozenset(parsed.refs))
        return self.gold_steps[quantity]

    def _intern(self, key: tuple) -> int:
        return self.table.setdefault(key, len(self.table))

    def _parse(self, tokens: list[str], resolve: Callable[[str], int | None], stated: set[int] | None = None
               ) -> _Expression | None:
        """Shunting-yard over operands (a number, or a reference optionally followed by its inline value),
        `+ - *` and parentheses; None if `tokens` is not one well-formed expression. A predicted step passes
        the quantities earlier steps `stated`: a reference to any other is unresolved ("parents are earlier
        quantities used"); the gold step passes None and has no inline values."""
        inline_values = stated is not None
        # Operand entries: [tree id or None, root operator of an open chain or None, chain operands, value].
        operands: list[list] = []
        operators: list[str] = []
        refs: list[int | None] = []
        inline: list[tuple[int | None, int | None]] = []
        expect_operand = True
        i, n = 0, len(tokens)
        while i < n:
            token = tokens[i]
            if expect_operand:
                number = int(token) if token.isdigit() and token.isascii() and len(token) <= _MAX_DIGITS else None
                if token == "(":
                    operators.append(token)
                elif number is not None:
                    operands.append([self._intern(("n", number)), None, None, number])
                    expect_operand = False
                elif token in _NOT_REFERENCES:
                    return None
                else:
                    ref = resolve(token)
                    if inline_values and ref not in stated:
                        ref = None
                    written = _number(tokens[i + 1]) if inline_values and i + 1 < n else None
                    i += written is not None
                    refs.append(ref)
                    inline.append((ref, written))
                    value = written if written is not None else (None if ref is None else self.gold.nodes[ref].value)
                    key = ("r", ref) if ref is not None else ("u", token)
                    operands.append([self._intern(key), None, None, value])
                    expect_operand = False
            elif token in _PRECEDENCE:
                while operators and operators[-1] != "(" and _PRECEDENCE[operators[-1]] >= _PRECEDENCE[token]:
                    self._reduce(operands, operators.pop())
                operators.append(token)
                expect_operand = True
            elif token == ")":
                while operators and operators[-1] != "(":
                    self._reduce(operands, operators.pop())
                if not operators:
                    return None
                operators.pop()
                group = operands[-1]  # a parenthesised chain is closed: no operand joins it any more
                group[0], group[1] = self._tree(group), None
            else:
                return None
            i += 1
        if expect_operand:
            return None
        while operators:
            if operators[-1] == "(":
                return None
            self._reduce(operands, operators.pop())
        (root,) = operands
        return _Expression(self._tree(root), tuple(refs), tuple(inline), root[3])

    def _tree(self, entry: list) -> int:
        if entry[0] is None:  # an open chain of + or *: operands are unordered
            entry[0] = self._intern((entry[1], tuple(sorted(entry[2]))))
        return entry[0]

    def _reduce(self, operands: list[list], operator: str) -> None:
        right = operands.pop()
        left = operands[-1]
        value = _arith(operator, left[3], right[3], self.gold.modulus)
        if operator == "-":
            operands[-1] = [self._intern(("-", self._tree(left), self._tree(right))), None, None, value]
            return
        if left[1] != operator:
            left = [None, operator, [self._tree(left)], None]
            operands[-1] = left
        left[2].extend(right[2] if right[1] == operator else [self._tree(right)])
        left[3] = value


def _arith(operator: str, a: int | None, b: int | None, modulus: int | None) -> int | None:
    if a is None or b is None:
        return None
    value = a + b if operator == "+" else a - b if operator == "-" else a * b
    if modulus is not None:
        return value % modulus
    return value if -_MAX_MAGNITUDE <= value <= _MAX_MAGNITUDE else None
