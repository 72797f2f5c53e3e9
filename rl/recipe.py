"""An RL run in four steps, the same shape as pre-training: setup / train / save / cleanup.

    RL_DIR/config.json          what was asked; a rerun must match it
    RL_DIR/metrics.jsonl        append-only per-step metrics (reward, pass rate, zero-variance groups, KL, ...)
    RL_DIR/completions.jsonl    sampled completions every `completions_every` steps
    RL_DIR/checkpoints/last.ckpt    Lightning state + RL state (step, filter, reward schedule, ledger)
    RL_DIR/model/               HF directory + tokenizer
    RL_DIR/summary.json         written last (with the compute ledger): the run is finished

The init is any finished run (pre-training or mid-training); its tokenizer must match the prompt corpus's.
"""

from __future__ import annotations

import copy
import itertools
import shutil
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import IterableDataset

from core.config import to_dict
from core.lock import exclusive
from core.parallel import set_threads, without_placement
from core.provenance import provenance
from core.rundir import (
    CheckpointEvery,
    CheckpointOnSigterm,
    InputError,
    StopOnNonFinite,
    Stopwatch,
    check_run_dir,
    save_hf_model,
    write_json,
)
from datagen.corpus import corpus_id, corpus_tokenizer, read_manifest, verify_shards
from pretrain.metrics import JsonlLogger
from pretrain.model import load_init, model_dir_of
from pretrain.recipe import resolve_precision
from rl.config import RLConfig
from rl.data import PromptPool
from rl.module import GRPO


class _Steps(IterableDataset):
    """One placeholder item per RL step: the module draws its own prompts from (seed, step)."""

    def __iter__(self):
        return itertools.count()


class _StepProgressBar(TQDMProgressBar):
    """The step stream is endless, so Lightning cannot size the bar; the run's step cap gives it a total and an ETA
    (a fixed-compute run may stop earlier, when its budget is spent)."""

    def __init__(self, steps: int):
        super().__init__(refresh_rate=1)
        self.steps = steps

    @property
    def total_train_batches(self) -> int:
        return self.steps


class RLRecipe:
    def __init__(self, cfg: RLConfig, data: str | Path, init: str | Path, out: str | Path, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.data, self.init, self.out = Path(data), Path(init), Path(out)
        self.ckpt = self.out / "checkpoints" / "last.ckpt"

    @property
    def finished(self) -> bool:
        return (self.out / "summary.json").exists()

    def setup(self) -> None:
        manifest = read_manifest(self.data)
        self.record = {"stage": "rl", "config": without_placement(to_dict(self.cfg)),
                       "corpus": {"id": corpus_id(manifest), "spec": manifest["spec"]},
                       "init": str(self.init.resolve())}
        check_run_dir(self.out, self.record)
        if self.finished:
            return
        self.threads = set_threads(self.cfg, "rl")
        verify_shards(self.data)
        if manifest["rows"].get(self.cfg.split, 0) == 0:
            raise InputError(f"{self.data}: split {self.cfg.split!r} is empty; build the prompt pool with "
                             f"--splits \"{{{self.cfg.split}: N}}\"")
        self.tokenizer = corpus_tokenizer(self.data, manifest)
        policy = load_init(model_dir_of(self.init), self.tokenizer)
        reference = None
        if self.cfg.kl_coef > 0:
            reference = copy.deepcopy(policy).eval().requires_grad_(False)
        pool = PromptPool(self.data, self.cfg.split, self.tokenizer, manifest["spec"]["rendering"])
        self.out.mkdir(parents=True, exist_ok=True)
        if rank_zero_only.rank == 0:  # every process of a DDP run gets here; one writes
            write_json(self.out / "config.json", self.record)
        self.module = GRPO(policy, reference, self.tokenizer, pool, self.cfg, self.out)
        self.stopwatch = Stopwatch()
        callbacks = [CheckpointEvery(self.ckpt, self.cfg.checkpoint_every, self.cfg.steps,
                                     step_of=lambda trainer, module: module.rl_step),
                     CheckpointOnSigterm(self.ckpt),
                     StopOnNonFinite(), self.stopwatch]
        if self.progress:
            callbacks.append(_StepProgressBar(self.cfg.steps))
        self.trainer = L.Trainer(
            **self.cfg.trainer_args(), precision=resolve_precision(self.cfg.precision), max_epochs=1, max_steps=-1,
            use_distributed_sampler=False,
            logger=JsonlLogger(self.out / "metrics.jsonl"), log_every_n_steps=self.cfg.log_every,
            callbacks=callbacks, enable_progress_bar=self.progress, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=self.out)

    def train(self) -> None:
        resume = self.ckpt if self.ckpt.exists() else None
        if resume is not None and rank_zero_only.rank == 0:
            print(f"rl: resuming {self.out} from {resume}")
        loader = torch.utils.data.DataLoader(_Steps(), batch_size=None)
        self.trainer.fit(self.module, train_dataloaders=loader, ckpt_path=resume)
        if not self.module.finished():
            raise RuntimeError(f"RL stopped at step {self.module.rl_step} of {self.cfg.steps}"
                               + (" short of its compute budget" if self.cfg.compute_budget else ""))

    def save(self) -> dict:
        """The summary (every rank holds the same one; rank 0 alone writes it and the model)."""
        ledger = self.module.ledger.summary()
        summary = {
            "stage": "rl", "params": self.module.policy.num_parameters(), "steps": self.module.rl_step,
            "tokens": ledger["nkl_tokens"], "flops": ledger["flops"], "ledger": ledger,
            "wall_s": round(self.stopwatch.total, 3), "seed": self.cfg.seed,
            "final_reward": self._last_metric("rl/reward"), "final_verified": self._last_metric("rl/verified"),
            "data": {"dir": str(self.data.resolve()), **self.record["corpus"]},
            "init": self.record["init"], "config": self.record["config"],
            "placement": {"devices": self.cfg.devices, "num_nodes": self.cfg.num_nodes, "threads": self.threads,
                          "strategy": type(self.trainer.strategy).__name__},
            **provenance(),
        }
        if not self.trainer.is_global_zero:
            return summary
        save_hf_model(self.module.policy, self.tokenizer, self.out, quiet=not self.progress)
        write_json(self.out / "summary.json", summary)
        return summary

    def _last_metric(self, name: str) -> float | None:
        value = self.trainer.callback_metrics.get(name)
        return None if value is None else float(value)

    def cleanup(self) -> None:
        if not self.cfg.keep_checkpoints and self.trainer.is_global_zero:
            shutil.rmtree(self.ckpt.parent, ignore_errors=True)


def run(cfg: RLConfig, data: str | Path, init: str | Path, out: str | Path, progress: bool = True) -> dict | None:
    """Run (or resume, or skip if finished) one RL run; the summary, or None when it was already finished."""
    with exclusive(out):
        recipe = RLRecipe(cfg, data, init, out, progress)
        recipe.setup()
        if recipe.finished:
            return None
        recipe.train()
        summary = recipe.save()
        recipe.cleanup()
        return summary
