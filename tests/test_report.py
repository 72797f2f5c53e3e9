"""`lab report` and `lab plot` on eval directories written from crafted samples: verdict lines carry the numbers
of the results tables, figures are real images, and bad inputs are refused with a clear message."""

import json
import re

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from analysis.evaldir import read_eval, read_evals, write_eval
from analysis.report import compare, direction
from sweeps.cli import main as lab

LADDER = {"ID": [2, 3], "edge": [4, 5], "hard": [6, 8]}
OPS = [2, 3, 4, 5, 6, 7]
N_SAMPLES, N_PROBLEMS = 8, 12
# Probability that a sample is verified, per split: the arm gains on edge, keeps ID, barely moves hard.
SKILL = {"base": {"ID": 0.7, "edge": 0.1, "hard": 0.0}, "rl": {"ID": 0.7, "edge": 0.6, "hard": 0.02}}


def split_of(op: int) -> str:
    return next(name for name, (lo, hi) in LADDER.items() if lo <= op <= hi)


def crafted_samples(checkpoint: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for op in OPS:
        for problem in range(N_PROBLEMS):
            for mode, n in (("sampled", N_SAMPLES), ("greedy", 1)):
                verified = rng.random(n) < SKILL[checkpoint][split_of(op)]
                hacked = ~verified & (rng.random(n) < 0.2)  # right answer, wrong process
                for i in range(n):
                    error = ("verified" if verified[i] else "answer_right_process_wrong" if hacked[i]
                             else "value_error")
                    rows.append(dict(checkpoint=checkpoint, context="zoo", op=op, problem_id=f"p{op}-{problem}",
                                     sample_idx=i, answer_correct=bool(verified[i] or hacked[i]),
                                     verified=bool(verified[i]), process_acc=1.0 if verified[i] else 0.5,
                                     error=error, length=30, stopped=True, mode=mode, completion="…"))
    return pd.DataFrame(rows)


def crafted_eval(path, checkpoint: str, seed: int):
    config = {"split": "test", "samples": N_SAMPLES, "temperature": 0.7, "greedy": True, "n_boot": 400,
              "level": 0.95}
    summary = {
        "checkpoint": checkpoint,
        "request": {"checkpoint": checkpoint, "model": f"/runs/{checkpoint}/model", "data": "/corpora/test",
                    "config": config, "ladder": LADDER},
        "seeds": {"sampling": seed, "bootstrap": seed},
        "problems": {"zoo": {str(op): N_PROBLEMS for op in OPS}},
        "provenance": {"commit": "0123456789abcdef", "wall_s": 12.5,
                       "hardware": {"cpu": "Test CPU", "cpus": 2, "threads": 2},
                       "throughput": {"samples_per_s": 100.0}},
    }
    write_eval(path, crafted_samples(checkpoint, seed), summary, n_boot=400, level=0.95, seed=seed)
    return path


@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    root = tmp_path_factory.mktemp("evals")
    return [crafted_eval(root / "base", "base", seed=0), crafted_eval(root / "rl", "rl", seed=1)]


@pytest.fixture(scope="module")
def report(evals, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "REPORT.md"
    assert lab(["report", "--eval", *map(str, evals), "--out", str(out)]) == 0
    return out


VERDICT = re.compile(r"^- \*\*(\w+) vs (\w+)\*\* · (\w+) · pass@(\d+): (.*) → (.*)\.$")
CHANGE = re.compile(r"(\w+) ([+-]\d+\.\d) pp \[([+-]\d+\.\d), ([+-]\d+\.\d)\] \(([\w ]+), n=(\d+)\)")


def test_verdict_lines_carry_the_results_table_numbers(evals, report):
    base, arm = (read_eval(path).results for path in evals)
    lines = [VERDICT.match(line) for line in report.read_text().splitlines() if line.startswith("- **")]
    assert [m.group(4) for m in lines] == [str(1), str(N_SAMPLES)]
    for match in lines:
        assert match.group(1, 2, 3) == ("rl", "base", "zoo")
        k = int(match.group(4))
        changes = CHANGE.findall(match.group(5))
        assert [c[0] for c in changes] == ["ID", "edge", "hard"]
        for split, delta, lo, hi, said, n in changes:
            def value(results):
                row = results[results["op"].isna() & (results["split"] == split) & (results["k"] == k)
                              & (results["metric"] == "pass@k_verified")]
                return row["value"].item()
            # Every problem is shared, so the paired point estimate is the difference of the table's values.
            assert float(delta) == pytest.approx(100 * (value(arm) - value(base)), abs=0.051)
            assert float(lo) <= float(delta) <= float(hi)
            assert said == direction(float(lo), float(hi))
            assert int(n) == N_PROBLEMS * sum(split_of(op) == split for op in OPS)
    edge = dict((c[0], c[4]) for c in CHANGE.findall(lines[-1].group(5)))
    assert edge["edge"] == "up" and edge["ID"] == "no clear change"  # the crafted arm gains on edge only
    assert "edge up" in lines[-1].group(6)


def test_report_has_tables_figures_and_provenance(report):
    text = report.read_text()
    for heading in ("## Verdicts", "### Paired differences", "## Results per split", "## Results per op",
                    "## Error taxonomy", "## Figures", "## Provenance"):
        assert heading in text
    for image in re.findall(r"!\[\w+\]\(([^)]+)\)", text):
        assert (report.parent / image).stat().st_size > 0
    assert "0123456789ab" in text and "Test CPU" in text and "12 s" in text
    # The split table's edge pass@1 for rl is the results table's value with its CI.
    assert re.search(r"\| rl \| zoo \| edge \| 24 \| \d+\.\d \[\d+\.\d, \d+\.\d\] \|", text)


def test_paired_comparison_uses_only_shared_problems(evals, tmp_path):
    base, arm = read_evals(evals)
    fewer = arm.samples[~arm.samples["problem_id"].str.endswith("-0")]
    summary = json.loads((evals[1] / "summary.json").read_text())
    write_eval(tmp_path / "partial", fewer, summary, n_boot=100, level=0.95, seed=0)
    table = compare(read_eval(tmp_path / "partial"), base, [1], n_boot=100, level=0.95)
    assert list(table["split"]) == ["ID", "edge", "hard"]
    assert (table["n_shared"] == 2 * (N_PROBLEMS - 1)).all()  # two ops per split, one problem each left out


def test_arm_without_shared_problems_is_said_so(evals, tmp_path):
    base, arm = read_evals(evals)
    summary = json.loads((evals[1] / "summary.json").read_text())
    elsewhere = arm.samples.assign(problem_id="other-" + arm.samples["problem_id"])
    write_eval(tmp_path / "elsewhere", elsewhere, summary, n_boot=100, level=0.95, seed=0)
    assert lab(["report", "--eval", str(evals[0]), str(tmp_path / "elsewhere"), "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "**rl vs base**: no problem in common" in text and "### Paired differences" not in text


def test_plot_writes_nonblank_pngs(evals, tmp_path):
    run = tmp_path / "runs" / "pre"
    run.mkdir(parents=True)
    records = [{"step": s, "train/loss": 8.0 - 0.1 * s} for s in range(0, 50, 5)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "figs"
    assert lab(["plot", "--eval", *map(str, evals), "--out", str(out), "--runs", str(run)]) == 0
    names = {"passk_verified", "passk_answer", "split_bars", "error_taxonomy", "training_curves"}
    assert {p.stem for p in out.glob("*.png")} == names and {p.stem for p in out.glob("*.pdf")} == names
    for png in out.glob("*.png"):
        pixels = mpimg.imread(png)
        assert pixels.std() > 0.01, png


def test_bad_inputs_fail_clearly(evals, tmp_path, capsys):
    out = ["--out", str(tmp_path / "r.md")]
    assert lab(["report", "--eval", str(tmp_path), *out]) == 2
    assert "not an eval directory" in capsys.readouterr().err
    assert lab(["report", "--eval", str(evals[0]), str(evals[0]), *out]) == 2
    assert "distinct `lab eval --name`" in capsys.readouterr().err
    assert lab(["plot", "--eval", str(evals[0]), "--out", str(tmp_path / "f"), "--runs", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()
