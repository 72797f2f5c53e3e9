"""lab calibrate: per-op numbers against hand counts, the split rules on crafted tables, the ladder file through the
config layer, and the command end to end on a smoke base (which has no frontier, so it must say so and exit 1)."""

import itertools

import pandas as pd
import pytest

from analysis.calibrate import (Rules, assign, by_quantities_table, chance_pass_at_k, ladder_stability, main,
                                per_op_table, plot_calibration, render_by_quantities, render_stability, write_ladder)
from analysis.config import Ladder, Span, load_eval_config, load_ladder
from core.config import ConfigError, preset_path


def samples_frame(verified: dict[tuple[str, int, str], list[bool]], greedy: dict[tuple[str, int, str], bool]):
    rows = []
    for (context, op, problem), flags in verified.items():
        for j, flag in enumerate(flags):
            rows.append(dict(checkpoint="base", context=context, op=op, problem_id=problem, sample_idx=j,
                             answer_correct=flag or j == 0, verified=flag, error="verified" if flag else "unparseable", mode="sampled"))
        rows.append(dict(checkpoint="base", context=context, op=op, problem_id=problem, sample_idx=0,
                         answer_correct=greedy[context, op, problem], verified=greedy[context, op, problem],
                         error="unparseable", mode="greedy"))
    return pd.DataFrame(rows)


def brute_pass_at_k(flags: list[bool], k: int) -> float:
    draws = list(itertools.combinations(range(len(flags)), k))
    return sum(any(flags[i] for i in draw) for draw in draws) / len(draws)


def test_per_op_numbers_pool_contexts_with_problems_weighing_equally():
    verified = {("zoo", 2, "a"): [True, True, False, False], ("zoo", 2, "b"): [False] * 4,
                ("teachers", 2, "c"): [True, False, False, False], ("zoo", 3, "d"): [False, False, False, True]}
    greedy = {("zoo", 2, "a"): True, ("zoo", 2, "b"): False, ("teachers", 2, "c"): True, ("zoo", 3, "d"): False}
    table = per_op_table(samples_frame(verified, greedy), k=2, n_boot=200).set_index("op")
    op2 = [flags for (_, op, _), flags in verified.items() if op == 2]
    assert table.at[2, "problems"] == 3 and table.at[2, "greedy"] == pytest.approx(2 / 3)
    assert table.at[2, "pass@1"] == pytest.approx(sum(sum(f) / 4 for f in op2) / 3)
    assert table.at[2, "pass@2"] == pytest.approx(sum(brute_pass_at_k(f, 2) for f in op2) / 3)
    assert table.at[2, "pass@1_lo"] <= table.at[2, "pass@1"] <= table.at[2, "pass@1_hi"]
    assert table.at[3, "pass@2"] == pytest.approx(0.5) and table.at[3, "greedy"] == 0.0
    # answer-only counts sample 0 of every problem as right: pass@2 of op 2 is then 1 - C(3,2)/C(4,2) or more
    assert table.at[2, "pass@2_answer"] >= 0.5


def test_pass_at_1_by_necessary_quantities_is_op_minus_arithmetic_operations():
    verified = {("zoo", 5, "a"): [True, True, False, False], ("teachers", 5, "b"): [True] * 4,
                ("zoo", 5, "c"): [False] * 4, ("zoo", 6, "d"): [True, False, False, False]}
    samples = samples_frame(verified, {key: False for key in verified})
    samples["arith_ops"] = samples["problem_id"].map({"a": 2, "b": 2, "c": 1, "d": 2})
    table = by_quantities_table(samples).set_index(["op", "quantities"])
    assert table.index.tolist() == [(5, 3), (5, 4), (6, 4)]  # a, b: 5 - 2; c: 5 - 1; d: 6 - 2
    assert table.at[(5, 3), "problems"] == 2 and table.at[(5, 3), "pass1"] == pytest.approx((0.5 + 1.0) / 2)
    assert table.at[(5, 4), "pass1"] == 0.0 and table.at[(6, 4), "pass1"] == pytest.approx(0.25)
    text = render_by_quantities(table.reset_index())
    assert "| 5 | 0.75 (2) | 0.00 (1) |" in text and "| 6 |  | 0.25 (1) |" in text
    assert "| all | 0.75 (2) | 0.12 (2) |" in text  # 4 quantities pooled: (0 + 0.25) / 2


def table_of(rows: list[tuple[int, float, float, float]], k: int = 8) -> pd.DataFrame:
    return pd.DataFrame([{"op": op, "greedy": g, "pass@1": p1, f"pass@{k}": pk} for op, g, p1, pk in rows])


def test_the_rules_assign_consecutive_runs_and_leave_gaps(tmp_path):
    table = table_of([(2, 1.0, 0.95, 1.0), (3, 0.92, 0.9, 1.0), (4, 0.7, 0.6, 0.99),  # 4: neither ID nor edge
                      (5, 0.2, 0.4, 0.8), (6, 0.0, 0.1, 0.3), (7, 0.0, 0.02, 0.2),
                      (8, 0.0, 0.0, 0.1), (9, 0.0, 0.0, 0.05), (10, 0.0, 0.0, 0.0), (11, 0.0, 0.0, 0.2)])
    splits = assign(table, 8, Rules())
    assert splits == {"ID": (2, 3), "edge": (5, 7), "hard": (9, 10)}
    for column in ("pass@1", "pass@8"):  # a figure of it, CIs of +-0.05
        table[f"{column}_lo"], table[f"{column}_hi"] = table[column] - 0.05, table[column] + 0.05
    plot_calibration(table, splits, 8, Rules(), "crafted", tmp_path / "fig")
    assert (tmp_path / "fig.png").stat().st_size > 10_000 and (tmp_path / "fig.pdf").exists()


def test_the_ladder_is_incomplete_when_the_base_has_no_frontier():
    never_mastered = table_of([(2, 0.85, 0.8, 1.0), (3, 0.95, 0.9, 1.0), (4, 0.0, 0.3, 0.5), (5, 0.0, 0.0, 0.0)])
    assert assign(never_mastered, 8, Rules())["ID"] is None  # ID must start at the lowest op
    no_edge = table_of([(2, 1.0, 0.9, 1.0), (3, 0.5, 0.1, 0.1), (4, 0.0, 0.0, 0.0)])
    assert assign(no_edge, 8, Rules()) == {"ID": (2, 2), "edge": None, "hard": (4, 4)}
    assert assign(no_edge, 8, Rules(edge_passk_min=0.1)) == {"ID": (2, 2), "edge": (3, 3), "hard": (4, 4)}


def test_ladder_stability_resamples_problems_within_op():
    # op 2 mastered, op 3 an edge on every problem, op 5 never solved: firm. Op 4 holds 10 problems always solved
    # and 10 never: pass@1 is exactly the edge's 0.5, and a resample keeps op 4 in the edge when it draws at most
    # 10 of the solved ones, P(Binomial(20, 1/2) <= 10) = 0.588; else the edge is op 3 alone.
    verified, greedy = {}, {}
    for p in range(20):
        for op, flags in ((2, [True] * 4), (3, [True, False, False, False]), (4, [p < 10] * 4), (5, [False] * 4)):
            verified["zoo", op, f"{op}-{p}"], greedy["zoo", op, f"{op}-{p}"] = flags, op == 2
    samples = samples_frame(verified, greedy)
    splits = assign(per_op_table(samples, k=2, n_boot=50), 2, Rules())
    assert splits == {"ID": (2, 2), "edge": (3, 4), "hard": (5, 5)}
    counts = ladder_stability(samples, 2, Rules(), n_boot=2000, seed=1)
    assert counts["ID"] == {(2, 2): 2000} and counts["hard"] == {(5, 5): 2000}
    assert set(counts["edge"]) == {(3, 4), (3, 3)} and counts["edge"][(3, 4)] / 2000 == pytest.approx(0.588, abs=0.04)
    text = render_stability(counts, splits)
    share = counts["edge"][(3, 4)] / 2000
    assert f"| edge | 3–4 | {share:.2f} | 3–3 {1 - share:.2f} |" in text and "| ID | 2–2 | 1.00 | — |" in text
    assert f"Edge width in ops (share of draws): 1: {1 - share:.2f}, 2: {share:.2f}." in text


def test_chance_of_answer_only_pass_at_k():
    assert chance_pass_at_k(7, 1) == pytest.approx(1 / 7)
    assert chance_pass_at_k(7, 32) == pytest.approx(1 - (6 / 7) ** 32) and chance_pass_at_k(None, 32) is None


def test_a_ladder_file_replaces_the_presets_ladder(tmp_path):
    path = tmp_path / "ladder.yaml"
    write_ladder(path, {"ID": (2, 4), "edge": (5, 7), "hard": (9, 12)}, "measured")
    assert load_ladder("smoke", ladder_file=path) == Ladder(Span(2, 4), Span(5, 7), Span(9, 12))
    assert load_ladder("smoke") == Ladder(Span(2, 3), Span(4, 5), Span(6, 8))  # the preset's, untouched
    _, ladder = load_eval_config("smoke", {"ladder.hard.hi": 14, "samples": 4}, ladder_file=path)
    assert ladder == Ladder(Span(2, 4), Span(5, 7), Span(9, 14))
    with pytest.raises(ConfigError, match="no such ladder file"):
        load_ladder("smoke", ladder_file=tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("ladder: {ID: {lo: 2, hi: 5}, edge: {lo: 4, hi: 6}, hard: {lo: 7, hi: 8}}\n")
    with pytest.raises(ConfigError, match="ladder.edge.lo"):
        load_ladder("smoke", ladder_file=tmp_path / "bad.yaml")
    with pytest.raises(ConfigError):  # a ladder that breaks the ordering is never written
        write_ladder(tmp_path / "never.yaml", {"ID": (2, 5), "edge": (4, 6), "hard": (7, 8)}, "x")
    assert not (tmp_path / "never.yaml").exists()


@pytest.fixture(scope="module")
def smoke_base(tmp_path_factory):
    from datagen.cli import main as datagen
    from pretrain.cli import main as pretrain

    root = tmp_path_factory.mktemp("calibrate")
    assert datagen(["--preset", "smoke", "--out", str(root / "corpus"), "--quiet"]) == 0
    assert pretrain(["--preset", "smoke", "--data", str(root / "corpus"), "--out", str(root / "base"), "--quiet"]) == 0
    return root


def test_calibrating_a_base_without_a_frontier(smoke_base, tmp_path, capsys):
    args = ["--model", str(smoke_base / "base"), "--data", str(smoke_base / "corpus"), "--out", str(tmp_path / "cal"),
            "--quiet", "--problems-per-op", "2", "--samples", "4", "--max-new-tokens", "48"]
    assert main(args) == 1  # a 30-step smoke model solves nothing greedily: no ID, so no ladder
    assert "the base has no ID" in capsys.readouterr().err
    assert not (tmp_path / "cal" / "ladder.yaml").exists() and (tmp_path / "cal" / "calibration.png").exists()
    table, rest = (tmp_path / "cal" / "calibration.md").read_text().split("## How firm the ladder is")
    stability, by_quantities = rest.split("## Verified pass@1 by necessary")
    assert "| ID | none |" in stability and "Edge width in ops" in stability
    assert "| all |" in by_quantities
    corpus_ops = range(2, 7)  # the smoke corpus has op 2-6; the preset's guess reaches 8
    assert [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "op" not in line
            and "---" not in line] == [str(op) for op in corpus_ops]
    assert "answer pass@4 (chance)" in table and "(0.16)" in table  # mod 23: 1 - (22/23)^4
    assert main(args) == 1  # rerun: the evaluation is reused, the verdict the same


def test_calibrating_on_two_processes_writes_the_same_table(smoke_base, tmp_path):
    """Rank 1 must neither trip over rank 0's lock file nor read the evaluation before rank 0 has written it."""
    import subprocess
    import sys

    args = ["--model", str(smoke_base / "base"), "--data", str(smoke_base / "corpus"), "--quiet",
            "--problems_per_op", "2", "--samples", "4", "--max_new_tokens", "48"]
    for name, devices in (("one", "1"), ("two", "2")):
        done = subprocess.run([sys.executable, "-m", "sweeps.cli", "calibrate", *args, "--out", str(tmp_path / name),
                               "--devices", devices], capture_output=True, text=True)
        assert done.returncode == 1 and "the base has no ID" in done.stderr, done.stderr[-2000:]
    assert (tmp_path / "two" / "calibration.md").read_text() == (tmp_path / "one" / "calibration.md").read_text()


def test_the_presets_calibrate_section_sets_the_protocol_and_the_command_line_wins(smoke_base, tmp_path, capsys):
    import yaml

    from analysis.evaldir import read_summary

    preset = yaml.safe_load(preset_path("smoke").read_text())
    preset["calibrate"] = {"problems_per_op": 1, "samples": 3, "rules": {"id_greedy": 0.0}}
    (tmp_path / "preset.yaml").write_text(yaml.safe_dump(preset))
    args = ["--model", str(smoke_base / "base"), "--data", str(smoke_base / "corpus"), "--quiet",
            "--preset", str(tmp_path / "preset.yaml"), "--max_new_tokens", "8"]
    main([*args, "--out", str(tmp_path / "section")])
    config = read_summary(tmp_path / "section" / "eval")["request"]["config"]
    assert (config["problems_per_op"], config["samples"]) == (1, 3)
    table = (tmp_path / "section" / "calibration.md").read_text()
    assert "ID greedy >= 0.0" in table and "pass@3" in table  # the section's rules and K
    main([*args, "--out", str(tmp_path / "cli"), "--samples", "2", "--rules.id_greedy", "0.5"])
    config = read_summary(tmp_path / "cli" / "eval")["request"]["config"]
    assert (config["problems_per_op"], config["samples"]) == (1, 2)
    assert "ID greedy >= 0.5" in (tmp_path / "cli" / "calibration.md").read_text()
    capsys.readouterr()
    preset["calibrate"] = {"samples": 0}
    (tmp_path / "preset.yaml").write_text(yaml.safe_dump(preset))
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2
    assert "calibrate.samples" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_bad_inputs_exit_2(smoke_base, tmp_path, capsys):
    base = ["--model", str(smoke_base / "base"), "--data", str(smoke_base / "corpus"), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a"), "--rules.id_greedy", "2"]) == 2
    assert "rules.id_greedy" in capsys.readouterr().err and not (tmp_path / "a").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "other").write_text("x")
    assert main([*base, "--out", str(tmp_path / "taken")]) == 2
    assert "not a calibration directory" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--greedy", "false"]) == 2
    assert "eval.greedy" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_lab_eval_takes_a_measured_ladder(smoke_base, tmp_path, capsys):
    from analysis.evaldir import read_summary
    from analysis.evaluate import main as evaluate

    write_ladder(tmp_path / "ladder.yaml", {"ID": (2, 2), "edge": (3, 4), "hard": (5, 6)}, "hand-made")
    out = tmp_path / "eval"
    assert evaluate(["--model", str(smoke_base / "base"), "--data", str(smoke_base / "corpus"), "--out", str(out),
                     "--quiet", "--ladder-file", str(tmp_path / "ladder.yaml"), "--problems-per-op", "1",
                     "--samples", "2", "--max-new-tokens", "8"]) == 0
    assert read_summary(out)["request"]["ladder"] == {"ID": [2, 2], "edge": [3, 4], "hard": [5, 6]}
    assert evaluate(["--model", str(smoke_base / "base"), "--data", str(smoke_base / "corpus"), "--quiet",
                     "--out", str(tmp_path / "x"), "--ladder-file", str(tmp_path / "none.yaml")]) == 2
    assert "no such ladder file" in capsys.readouterr().err
