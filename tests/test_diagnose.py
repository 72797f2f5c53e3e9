"""lab diagnose: token roles on hand-labelled steps of both compact layouts, teacher-forced counts against a plain
per-sequence forward pass, and the command end to end (files, figure, bad inputs)."""

import json

import pandas as pd
import pytest
import torch

from analysis.config import load_ladder
from analysis.diagnose import ROLES, by_split, main, role_counts, solution_roles
from analysis.evaluate import load_model, select_problems
from datagen.corpus import corpus_tokenizer, read_manifest, read_split

S, F, OP, NAME, VAL, CONST, LEAF, RESULT = ("step name", "format", "operator", "operand name", "operand value",
                                             "constant", "leaf value", "step result")


def test_roles_of_a_compact_solution():
    # As the corpus tokenizer splits it: words carry a leading space, a number's later digits do not.
    tokens = ["<question>", " x", "</question>", "<solution>",
              " Blio", " =", " 3", " ;",
              " Bbev", " =", " Blio", " +", " Npan", " =", " 4", " ;",
              " Sele", " =", " Ndee", " *", " 2", " =", " 1", "6", " ;", " ",
              "</solution>", " ", "<answer>", " 1", "6", " ", "</answer>"]
    expected = [None] * 4 + [S, F, LEAF, F] + [S, F, NAME, OP, NAME, F, RESULT, F] + \
        [S, F, NAME, OP, CONST, F, RESULT, RESULT, F, None] + [None] * 7
    assert solution_roles(tokens) == expected


def test_roles_of_a_compact_inline_solution():
    tokens = ["<solution>", " C", " =", " A", " 1", " -", " B", " 2", "2", " =", " 2", "2", " ;",
              " D", " =", " C", " 2", "2", " +", " 3", " =", " 4", " ;", "</solution>"]
    expected = [None, S, F, NAME, VAL, OP, NAME, VAL, VAL, F, RESULT, RESULT, F,
                S, F, NAME, VAL, VAL, OP, CONST, F, RESULT, F, None]
    assert solution_roles(tokens) == expected
    assert solution_roles(["no", "solution", "here"]) == [None, None, None]


def test_roles_of_grouped_forms():
    # c * (A + B) and (A - B) - c, as the GSM-Infinite statement forms render in compact-inline: a constant that
    # opens the expression follows no operand name, and the brackets are format.
    tokens = ["<solution>", " E", " =", " 3", " *", " (", " A", " 1", " +", " B", " 2", " )", " =", " 9", " ;",
              " G", " =", " (", " A", " 1", " -", " B", " 2", " )", " -", " 4", " =", " 1", " ;", "</solution>"]
    expected = [None, S, F, CONST, OP, F, NAME, VAL, OP, NAME, VAL, F, F, RESULT, F,
                S, F, F, NAME, VAL, OP, NAME, VAL, F, OP, CONST, F, RESULT, F, None]
    assert solution_roles(tokens) == expected


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from datagen.cli import main as datagen
    from pretrain.cli import main as pretrain

    root = tmp_path_factory.mktemp("diagnose")
    assert datagen(["--preset", "smoke", "--out", str(root / "corpus"), "--quiet"]) == 0
    assert pretrain(["--preset", "smoke", "--data", str(root / "corpus"), "--out", str(root / "base"), "--quiet"]) == 0
    return root


def test_counts_equal_a_plain_forward_pass_per_sequence(smoke):
    tokenizer = corpus_tokenizer(smoke / "corpus", read_manifest(smoke / "corpus"))
    model = load_model(smoke / "base" / "model", progress=False)
    problems = select_problems(read_split(smoke / "corpus", "test", columns=["id", "context", "op", "text"]),
                               load_ladder("smoke"), 2)
    expected: dict[tuple[int, str], list[int]] = {}
    for text, op in zip(problems["text"], problems["op"]):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            predicted = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1).tolist()
        for i, role in enumerate(solution_roles(tokenizer.convert_ids_to_tokens(ids))):
            if role is not None:
                cell = expected.setdefault((int(op), role), [0, 0])
                cell[0] += predicted[i - 1] == ids[i]
                cell[1] += 1
    for batch_size in (1, 5):  # right-padding several sequences into one pass changes nothing
        counts = role_counts(model, tokenizer, problems, batch_size)
        got = {(row.op, row.role): [row.correct, row.total] for row in counts.itertuples(index=False)}
        assert got == expected
    assert {role for _, role in expected} == set(ROLES) - {"operand value"}  # compact: no inline values


def test_split_table_pools_tokens_not_problems():
    counts = pd.DataFrame([(2, S, 1, 2), (3, S, 3, 4), (5, S, 0, 10), (2, F, 5, 5)],
                          columns=["op", "role", "correct", "total"])
    table = by_split(counts, {"ID": (2, 3), "edge": (4, 5), "hard": (6, 8)})
    assert table.loc[S, "ID"] == pytest.approx(4 / 6) and table.loc[S, "edge"] == 0.0
    assert table.loc[S, "all ops"] == pytest.approx(4 / 16) and table.loc[S, "tokens"] == 16
    assert list(table.index) == [S, F] and pd.isna(table.loc[F, "edge"])


def test_the_command_writes_table_figure_and_provenance(smoke, tmp_path, capsys):
    out = tmp_path / "diag"
    args = ["--model", str(smoke / "base"), "--data", str(smoke / "corpus"), "--problems-per-op", "2"]
    assert main([*args, "--out", str(out)]) == 0
    assert "| step result |" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["roles.csv", "roles.md", "roles.pdf", "roles.png",
                                                     "summary.json"]
    csv = pd.read_csv(out / "roles.csv")
    assert set(csv["op"]) == {2, 3, 4, 5, 6} and (csv["accuracy"] == csv["correct"] / csv["total"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 12 and summary["provenance"]["commit"] and summary["rendering"] == "compact"
    assert main([*args, "--out", str(out)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_bad_inputs_exit_2(smoke, tmp_path, capsys):
    from datagen.cli import main as datagen

    natural = tmp_path / "natural"
    assert datagen(["--preset", "smoke", "--out", str(natural), "--quiet", "--rendering", "natural",
                    "--splits", "{test: 10}"]) == 0
    out = tmp_path / "x"
    assert main(["--model", str(smoke / "base"), "--data", str(natural), "--out", str(out)]) == 2
    assert "not 'natural'" in capsys.readouterr().err and not out.exists()
    assert main(["--model", str(smoke / "base"), "--data", str(smoke / "corpus"), "--out", str(out),
                 "--samples", "3"]) == 2
    assert "unknown options" in capsys.readouterr().err and not out.exists()
