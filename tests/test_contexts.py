"""Contexts as data: the shipped files, strict validation naming file and field, and adding one by file."""

import random
import re

import pytest
import yaml

from core.config import ConfigError
from datagen.contexts import (
    BUILTIN_DIR,
    MIN_GROUPS,
    MIN_ITEMS,
    ContextError,
    available_contexts,
    context_vocabulary,
    load_context,
)
from datagen.graph import GraphConfig, generate
from datagen.render import STYLES, render
from datagen.verify import completion_of, verify

SHIPPED = ("zoo", "teachers", "movies")


def compact_words(ctx) -> set[str]:
    return {code + stem for code in ctx.compact_groups for stem in (*ctx.compact_items, ctx.compact_category)}


def test_shipped_contexts_are_available_and_complete():
    assert set(SHIPPED) <= set(available_contexts())
    for name in SHIPPED:
        ctx = load_context(name)
        assert ctx.name == name
        assert len(ctx.groups) >= MIN_GROUPS and len(ctx.items) >= MIN_ITEMS
        assert len(ctx.compact_groups) == len(ctx.groups) and len(ctx.compact_items) == len(ctx.items)
        for text in (*ctx.groups, *ctx.items, ctx.category):
            assert not re.search(r"\d", text)
        words = compact_words(ctx)
        assert len(words) == len(ctx.groups) * (len(ctx.items) + 1)
        assert all(re.fullmatch("[A-Za-z]+", w) for w in words)


def test_compact_names_tell_shipped_contexts_apart():
    words = [compact_words(load_context(name)) for name in SHIPPED]
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            assert not words[i] & words[j], (SHIPPED[i], SHIPPED[j], sorted(words[i] & words[j])[:5])


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("distractors", [0.5, 1.0])
def test_shipped_contexts_hold_op_40_with_distractors(name, distractors):
    ctx = load_context(name)
    cfg = GraphConfig(distractors=distractors)
    for seed in range(10):
        problem = generate(40, random.Random(seed), cfg, len(ctx.groups), len(ctx.items))
        assert render(problem, ctx, "natural", random.Random(seed)).answer == str(problem.answer)


def test_load_by_path_equals_load_by_name():
    assert load_context(BUILTIN_DIR / "zoo.yaml") == load_context("zoo")
    assert load_context(str(BUILTIN_DIR / "zoo.yaml")) == load_context("zoo")


def test_unknown_context_lists_the_known_ones():
    with pytest.raises(ContextError, match=r"unknown context 'mars' \(known: .*zoo"):
        load_context("mars")
    with pytest.raises(ContextError, match="no such context file"):
        load_context("/nonexistent/mars.yaml")


def zoo_data() -> dict:
    return yaml.safe_load((BUILTIN_DIR / "zoo.yaml").read_text())


def write(directory, name, data) -> str:
    path = directory / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def edit(change):
    def apply():
        data = zoo_data()
        data["name"] = "bad"
        change(data)
        return data
    return apply


BAD_FILES = {
    "missing key": (edit(lambda d: d.pop("items")), r"items: missing required key"),
    "unknown key": (edit(lambda d: d.update(colour="blue")), r"colour: unknown key"),
    "few groups": (edit(lambda d: d.update(groups=d["groups"][:3])), r"groups: need at least 10 names, got 3"),
    "few items": (edit(lambda d: d.update(items=d["items"][:19])), r"items: need at least 20 names, got 19"),
    "duplicate": (edit(lambda d: d["items"].__setitem__(3, d["items"][0])), r"items\[3\]: duplicate 'adult wolf'"),
    "digit": (edit(lambda d: d["groups"].__setitem__(0, "Zoo 9")), r"groups\[0\]: 'Zoo 9' contains a digit"),
    "not a word": (edit(lambda d: d["items"].__setitem__(1, "adult  fox")), r"items\[1\]: .*single spaces"),
    "reserved": (edit(lambda d: d["items"].__setitem__(1, "Define fox")), r"items\[1\]: .*marks solution steps"),
    "name mismatch": (lambda: zoo_data(), r"name: 'zoo' must match the file name 'bad'"),
    "instance placeholders": (edit(lambda d: d.update(instance="number of {item}")), r"instance: .*\{group\}"),
    "glued placeholder": (edit(lambda d: d.update(instance="number of {item} in {group}'s")),
                          r"instance: .*must stand alone"),
    "phrasing key": (edit(lambda d: d.update(phrasing={"colour": "x"})), r"phrasing\.colour: unknown template"),
    "phrasing placeholders": (edit(lambda d: d.update(phrasing={"const": "The {target} is big ."})),
                              r"phrasing\.const: .*\{const\}, \{target\}"),
    "phrasing punctuation": (edit(lambda d: d.update(phrasing={"const": "The {target} = {const} ;"})),
                             r"phrasing\.const: .*'='"),
    "compact length": (edit(lambda d: d["compact"].update(groups=d["compact"]["groups"][:-1])),
                       r"compact\.groups: need one code per entry of groups \(12\), got 11"),
    "compact digit": (edit(lambda d: d["compact"]["items"].__setitem__(0, "w0l")), r"compact\.items\[0\]: 'w0l'"),
    "compact missing": (edit(lambda d: d["compact"].pop("category")), r"compact\.category: missing"),
    "compact clash": (edit(lambda d: d["compact"].update(groups=["A", "Ab", *d["compact"]["groups"][2:]],
                                                         items=["bcd", "cd", *d["compact"]["items"][2:]])),
                      r"compact: 'Abcd' names both"),
    "not yaml": (lambda: "name: [unclosed", r"not valid YAML"),
    "not a mapping": (lambda: "- just\n- a list\n", r"<file>: expected a mapping"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_names_file_and_field(tmp_path, case):
    make, message = BAD_FILES[case]
    path = write(tmp_path, "bad", make())
    with pytest.raises(ContextError, match=re.escape(path) + ": " + message) as err:
        load_context(path)
    assert isinstance(err.value, ConfigError)


GARDEN = {
    "name": "garden",
    "category": "plants",
    "instance": "number of {item} in {group}",
    "aggregate": "total number of {category} in {group}",
    "phrasing": {"const": "The {target} is exactly {const} .", "question": "How large is the {target} ?"},
    "groups": ["Rose Garden", "Herb Garden", "Kitchen Garden", "Rock Garden", "Water Garden", "Tea Garden",
               "Moss Garden", "Fern Garden", "Cactus Garden", "Palm Garden"],
    "items": ["red tulip", "white lily", "blue iris", "yellow daisy", "pink peony", "purple aster", "orange poppy",
              "green fern", "tall sunflower", "wild orchid", "sweet pea", "climbing rose", "morning glory",
              "lady slipper", "snap dragon", "baby breath", "bleeding heart", "tiger lily", "foxglove", "lupin"],
    "compact": {
        "groups": ["ro", "he", "ki", "rc", "wa", "te", "mo", "fe", "ca", "pa"],
        "items": ["TU", "LI", "IR", "DA", "PE", "AS", "PO", "FE", "SU", "OR", "SW", "CL", "MO", "LA", "SN", "BA",
                  "BL", "TI", "FO", "LU"],
        "category": "PL",
    },
}


def test_a_new_context_is_one_file_on_the_search_path(tmp_path, monkeypatch):
    write(tmp_path, "garden", GARDEN)
    assert "garden" not in available_contexts()
    monkeypatch.setenv("LAB_CONTEXT_PATH", str(tmp_path))
    assert "garden" in available_contexts() and set(SHIPPED) <= set(available_contexts())
    ctx = load_context("garden")
    for seed in range(20):
        problem = generate(2 + seed, random.Random(seed), GraphConfig(), len(ctx.groups), len(ctx.items))
        for style in STYLES:
            rendered = render(problem, ctx, style, random.Random(seed))
            assert verify(completion_of(rendered.text), problem, rendered.names, style).verified
            vocabulary = set(context_vocabulary(ctx, style))
            assert all(t in vocabulary or t.isdigit() for t in rendered.text.split())
            if style == "natural":
                assert "is exactly" in rendered.problem and rendered.question.startswith("How large is the")
            else:
                assert set(rendered.names.values()) <= compact_words(ctx)


def test_shipped_contexts_cannot_be_shadowed(tmp_path, monkeypatch):
    fake = {**GARDEN, "name": "zoo"}
    write(tmp_path, "zoo", fake)
    monkeypatch.setenv("LAB_CONTEXT_PATH", str(tmp_path))
    assert load_context("zoo").category == "animals"
