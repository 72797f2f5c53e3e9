"""`lab eval` end to end on a tiny random model, the scoring path on gold and corrupted completions, and inputs
that must be refused before any sampling."""

import re

import pandas as pd
import pytest

from analysis.config import Ladder, Span, load_eval_config
from analysis.evaldir import DIAGNOSTIC_COLUMNS, SAMPLE_COLUMNS, STEP_COUNTERS, read_eval
from analysis.evaluate import prompt_of, score, select_problems
from analysis.tables import RESULT_COLUMNS, TAXONOMY_COLUMNS, results_table
from core.config import ConfigError, build
from core.sampler import Rollouts
from datagen.corpus import build_corpus, read_manifest, read_split
from datagen.spec import CorpusSpec
from datagen.tokenizer import build_tokenizer, load_tokenizer
from pretrain.config import ModelConfig
from pretrain.model import build_model
from sweeps.cli import main as lab

TINY_MODEL = ModelConfig(layers=1, hidden=32, ffn=64, heads=2, kv_heads=1, max_len=256)
FEW = ["--preset", "smoke", "--samples", "4", "--problems-per-op", "2", "--max-new-tokens", "12", "--quiet"]
WIDE_LADDER = Ladder(ID=Span(1, 4), edge=Span(5, 8), hard=Span(9, 12))  # every op of the conftest corpora



@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Test problems at op 2-7 in two contexts: every split of the smoke ladder (ID 2-3, edge 4-5, hard 6-8)."""
    spec = build(CorpusSpec, {"seed": 3, "rendering": "compact", "splits": {"test": 24}, "ops": [{"lo": 2, "hi": 7}],
                              "contexts": [{"name": "zoo", "share": 0.5}, {"name": "teachers", "share": 0.5}],
                              "graph": {"modulus": 23}}, "datagen")
    out = tmp_path_factory.mktemp("eval-corpus") / "corpus"
    build_corpus(spec, out, progress=False)
    return out


def save_model(path, tokenizer):
    build_model(TINY_MODEL, tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    """A run directory as pre-training leaves it: its own config.json, a random tiny model in `model/`."""
    run = tmp_path_factory.mktemp("runs") / "base"
    save_model(run / "model", load_tokenizer(corpus / "tokenizer"))
    (run / "config.json").write_text('{"stage": "pretrain"}')
    return run


@pytest.fixture(scope="module")
def evaluated(corpus, run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evals") / "base"
    assert lab(["eval", "--model", str(run_dir), "--data", str(corpus), "--out", str(out), *FEW]) == 0
    return out


def test_eval_writes_every_table_with_its_schema(evaluated):
    e = read_eval(evaluated)
    assert list(e.samples.columns) == list(SAMPLE_COLUMNS) + list(DIAGNOSTIC_COLUMNS)
    assert e.samples["arith_ops"].between(0, e.samples["op"]).all()  # quantities count toward op, not arith_ops
    counts = e.samples[list(STEP_COUNTERS)]
    assert (counts >= 0).all().all()
    errors = [c for c in STEP_COUNTERS if c not in ("extra", "arithmetic_errors")]
    assert (counts.loc[e.samples["verified"], errors] == 0).all().all()  # a verified completion has no wrong step
    assert list(e.results.columns) == list(RESULT_COLUMNS)
    assert list(e.taxonomy.columns) == list(TAXONOMY_COLUMNS)
    assert e.checkpoint == "base" and set(e.samples["checkpoint"]) == {"base"}

    problems = e.samples.groupby(["context", "op"])["problem_id"].nunique()
    assert (problems == 2).all() and set(e.samples["op"]) == set(range(2, 8))
    per_problem = e.samples.groupby(["problem_id", "mode"]).size().unstack()
    assert (per_problem["sampled"] == 4).all() and (per_problem["greedy"] == 1).all()
    assert e.samples["length"].between(1, 12).all()

    assert set(e.results["metric"]) == {"pass@k_answer", "pass@k_verified", "greedy_answer", "greedy_verified"}
    assert sorted(e.results.loc[e.results["metric"] == "pass@k_verified", "k"].unique()) == [1, 2, 4]
    zoo_splits = e.results[e.results["op"].isna() & (e.results["context"] == "zoo")]
    assert list(dict.fromkeys(zoo_splits["split"])) == ["ID", "edge", "hard"]
    assert (e.results["ci_lo"] <= e.results["value"]).all() and (e.results["value"] <= e.results["ci_hi"]).all()

    summary = e.summary
    assert summary["request"]["ladder"] == {"ID": [2, 3], "edge": [4, 5], "hard": [6, 8]}
    assert summary["request"]["config"]["samples"] == 4 and summary["seeds"]["sampling"] == 0
    assert summary["problems"]["zoo"] == {str(op): 2 for op in range(2, 8)}
    assert summary["provenance"]["wall_s"] > 0 and summary["provenance"]["commit"]
    assert summary["provenance"]["throughput"]["samples"] == len(e.samples)
    assert set(summary["headline"]["zoo"]["edge"]) >= {"n_problems", "pass@1", "pass@4", "greedy"}


def test_same_seed_same_samples_other_seed_other_samples(corpus, run_dir, evaluated, tmp_path):
    again, reseeded = tmp_path / "again", tmp_path / "reseeded"
    assert lab(["eval", "--model", str(run_dir), "--data", str(corpus), "--out", str(again), *FEW]) == 0
    assert lab(["eval", "--model", str(run_dir), "--data", str(corpus), "--out", str(reseeded), *FEW,
                "--seed", "1"]) == 0
    first = pd.read_parquet(evaluated / "samples.parquet")
    pd.testing.assert_frame_equal(first, pd.read_parquet(again / "samples.parquet"))
    other = pd.read_parquet(reseeded / "samples.parquet")
    assert list(other["problem_id"]) == list(first["problem_id"])  # problems do not depend on the seed
    sampled = first["mode"] == "sampled"
    assert (other.loc[sampled, "completion"] != first.loc[sampled, "completion"]).any()
    greedy = ~sampled
    assert list(other.loc[greedy, "completion"]) == list(first.loc[greedy, "completion"])


def test_rerun_on_finished_eval_does_nothing(corpus, run_dir, evaluated, capsys):
    before = {path.name: path.stat().st_mtime_ns for path in evaluated.iterdir()}
    assert lab(["eval", "--model", str(run_dir), "--data", str(corpus), "--out", str(evaluated), *FEW]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {path.name: path.stat().st_mtime_ns for path in evaluated.iterdir()} == before
    assert lab(["eval", "--model", str(run_dir), "--data", str(corpus), "--out", str(evaluated), *FEW,
                "--temperature", "1.0"]) == 2
    assert "different request" in capsys.readouterr().err


def gold_rollouts(problems: pd.DataFrame, tokenizer, k: int, edit=lambda completion: completion) -> Rollouts:
    completions = [edit(text[len(prompt_of(text)):]) for text in problems["text"]]
    ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    return Rollouts(k=k, tokens=[row for row in ids for _ in range(k)], stopped=[True] * len(ids) * k,
                    logprob_sums=None)


def scored(corpus_dir, edit, k=4):
    tokenizer = load_tokenizer(corpus_dir / "tokenizer")
    problems = select_problems(read_split(corpus_dir, "test"), WIDE_LADDER, per_op=3)
    style = read_manifest(corpus_dir)["spec"]["rendering"]
    samples = score(problems, gold_rollouts(problems, tokenizer, k, lambda c: edit(c, style)), tokenizer, style)
    table = results_table(samples.assign(checkpoint="gold"), WIDE_LADDER.splits(), n_boot=50)
    return samples, table


RENDERINGS = pytest.mark.parametrize("rendering", [0, 1], ids=["compact", "natural"])  # conftest corpus_dirs


@RENDERINGS
def test_gold_completions_score_pass_at_k_one(corpus_dirs, rendering):
    samples, table = scored(corpus_dirs[rendering], edit=lambda completion, style: completion)
    assert samples["verified"].all() and (samples["process_acc"] == 1).all()
    assert (samples["error"] == "verified").all()
    assert (samples[list(STEP_COUNTERS)] == 0).all().all()  # the gold solution states nothing else
    assert (table["value"] == 1).all()


def wrong_answer(completion: str, style: str) -> str:
    answer = re.search(r"<answer> (\d+) </answer>", completion)
    return completion[:answer.start(1)] + str(int(answer.group(1)) + 1) + completion[answer.end(1):]


def truncated(completion: str, style: str) -> str:
    return completion[: len(completion) // 3]


def first_step_dropped(completion: str, style: str) -> str:
    body, tail = completion.split("</solution>")
    tokens = body.split()
    step_end = tokens.index(";" if style == "compact" else ".")
    return " " + " ".join(tokens[step_end + 1:]) + " </solution>" + tail


@pytest.mark.parametrize("edit, answer_pass", [
    (wrong_answer, 0.0),
    # No <answer>: the verifier falls back to the last step's value, which mod 23 may match by chance.
    (truncated, None),
    (first_step_dropped, 1.0),  # right answer, wrong process: only answer-only pass@k counts it
])
@RENDERINGS
def test_corrupted_completions_score_zero(corpus_dirs, rendering, edit, answer_pass):
    samples, table = scored(corpus_dirs[rendering], edit)
    assert not samples["verified"].any()
    assert (table.loc[table["metric"] == "pass@k_verified", "value"] == 0).all()
    if answer_pass is not None:
        assert (table.loc[table["metric"] == "pass@k_answer", "value"] == answer_pass).all()
    if edit is first_step_dropped:
        assert (samples["error"] == "answer_right_process_wrong").all()
        assert (samples["missing"] >= 1).all()  # the dropped step's quantity is counted missing


def test_score_refuses_misaligned_rollouts(corpus_dirs):
    tokenizer = load_tokenizer(corpus_dirs[0] / "tokenizer")
    problems = select_problems(read_split(corpus_dirs[0], "test"), WIDE_LADDER, per_op=1)
    rollouts = gold_rollouts(problems, tokenizer, k=2)
    with pytest.raises(ValueError, match="completions for"):
        score(problems.iloc[1:], rollouts, tokenizer, "compact")


def test_problem_choice_is_a_prefix_in_id_order(corpus):
    rows = read_split(corpus, "test")
    ladder = Ladder(ID=Span(2, 3), edge=Span(4, 4), hard=Span(6, 6))  # op 5 and 7 fall between/after splits
    three, two = select_problems(rows, ladder, 3), select_problems(rows, ladder, 2)
    assert set(three["op"]) == {2, 3, 4, 6}
    for (_, cell_three), (_, cell_two) in zip(three.groupby(["context", "op"]), two.groupby(["context", "op"])):
        assert list(cell_two["id"]) == sorted(cell_two["id"]) == list(cell_three["id"])[: len(cell_two)]


def test_config_sections_and_ladder_overrides():
    cfg, ladder = load_eval_config("paper")
    assert (cfg.samples, cfg.temperature, cfg.problems_per_op) == (128, 0.7, 200)
    assert ladder.splits() == {"ID": (2, 10), "edge": (11, 14), "hard": (15, 20)}
    assert load_eval_config("micro")[1].splits() == {"ID": (2, 10), "edge": (11, 14), "hard": (15, 20)}
    _, moved = load_eval_config("micro", {"ladder.edge.lo": 12, "samples": 4})
    assert moved.edge.lo == 12
    with pytest.raises(ConfigError, match="ladder.edge.lo"):
        load_eval_config("micro", {"ladder.edge.lo": 10})
    with pytest.raises(ConfigError, match="eval.temperature"):
        load_eval_config("smoke", {"temperature": 0})


def test_bad_inputs_fail_clearly(corpus, run_dir, tmp_path, capsys):
    def error(*args) -> str:
        assert lab(["eval", *FEW, *args, "--out", str(tmp_path / "never")]) == 2
        assert not (tmp_path / "never").exists()
        return capsys.readouterr().err

    data = ["--data", str(corpus)]
    assert "does not exist" in error("--model", str(tmp_path / "missing"), *data)
    (tmp_path / "empty").mkdir()
    assert "no finished run" in error("--model", str(tmp_path / "empty"), *data)
    assert "manifest.json: missing" in error("--model", str(run_dir), "--data", str(tmp_path / "empty"))
    other_vocab = save_model(tmp_path / "zoo-only", build_tokenizer(contexts=["zoo"]))
    assert "tokenizer does not match" in error("--model", str(other_vocab), *data)
    assert "no rows in split 'val'" in error("--model", str(run_dir), *data, "--split", "val")
    far = [f"--ladder.{split}.{end}={op}" for split, op0 in (("ID", 20), ("edge", 22), ("hard", 24))
           for end, op in (("lo", op0), ("hi", op0 + 1))]
    assert "no problems with ops on the ladder" in error("--model", str(run_dir), *data, *far)
    assert "eval.samples" in error("--model", str(run_dir), *data, "--samples", "0")
    assert "unknown key" in error("--model", str(run_dir), *data, "--sample", "3")


def test_prompt_is_the_text_up_to_solution(corpus):
    row = read_split(corpus, "test").iloc[0]
    prompt = prompt_of(row["text"])
    assert prompt.endswith("</question> <solution>") and row["text"].startswith(prompt)
