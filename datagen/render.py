"""Text renderings of a Problem: `natural` (GSM-Infinite-like prose), `compact` (one word per quantity) and
`compact-inline` (compact, with each operand's value written after its name in the solution).

A rendering is a pure function of (problem, context, style, rng state). The rng first draws the slot -> name
mapping, always consuming the same amount of randomness whatever the context, and then the statement order;
so one Problem with one seed in two contexts differs only in its surface words. Punctuation stands apart as
its own token, which makes every whitespace-separated token either a decimal number or a member of
`vocabulary(ctx, style)`: that is how a closed tokenizer covers the corpus. verify.py is this module's inverse.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Protocol

from datagen.graph import DIFFERENCE_KINDS, Node, Problem

# compact-inline writes each operand's value right after its name ("C = A 1 - B 2 = 22 ;"), which turns a
# step value from two look-ups plus arithmetic into single look-ups and local arithmetic: the rendering a
# ~1M-parameter model learns in minutes on a CPU (results/micro_recipe.md).
STYLES = ("natural", "compact", "compact-inline")
FORMAT_TOKENS = ("<question>", "</question>", "<solution>", "</solution>", "<answer>", "</answer>")
OPERATORS = ("+", "-", "*")
GROUPING = ("(", ")")
# The natural solution skeleton: "Define <label> as A ; so A = <expr> = <value> ." The parser splits steps at
# STEP_MARKER, so no name or template may contain that word.
STEP_MARKER = "Define"
STEP_WORDS = (STEP_MARKER, "as", ";", "so", "=", ".")
COMPACT_SYMBOLS = ("=", ";", "?")
# Solution variables in step order: A..Z, then AA..ZZ (enough for any op a context's slots can hold).
VARIABLES = tuple(string.ascii_uppercase) + tuple(a + b for a in string.ascii_uppercase for b in string.ascii_uppercase)

# Natural-language templates, GSM-Infinite's statement forms; a context may override any of them (same
# placeholders) under `phrasing`. `label` names an instance quantity in the solution steps; statements and
# the question use the context's `instance` / `aggregate` phrases as {target}, {a}, {b}; {terms} is a list of
# three or more ("the A , the B , and the C"), {const} a number.
DEFAULT_PHRASING = {
    "label": "{item} in {group}",
    "const": "The {target} equals {const} .",
    "copy": "The {target} equals the {a} .",
    "c_add_X": "The {target} equals {const} plus the {a} .",
    "c_mul_X": "The {target} equals {const} times the {a} .",
    "c_sub_X": "The {target} equals {const} less than the {a} .",
    "sum2": "The {target} equals the sum of the {a} and the {b} .",
    "diff2": "The {target} equals the difference between the {a} and the {b} .",
    "sumk": "The {target} equals the sum of {terms} .",
    "c_add_sum2": "The {target} equals {const} plus the sum of the {a} and the {b} .",
    "c_mul_sum2": "The {target} equals {const} times the sum of the {a} and the {b} .",
    "c_sub_sum2": "The {target} equals {const} less than the sum of the {a} and the {b} .",
    "c_add_diff2": "The {target} equals {const} plus the difference between the {a} and the {b} .",
    "c_mul_diff2": "The {target} equals {const} times the difference between the {a} and the {b} .",
    "c_sub_diff2": "The {target} equals {const} less than the difference between the {a} and the {b} .",
    "c_add_sumk": "The {target} equals {const} plus the sum of {terms} .",
    "c_mul_sumk": "The {target} equals {const} times the sum of {terms} .",
    "c_sub_sumk": "The {target} equals {const} less than the sum of {terms} .",
    "question": "What is the {target} ?",
}
# How {terms} is spelled: "the A , the B , and the C" (fixed words, so the vocabulary stays closed).
TERM_WORDS = ("the", ",", "and")
_OP_WORD = {"+": "add", "-": "sub", "*": "mul"}


class Context(Protocol):
    """What rendering reads from a context (datagen.contexts.Context); a protocol, so this module needs no
    import of contexts.py, which itself checks phrasing overrides against DEFAULT_PHRASING here."""

    name: str
    groups: tuple[str, ...]
    items: tuple[str, ...]
    category: str
    instance: str
    aggregate: str
    phrasing: dict[str, str]
    compact_groups: tuple[str, ...]
    compact_items: tuple[str, ...]
    compact_category: str


@dataclass(frozen=True)
class Rendered:
    problem: str
    question: str
    solution: str
    answer: str
    text: str  # the full sequence
    prompt: str  # text up to and including "<solution>": what RL and evaluation feed the model
    names: dict[int, str]  # node index -> the quantity's name as the solution writes it (what verify() keys on)


def quantity_names(problem: Problem, ctx: Context, style: str, rng: random.Random) -> dict[int, str]:
    """Node index -> surface name, under the slot mapping `render` would draw from the same rng state."""
    _check_style(style)
    group_names, item_names = _draw_mapping(problem, ctx, rng)
    if _is_compact(style):
        return dict(enumerate(_compact_names(problem, ctx, group_names, item_names)))
    labels, _ = _natural_names(problem, ctx, group_names, item_names)
    return dict(enumerate(labels))


def render(problem: Problem, ctx: Context, style: str, rng: random.Random) -> Rendered:
    _check_style(style)
    group_names, item_names = _draw_mapping(problem, ctx, rng)
    if style == "natural":
        labels, phrases = _natural_names(problem, ctx, group_names, item_names)
        names = labels
        statements, question, steps = _natural(problem, ctx, labels, phrases)
    else:
        names = _compact_names(problem, ctx, group_names, item_names)
        statements, question, steps = _compact(problem, names, style)
    rng.shuffle(statements)
    body, solution, answer = " ".join(statements), " ".join(steps), str(problem.answer)
    prompt = f"<question> {body} {question} </question> <solution>"
    text = f"{prompt} {solution} </solution> <answer> {answer} </answer>"
    return Rendered(body, question, solution, answer, text, prompt, dict(enumerate(names)))


def vocabulary(ctx: Context, style: str) -> list[str]:
    """Every whitespace-separated token `render` can emit for this context, numbers aside."""
    _check_style(style)
    words = set(FORMAT_TOKENS) | set(OPERATORS) | set(GROUPING)
    if _is_compact(style):
        words |= set(COMPACT_SYMBOLS)
        stems = (*ctx.compact_items, ctx.compact_category)
        words |= {code + stem for code in ctx.compact_groups for stem in stems}
        return sorted(words)
    words |= set(STEP_WORDS) | set(VARIABLES) | set(TERM_WORDS)
    templates = [ctx.instance, ctx.aggregate, *DEFAULT_PHRASING.values(), *ctx.phrasing.values()]
    for text in (*ctx.groups, *ctx.items, ctx.category, *templates):
        words.update(w for w in text.split() if not w.startswith("{"))
    return sorted(words)


def _is_compact(style: str) -> bool:
    return style.startswith("compact")


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")


def _draw_mapping(problem: Problem, ctx: Context, rng: random.Random) -> tuple[list[int], list[int]]:
    """Abstract group/item index -> index into the context's lists, a fresh random injection per sample.

    The draw goes through a private generator seeded by one 64-bit word, so the caller's rng advances by
    the same amount in every context and the statement shuffle that follows is context-independent.
    """
    n_groups = 1 + max(n.group for n in problem.nodes)
    n_items = 1 + max(n.item for n in problem.nodes)
    if n_groups > len(ctx.groups) or n_items > len(ctx.items):
        raise ValueError(
            f"problem uses {n_groups} groups x {n_items} items but context {ctx.name!r} has only "
            f"{len(ctx.groups)} x {len(ctx.items)}; generate it with the context's sizes"
        )
    private = random.Random(rng.getrandbits(64))
    return private.sample(range(len(ctx.groups)), n_groups), private.sample(range(len(ctx.items)), n_items)


def _natural_names(problem: Problem, ctx: Context, group_names: list[int], item_names: list[int]
                   ) -> tuple[list[str], list[str]]:
    """(labels for solution steps, phrases for statements and the question), by node index."""
    label_template = ctx.phrasing.get("label", DEFAULT_PHRASING["label"])
    labels, phrases = [], []
    for node in problem.nodes:
        group = ctx.groups[group_names[node.group]]
        if node.item < 0:
            phrase = ctx.aggregate.format(category=ctx.category, group=group)
            labels.append(phrase)
        else:
            item = ctx.items[item_names[node.item]]
            phrase = ctx.instance.format(item=item, group=group)
            labels.append(label_template.format(item=item, group=group))
        phrases.append(phrase)
    return labels, phrases


def _compact_names(problem: Problem, ctx: Context, group_names: list[int], item_names: list[int]) -> list[str]:
    return [
        ctx.compact_groups[group_names[n.group]]
        + (ctx.compact_category if n.item < 0 else ctx.compact_items[item_names[n.item]])
        for n in problem.nodes
    ]


def _variables(problem: Problem) -> dict[int, str]:
    necessary = problem.necessary_nodes()
    if len(necessary) > len(VARIABLES):
        raise ValueError(f"{len(necessary)} necessary quantities exceed the {len(VARIABLES)} solution variables")
    return {node.index: var for node, var in zip(necessary, VARIABLES)}


def step_expression(node: Node, refs) -> str:
    """The right-hand side of a solution step (and of a compact statement), naming parents through `refs`.

    `refs[i]` is how node i is written: a name, a variable, or (compact-inline) a name followed by its
    value. The result is an infix expression of those references, integer constants, `+ - *` and `( )`, every
    token separated by one space: `A`, `3 + A`, `A - 3`, `A + B + C`, `A - B`, `3 * ( A + B )`,
    `( A - B ) - 3`. verify.py parses gold and predicted steps with this one definition.
    """
    if node.kind == "const":
        return str(node.const)
    terms = [refs[p] for p in node.parents]
    inner = " - ".join(terms) if node.kind in DIFFERENCE_KINDS else " + ".join(terms)
    if node.op is None:
        return inner
    if len(terms) > 1:
        inner = f"( {inner} )"
    if node.op == "-":
        return f"{inner} - {node.const}"
    return f"{node.const} {node.op} {inner}"


def _statement(node: Node, phrases: list[str], phrasing: dict[str, str]) -> str:
    """The natural-language statement of a stated quantity (totals are never stated)."""
    parents = [phrases[p] for p in node.parents]
    shape = "sumk" if node.kind in ("sumk", "c_op_sumk") else node.kind.removeprefix("c_op_")
    key = shape if node.op is None else f"c_{_OP_WORD[node.op]}_{shape}"
    fields = {"target": phrases[node.index], "const": node.const}
    if shape == "sumk":
        fields["terms"] = " , ".join(f"the {p}" for p in parents[:-1]) + f" , and the {parents[-1]}"
    else:
        fields.update(zip("ab", parents))
    return phrasing[key].format(**fields)




def _natural(problem: Problem, ctx: Context, labels: list[str], phrases: list[str]
             ) -> tuple[list[str], str, list[str]]:
    phrasing = {**DEFAULT_PHRASING, **ctx.phrasing}
    # Totals are never stated: "total ... in a group" is implied by the group's listed quantities.
    statements = [_statement(node, phrases, phrasing) for node in problem.nodes if node.kind != "aggregate"]
    question = phrasing["question"].format(target=phrases[problem.query])
    variables = _variables(problem)
    steps = []
    for node in problem.necessary_nodes():
        var = variables[node.index]
        if node.kind == "const":
            steps.append(f"{STEP_MARKER} {labels[node.index]} as {var} ; so {var} = {node.value} .")
        else:
            expression = step_expression(node, variables)
            steps.append(f"{STEP_MARKER} {labels[node.index]} as {var} ; so {var} = {expression} = {node.value} .")
    return statements, question, steps


def _compact(problem: Problem, names: list[str], style: str) -> tuple[list[str], str, list[str]]:
    statements = [f"{names[n.index]} = {step_expression(n, names)} ;" for n in problem.nodes]
    # How a step's expression refers to its operands: by name, or (inline) by name followed by value.
    operands = names if style == "compact" else [f"{name} {n.value}" for name, n in zip(names, problem.nodes)]
    steps = [
        f"{names[n.index]} = {n.value} ;" if n.kind == "const"
        else f"{names[n.index]} = {step_expression(n, operands)} = {n.value} ;"
        for n in problem.necessary_nodes()
    ]
    return statements, f"? {names[problem.query]}", steps
