"""Contexts are data: one YAML file gives graphs a surface (names, templates, compact codes).

Adding a context means adding a file, in datagen/contexts/ or in a directory listed on LAB_CONTEXT_PATH, so
experiments on contextual transfer never touch code. Files are checked strictly on load and every error names
the file and the field, because a bad name list would otherwise surface much later as an unparseable corpus
or a tokenizer gap. Which phrases a context may override, and which words they produce, is render.py's
business; this module only checks overrides against it.
"""

from __future__ import annotations

import functools
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.config import ConfigError
from datagen import render

BUILTIN_DIR = Path(__file__).resolve().parent / "contexts"
PATH_VARIABLE = "LAB_CONTEXT_PATH"
MIN_GROUPS = 10
MIN_ITEMS = 20
_KEYS = ("name", "category", "instance", "aggregate", "phrasing", "groups", "items", "compact")
_OPTIONAL_KEYS = ("phrasing",)
_COMPACT_KEYS = ("groups", "items", "category")
# A natural-language word: letters, with apostrophes or hyphens allowed inside ("o'clock", "award-winning").
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_CODE = re.compile(r"[A-Za-z]+")
_PLACEHOLDER = re.compile(r"\{[a-z]+\}")
# Punctuation a template may use; ';' and '=' are left out because the solution parser splits on them.
_TEMPLATE_PUNCTUATION = (".", ",", "?")


class ContextError(ConfigError):
    """A context file is missing, malformed or inconsistent; the message names the file and field."""


@dataclass(frozen=True)
class Context:
    name: str
    groups: tuple[str, ...]  # location-like names: "South Zoo"
    items: tuple[str, ...]  # "adult wolf"
    category: str  # what an aggregate counts: "animals"
    instance: str  # "number of {item} in {group}"
    aggregate: str  # "total number of {category} in {group}"
    phrasing: dict[str, str]  # overrides of render.DEFAULT_PHRASING
    compact_groups: tuple[str, ...]  # one letter-only code per group
    compact_items: tuple[str, ...]  # one letter-only stem per item
    compact_category: str  # the aggregate's stem


def context_dirs() -> list[Path]:
    """Where contexts are looked up, in order: the shipped ones first, so they cannot be shadowed."""
    extra = os.environ.get(PATH_VARIABLE, "")
    return [BUILTIN_DIR, *(Path(d) for d in extra.split(os.pathsep) if d)]


def available_contexts() -> list[str]:
    return sorted({path.stem for directory in context_dirs() if directory.is_dir()
                   for path in directory.glob("*.yaml")})


def load_context(name_or_path: str | os.PathLike) -> Context:
    """A context by name (searched in context_dirs()) or by path to its YAML file."""
    path = _resolve(name_or_path)
    stat = path.stat()
    # Keyed on mtime and size so an edited file is re-read, while corpus builders may call this per sample.
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


def context_vocabulary(ctx: Context, style: str) -> list[str]:
    """Every token the renderer can emit for `ctx` in `style` (decimal numbers aside)."""
    return render.vocabulary(ctx, style)


def _resolve(name_or_path: str | os.PathLike) -> Path:
    text = os.fspath(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text or (os.altsep and os.altsep in text):
        path = Path(text)
        if not path.is_file():
            raise ContextError(f"{path}: no such context file")
        return path.resolve()
    for directory in context_dirs():
        path = directory / f"{text}.yaml"
        if path.is_file():
            return path.resolve()
    raise ContextError(f"unknown context {text!r} (known: {', '.join(available_contexts())}; "
                       f"add a file to {BUILTIN_DIR} or a directory on {PATH_VARIABLE})")


@functools.lru_cache(maxsize=64)
def _load(path_text: str, _mtime_ns: int, _size: int) -> Context:
    path = Path(path_text)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ContextError(f"{path}: not valid YAML: {err}") from None
    return _parse(path, data)


def _parse(path: Path, data: object) -> Context:
    def fail(field: str, reason: str) -> ContextError:
        return ContextError(f"{path}: {field}: {reason}")

    if not isinstance(data, dict):
        raise fail("<file>", f"expected a mapping of {', '.join(_KEYS)}")
    for key in data:
        if key not in _KEYS:
            raise fail(str(key), f"unknown key (known: {', '.join(_KEYS)})")
    for key in _KEYS:
        if key not in data and key not in _OPTIONAL_KEYS:
            raise fail(key, "missing required key")

    name = data["name"]
    if name != path.stem:
        raise fail("name", f"{name!r} must match the file name {path.stem!r} (contexts are looked up by file name)")
    category = _natural_name(data["category"], "category", fail)
    groups = _name_list(data["groups"], "groups", MIN_GROUPS, fail)
    items = _name_list(data["items"], "items", MIN_ITEMS, fail)
    instance = _template(data["instance"], "instance", {"item", "group"}, fail)
    aggregate = _template(data["aggregate"], "aggregate", {"category", "group"}, fail)

    phrasing = data.get("phrasing") or {}
    if not isinstance(phrasing, dict):
        raise fail("phrasing", "expected a mapping of template overrides")
    for key, text in phrasing.items():
        if key not in render.DEFAULT_PHRASING:
            raise fail(f"phrasing.{key}", f"unknown template (known: {', '.join(render.DEFAULT_PHRASING)})")
        _template(text, f"phrasing.{key}", _placeholders(render.DEFAULT_PHRASING[key]), fail)

    compact = data["compact"]
    if not isinstance(compact, dict):
        raise fail("compact", f"expected a mapping of {', '.join(_COMPACT_KEYS)}")
    for key in _COMPACT_KEYS:
        if key not in compact:
            raise fail(f"compact.{key}", "missing required key")
    for key in compact:
        if key not in _COMPACT_KEYS:
            raise fail(f"compact.{key}", f"unknown key (known: {', '.join(_COMPACT_KEYS)})")
    codes = _code_list(compact["groups"], "compact.groups", len(groups), "groups", fail)
    stems = _code_list(compact["items"], "compact.items", len(items), "items", fail)
    category_stem = _code(compact["category"], "compact.category", fail)
    seen: dict[str, str] = {}
    for code, group in zip(codes, groups):
        for stem, what in [*zip(stems, items), (category_stem, category)]:
            word, quantity = code + stem, f"{what} in {group}"
            if word in seen:
                raise fail("compact", f"{word!r} names both {seen[word]!r} and {quantity!r}")
            seen[word] = quantity
    return Context(name, groups, items, category, instance, aggregate, dict(phrasing), codes, stems, category_stem)


def _natural_name(value: object, field: str, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(field, f"expected a non-empty string, got {value!r}")
    if any(ch.isdigit() for ch in value):
        raise fail(field, f"{value!r} contains a digit (numbers in names would be read as values)")
    words = value.split(" ")
    if not all(_WORD.fullmatch(w) for w in words):
        raise fail(field, f"{value!r} must be letter words separated by single spaces")
    if render.STEP_MARKER in words:
        raise fail(field, f"{value!r} uses {render.STEP_MARKER!r}, which marks solution steps")
    return value


def _name_list(value: object, field: str, minimum: int, fail) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise fail(field, f"expected a list of names, got {value!r}")
    if len(value) < minimum:
        raise fail(field, f"need at least {minimum} names, got {len(value)}")
    names = tuple(_natural_name(v, f"{field}[{i}]", fail) for i, v in enumerate(value))
    _no_duplicates(names, field, fail)
    return names


def _code(value: object, field: str, fail) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise fail(field, f"{value!r} must be ASCII letters only (a compact name is one word, no digits)")
    return value


def _code_list(value: object, field: str, length: int, of: str, fail) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise fail(field, f"expected a list of codes, got {value!r}")
    if len(value) != length:
        raise fail(field, f"need one code per entry of {of} ({length}), got {len(value)}")
    codes = tuple(_code(v, f"{field}[{i}]", fail) for i, v in enumerate(value))
    _no_duplicates(codes, field, fail)
    return codes


def _no_duplicates(values: tuple[str, ...], field: str, fail) -> None:
    seen = set()
    for i, v in enumerate(values):
        if v in seen:
            raise fail(f"{field}[{i}]", f"duplicate {v!r}")
        seen.add(v)


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _template(value: object, field: str, placeholders: set[str], fail) -> str:
    """A template must use exactly `placeholders`, each as a token of its own, so vocabulary stays closed."""
    if not isinstance(value, str) or not value.strip():
        raise fail(field, f"expected a non-empty template string, got {value!r}")
    try:
        used = _placeholders(value)
    except ValueError as err:
        raise fail(field, f"malformed template {value!r}: {err}") from None
    if used != placeholders:
        want = ", ".join("{" + p + "}" for p in sorted(placeholders))
        raise fail(field, f"{value!r} must use exactly the placeholders {want}")
    for token in value.split(" "):
        if ("{" in token or "}" in token) and not _PLACEHOLDER.fullmatch(token):
            raise fail(field, f"{value!r}: a placeholder must stand alone between spaces, not in {token!r}")
        if "{" not in token and not (_WORD.fullmatch(token) or token in _TEMPLATE_PUNCTUATION):
            raise fail(field, f"{value!r}: {token!r} is neither a word, a placeholder nor standalone punctuation")
        if token == render.STEP_MARKER:
            raise fail(field, f"{value!r} uses {token!r}, which marks solution steps")
    return value
