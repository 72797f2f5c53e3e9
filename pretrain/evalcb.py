"""In-training greedy evaluation: process-verified and answer accuracy per op on fixed held-out problems.

A pre-training run's loss says little about whether the model can *solve* problems (the micro pilot's loss
plateaued while accuracy sat at chance), so `GreedyEval` decodes a fixed set of held-out problems greedily
every `eval_every` optimizer steps and grades each completion with `datagen.verify.verify`, the same
function RL rewards and pass@k use. It logs, at the current step, to the run's metrics.jsonl:

    eval/verified_op{N}, eval/answer_op{N}        per op present in the eval set
    eval/verified_{split}, eval/answer_{split}    mean over the ops of each ladder split (ID / edge / hard)
    eval/seconds                                  wall time of this evaluation (it counts in the run's budget)

The problems are the first `eval_problems` rows per op of split `eval_split` of `eval_data` (a separate eval
corpus, so ID *and* edge/hard ops can be held out while training sees only ID ops), or of the training
corpus when `eval_data` is None. Held-out by construction: datagen assigns graphs to splits by hash.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from core.sampler import sample
from datagen.corpus import load_gold, read_manifest, read_split
from datagen.verify import verify

ANSWER_END = "</answer>"


def load_problems(corpus: str | Path, split: str, per_op: int) -> list[dict]:
    """The first `per_op` rows of each op (in corpus order): prompt text, gold problem, names, op."""
    corpus = Path(corpus)
    style = read_manifest(corpus)["spec"]["rendering"]
    df = read_split(corpus, split, columns=["op", "text", "graph"])
    rows = []
    for op, group in sorted(df.groupby("op"), key=lambda kv: kv[0]):
        for _, row in group.head(per_op).iterrows():
            problem, names = load_gold(row)
            prompt = row["text"][: row["text"].index("<solution>") + len("<solution>")]
            rows.append({"op": int(op), "prompt": prompt, "problem": problem, "names": names, "style": style,
                         "text": row["text"]})
    return rows


def score(completion: str, row: dict) -> tuple[bool, bool]:
    """(process-verified, answer correct) of a completion after the prompt; the one grading function used."""
    verdict = verify(completion, row["problem"], row["names"], row["style"])
    return verdict.verified, verdict.answer_correct


def split_of_op(op: int, ladder: dict[str, dict] | None) -> str | None:
    for name, r in (ladder or {}).items():
        if r["lo"] <= op <= r["hi"]:
            return name
    return None


@torch.no_grad()
def greedy_eval(model, tokenizer, rows: list[dict], max_new_tokens: int, ladder: dict | None = None,
                batch: int = 64) -> dict[str, float]:
    """Greedy-decode every row's prompt and return the eval/* metrics (per op and per ladder split)."""
    was_training = model.training
    model.eval()
    stop = tokenizer.convert_tokens_to_ids(ANSWER_END)
    results: dict[int, list[tuple[bool, bool]]] = {}
    # Batch prompts of one op together: similar lengths keep left-padding and decode length small.
    by_op: dict[int, list[dict]] = {}
    for row in rows:
        by_op.setdefault(row["op"], []).append(row)
    try:
        for op, op_rows in by_op.items():
            for i in range(0, len(op_rows), batch):
                chunk = op_rows[i : i + batch]
                ids = tokenizer([r["prompt"] for r in chunk], add_special_tokens=False)["input_ids"]
                out = sample(model, ids, k=1, max_new_tokens=max_new_tokens, temperature=0.0,
                             stop_token_id=stop, pad_token_id=tokenizer.pad_token_id)
                texts = tokenizer.batch_decode(out.tokens, skip_special_tokens=False)
                results.setdefault(op, []).extend(score(t, r) for t, r in zip(texts, chunk))
    finally:
        model.train(was_training)
    metrics: dict[str, float] = {}
    per_split: dict[str, list[tuple[float, float]]] = {}
    for op, graded in sorted(results.items()):
        v = sum(g[0] for g in graded) / len(graded)
        a = sum(g[1] for g in graded) / len(graded)
        metrics[f"eval/verified_op{op}"], metrics[f"eval/answer_op{op}"] = v, a
        name = split_of_op(op, ladder)
        if name is not None:
            per_split.setdefault(name, []).append((v, a))
    for name, values in per_split.items():
        metrics[f"eval/verified_{name}"] = sum(v for v, _ in values) / len(values)
        metrics[f"eval/answer_{name}"] = sum(a for _, a in values) / len(values)
    return metrics


class GreedyEval(Callback):
    """Every `every` optimizer steps (and after the last one), log greedy eval/* metrics to the run's logger."""

    def __init__(self, corpus: str | Path, tokenizer, split: str = "val", per_op: int = 32,
                 max_new_tokens: int = 160, every: int = 100, ladder: dict | None = None):
        self.tokenizer, self.every, self.max_new_tokens, self.ladder = tokenizer, every, max_new_tokens, ladder
        self.rows = load_problems(corpus, split, per_op)
        if not self.rows:
            raise ValueError(f"{corpus}: no {split} problems to evaluate on")
        self.last_step = -1

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # one rank decodes; the others wait at the next gradient all-reduce
            return
        step = trainer.global_step
        if step == self.last_step:
            return
        self.last_step = step
        started = time.perf_counter()
        metrics = greedy_eval(pl_module.model, self.tokenizer, self.rows, self.max_new_tokens, self.ladder)
        metrics["eval/seconds"] = time.perf_counter() - started
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_) -> None:
        step = trainer.global_step
        if self.every > 0 and step > 0 and step % self.every == 0 and not trainer.fit_loop._should_accumulate():
            self._run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run(trainer, pl_module)
