"""The in-training greedy evaluation: its scoring gives gold completions full marks, and a tiny run with
`eval_every` logs eval/* metrics (per op, per ladder split) in [0, 1] to metrics.jsonl."""

from datagen.corpus import read_manifest
from datagen.spec import OpRange
from pretrain.evalcb import load_problems, score, split_of_op
from pretrain.metrics import read_metrics
from pretrain.recipe import run
from tests.test_pretrain_helpers import corpus, tiny_config


def test_gold_completions_score_one_and_corruptions_do_not():
    rows = load_problems(corpus(), "val", per_op=5)
    # Every op the val split holds (mod 23 leaves op 3 out of val: no op-3 reasoning graph hashes there).
    val_ops = {int(op) for cells in read_manifest(corpus())["counts"]["val"].values() for op in cells}
    assert rows and {r["op"] for r in rows} == val_ops and val_ops >= {2, 4, 5, 6}
    for row in rows:
        completion = row["text"][len(row["prompt"]):]
        assert score(completion, row) == (True, True)
        assert score(" </solution> <answer> </answer>", row) == (False, False)
        # Right answer, no process: answer accuracy counts it, process verification does not.
        answer = row["text"].split("<answer>")[1].split("</answer>")[0].strip()
        assert score(f" </solution> <answer> {answer} </answer>", row) == (False, True)


def test_split_of_op():
    ladder = {"ID": {"lo": 2, "hi": 6}, "edge": {"lo": 7, "hi": 9}}
    assert [split_of_op(op, ladder) for op in (2, 6, 7, 9, 10)] == ["ID", "ID", "edge", "edge", None]


def test_tiny_run_logs_eval_metrics(tmp_path):
    cfg = tiny_config(6, eval_every=3, eval_problems=2, eval_max_new_tokens=8,
                      eval_ladder={"ID": OpRange(2, 4), "edge": OpRange(5, 6)})
    run("pretrain", cfg, corpus(), tmp_path / "run", progress=False)
    metrics = read_metrics(tmp_path / "run")
    for name in ["eval/verified_op2", "eval/answer_op6", "eval/verified_ID", "eval/answer_edge", "eval/seconds"]:
        assert name in metrics, name
    logged = metrics["eval/verified_op2"].dropna()
    assert list(logged.index) == [3, 6]  # every 3 steps; the final evaluation at step 6 is not repeated
    val_ops = {int(op) for cells in read_manifest(corpus())["counts"]["val"].values() for op in cells}
    for op in sorted(val_ops):
        for kind in ("verified", "answer"):
            values = metrics[f"eval/{kind}_op{op}"].dropna()
            assert ((values >= 0) & (values <= 1)).all()
