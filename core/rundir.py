"""Run directories: the unit of work and recovery that every training stage (pretrain, midtrain, RL) shares.

A stage writes its config first, checkpoints while it trains, saves the HF model through a temp dir and a rename,
and writes `summary.json` last, so a directory is either finished, resumable or refused, never half-written. The
Lightning callbacks here make that hold across SIGTERM and resumes; they live below every stage so none of them
reaches into another's recipe.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from transformers.utils import logging as hf_logging


class InputError(ValueError):
    """An input of a run (corpus, init checkpoint, run directory) is missing or does not fit; nothing was trained."""


class Stopwatch(Callback):
    """Training wall time summed over every process of a run; its state travels in the checkpoints."""

    def __init__(self):
        self.before, self.since = 0.0, None

    @property
    def total(self) -> float:
        return self.before + (time.perf_counter() - self.since if self.since is not None else 0.0)

    def on_train_start(self, *_) -> None:
        self.since = time.perf_counter()

    def on_train_end(self, *_) -> None:
        self.before, self.since = self.total, None

    def state_dict(self) -> dict:
        return {"wall_s": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.before = state["wall_s"]


class CheckpointOnSigterm(Callback):
    """Save last.ckpt and stop at the next optimizer-step boundary after SIGTERM.

    Lightning records SIGTERM but, in a single process, acts on it only at an epoch end, and a run here is one
    epoch. At a step boundary the weights, optimizer, scheduler and step counter agree, so the checkpoint is exact
    (unlike ModelCheckpoint(save_on_exception=True), which would also save mid-step on any error).

    The handler only records the signal (and passes it on to the ranks Lightning's launcher started): Lightning's
    own handler runs a broadcast inside the signal handler, which in a DDP run deadlocks against the collective
    the interrupted rank was in. The ranks then decide together at the step boundary (any rank signalled: all
    stop), so they all reach the collective save at the same step."""

    def __init__(self, path: Path):
        self.path = path
        self.signalled = False

    def on_train_start(self, trainer: L.Trainer, *_) -> None:
        self.signalled = False

        def record(signum, _frame) -> None:
            launcher = trainer.strategy.launcher
            if launcher is not None and not self.signalled:
                launcher.kill(signum)
            self.signalled = True

        signal.signal(signal.SIGTERM, record)  # Lightning restores its predecessor when fit ends

    def on_train_batch_end(self, trainer: L.Trainer, *_) -> None:
        if trainer.fit_loop._should_accumulate():
            return
        if trainer.strategy.reduce_boolean_decision(self.signalled or trainer.received_sigterm, all=False):
            trainer.save_checkpoint(self.path)
            # Lightning writes this step's metrics only after the on_train_batch_end hooks, and the resumed run
            # starts at the next step: flush them now or the step is missing from metrics.jsonl for good.
            trainer._logger_connector.on_batch_end()
            trainer._logger_connector.update_train_step_metrics()
            raise SIGTERMException()


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def check_run_dir(out: Path, record: dict) -> None:
    """Refuse to resume or skip a run directory that was started with other arguments."""
    path = out / "config.json"
    if path.exists() and json.loads(path.read_text()) != json.loads(json.dumps(record)):
        raise InputError(f"{out}: holds a run with a different config, corpus or init; "
                         "rerun with the same arguments to resume, or choose another --out")


def save_hf_model(model, tokenizer, out: Path, quiet: bool = False) -> Path:
    """Write `out/model` (HF weights + tokenizer) through a temp dir and a rename, so it is never half-written."""
    if quiet:
        hf_logging.disable_progress_bar()
    for stale in out.glob(".model.tmp-*"):  # left by a process killed while saving
        shutil.rmtree(stale)
    tmp = out / f".model.tmp-{os.getpid()}"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    final = out / "model"
    shutil.rmtree(final, ignore_errors=True)  # left by a run killed between this rename and the summary
    tmp.rename(final)
    return final
