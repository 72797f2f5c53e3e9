"""`lab <stage> --help` lists every typed config field with its type, the chosen preset's value and its meaning,
generated from the dataclasses (meanings from the fields' `# comments`)."""

import dataclasses
from dataclasses import dataclass, field
from typing import get_type_hints

import pytest

from analysis.config import EvalConfig, Ladder
from core.config import field_meanings
from datagen.spec import CorpusSpec
from midtrain.config import MidtrainConfig
from pretrain.config import PretrainConfig
from rl.config import RLConfig
from sweeps.cli import main

STAGES = {"datagen": [("datagen", CorpusSpec)], "pretrain": [("pretrain", PretrainConfig)],
          "midtrain": [("midtrain", MidtrainConfig)], "rl": [("rl", RLConfig)],
          "eval": [("eval", EvalConfig), ("ladder", Ladder)]}


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 0
    return capsys.readouterr().out


def leaf_paths(cls, prefix=""):
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaf_paths(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


@pytest.mark.parametrize("stage", STAGES)
def test_help_lists_every_field(stage, capsys):
    text = help_text(capsys, stage, "--preset", "micro", "--help")
    flags = {line.split()[0] for line in text.splitlines() if line.startswith("  --")}
    for index, (section, cls) in enumerate(STAGES[stage]):
        assert f"config fields of section {section!r} (preset 'micro')" in text
        for path in leaf_paths(cls):
            assert f"--{section + '.' if index else ''}{path}" in flags


@pytest.mark.parametrize("stage, lines", [
    ("pretrain", ["  --model.layers int = 6", "  --lr float = 0.003", "  --loss {all,solution} = solution",
                  "  --batch_size int = 32\n      sequences per micro-batch", "  --eval_data str | null = null"]),
    ("rl", ["  --reward.alpha float = 0.5\n      mixed: alpha * outcome + (1 - alpha) * process"]),
    ("eval", ["  --ladder.edge.lo int = 11", "  --ladder.hard.hi int = 20"]),
    ("datagen", ["  --rendering {natural,compact,compact-inline} = compact-inline", "  --graph.modulus int | null = null"]),
])
def test_help_shows_the_presets_values_types_and_meanings(stage, lines, capsys):
    text = help_text(capsys, stage, "--preset", "micro", "--help")
    for line in lines:
        assert line in text


def test_another_preset_shows_its_own_values(capsys):
    assert "  --model.layers int = 2" in help_text(capsys, "pretrain", "--help")  # smoke, the default preset
    assert "  --model.layers int = 12" in help_text(capsys, "pretrain", "--preset", "paper", "--help")


@dataclass
class Base:
    inherited: int = 1  # from the parent class


@dataclass
class Commented(Base):
    trailing: int = 0  # on the field's line
    # Above the field,
    # over two lines.
    above: float = 1.0
    multi_line: list[int] = field(
        default_factory=list)  # on the field's last line
    bare: str = "x"


def test_meanings_come_from_trailing_or_preceding_comments():
    assert field_meanings(Commented) == {"inherited": "from the parent class", "trailing": "on the field's line",
                                         "above": "Above the field, over two lines.",
                                         "multi_line": "on the field's last line", "bare": ""}


@dataclass
class NewDefault(Commented):
    trailing: int = 5
    bare: str = "y"  # now documented


def test_a_subclass_changing_a_default_keeps_the_meaning():
    meanings = field_meanings(NewDefault)
    assert meanings["trailing"] == "on the field's line" and meanings["bare"] == "now documented"
