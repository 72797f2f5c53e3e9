"""A next-token training run in four steps: setup / train / save / cleanup (pre-training and mid-training alike).

A run directory is the unit of work and of recovery:

    RUN_DIR/config.json         what was asked (stage, config, corpus identity, init); a rerun must match it
    RUN_DIR/metrics.jsonl       append-only metrics, survives resumes
    RUN_DIR/checkpoints/last.ckpt   Lightning state for exact resume (every `checkpoint_every` steps, and on SIGTERM)
    RUN_DIR/model/              HF `save_pretrained` dir + tokenizer, written to a temp dir and renamed
    RUN_DIR/summary.json        written last: its presence means the run is finished

So the same command is idempotent: finished → nothing to do; interrupted (even by SIGKILL) → resume from
last.ckpt and, because the data position is a function of the step, end with the weights of an uninterrupted
run. Every input is checked in `setup`, before any training, so bad inputs cost seconds, not a run.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import LearningRateMonitor, ThroughputMonitor, TQDMProgressBar

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
from pretrain.config import TrainConfig
from pretrain.data import PackedData, length_stats
from pretrain.evalcb import GreedyEval
from pretrain.metrics import JsonlLogger, read_metrics
from pretrain.model import build_model, load_init, model_dir_of
from pretrain.module import CausalLM

# Both are about the data stream and both are handled by it (pretrain.data): it restarts at the restored step, so
# a mid-epoch resume is exact, and it splits its batches among DataLoader workers itself.
warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch ended")
warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined")


def resolve_precision(precision: str) -> str:
    """Lightning's precision for a config's: "auto" is bf16-mixed on a GPU and fp32 on a CPU (so runs and pinned
    test losses on a CPU do not depend on its instruction set). bf16 asked for on a CPU without native bf16
    matrix units (AMX or AVX512-BF16) still runs, but emulated, so it warns: there fp32 is likely faster."""
    if precision == "auto":
        return "bf16-mixed" if torch.cuda.is_available() else "32-true"
    if (precision.startswith("bf16") and not torch.cuda.is_available()
            and not (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())):
        warnings.warn(f"precision {precision}: this CPU has no native bf16 (AMX or AVX512-BF16), so bf16 is "
                      f"emulated and likely slower than fp32; pass --precision 32-true to train in fp32")
    return precision


class Recipe:
    def __init__(self, stage: str, cfg: TrainConfig, data: str | Path, out: str | Path,
                 init: str | Path | None = None, progress: bool = True):
        self.stage, self.cfg, self.progress = stage, cfg, progress
        self.data, self.out = Path(data), Path(out)
        self.init = None if init is None else Path(init)
        self.ckpt = self.out / "checkpoints" / "last.ckpt"

    @property
    def finished(self) -> bool:
        return (self.out / "summary.json").exists()

    # ---- setup: check every input, then build model, data and trainer --------------------------------------
    def setup(self) -> None:
        manifest = read_manifest(self.data)
        # Where the run executes (devices, nodes, threads) is not part of what it is: it resumes on any placement.
        self.record = {"stage": self.stage, "config": without_placement(to_dict(self.cfg)),
                       "corpus": {"id": corpus_id(manifest), "spec": manifest["spec"]},
                       "init": None if self.init is None else str(self.init.resolve())}
        check_run_dir(self.out, self.record)
        if self.finished:
            return
        self.threads = set_threads(self.cfg, self.stage)
        verify_shards(self.data)
        self.tokenizer = corpus_tokenizer(self.data, manifest)
        self.lengths = length_stats(self.data, self.cfg.split, self.cfg.seq_len)
        if self.lengths["truncated"]:
            warnings.warn(f"{self.lengths['truncated']} of {self.lengths['documents']} documents are longer than "
                          f"seq_len={self.cfg.seq_len} (longest {self.lengths['longest']}) and will be truncated")
        if self.init is None:
            model = build_model(self.cfg.model, self.tokenizer, self.cfg.seed)
        else:
            model = load_init(model_dir_of(self.init), self.tokenizer)
            if self.cfg.seq_len > model.config.max_position_embeddings:
                raise InputError(f"seq_len {self.cfg.seq_len} exceeds the init model's context "
                                 f"{model.config.max_position_embeddings}")

        self.out.mkdir(parents=True, exist_ok=True)
        if rank_zero_only.rank == 0:  # every process of a DDP run gets here; one writes
            write_json(self.out / "config.json", self.record)
        self.module = CausalLM(model, self.cfg)
        self.datamodule = PackedData(self.data, self.tokenizer, self.cfg)
        if manifest["spec"].get("curriculum"):
            sequences = self.cfg.steps * self.cfg.batch_size * self.cfg.accumulate
            epochs = sequences / self.datamodule.stream(0).epoch_sequences()
            if abs(epochs - 1) > 0.05:
                warnings.warn(f"{self.data}: a curriculum corpus is meant to be read once, and this run reads "
                              f"{epochs:.2f} epochs of it (its hardest ops come last; size its train split to the budget)")
        self.stopwatch = Stopwatch()
        self.trainer = self._trainer()

    def _trainer(self) -> L.Trainer:
        cfg = self.cfg
        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")
        precision = resolve_precision(cfg.precision)
        callbacks = [
            CheckpointEvery(self.ckpt, cfg.checkpoint_every, cfg.steps),
            CheckpointOnSigterm(self.ckpt),
            StopOnNonFinite(),
            LearningRateMonitor(logging_interval="step"),
            ThroughputMonitor(batch_size_fn=lambda b: b["input_ids"].shape[0],
                              length_fn=lambda b: b["input_ids"].numel(),
                              window_size=max(2, cfg.log_every * cfg.rank_batch()[1])),
            self.stopwatch,
        ]
        if cfg.eval_every:
            callbacks.append(GreedyEval(
                cfg.eval_data or self.data, self.tokenizer, split=cfg.eval_split, per_op=cfg.eval_problems,
                max_new_tokens=cfg.eval_max_new_tokens, every=cfg.eval_every,
                ladder={name: {"lo": r.lo, "hi": r.hi} for name, r in cfg.eval_ladder.items()}))
        if self.progress:
            callbacks.append(TQDMProgressBar(refresh_rate=max(1, cfg.log_every // 2)))
        return L.Trainer(
            **cfg.trainer_args(), precision=precision, max_steps=cfg.steps, max_epochs=1,
            accumulate_grad_batches=cfg.rank_batch()[1], gradient_clip_val=cfg.grad_clip or None,
            use_distributed_sampler=False,  # the stream splits itself by rank (pretrain.data)
            logger=JsonlLogger(self.out / "metrics.jsonl"), log_every_n_steps=cfg.log_every, callbacks=callbacks,
            enable_progress_bar=self.progress, enable_model_summary=False, limit_val_batches=0,
            num_sanity_val_steps=0, default_root_dir=self.out,
        )

    # ---- train: fresh or resumed ---------------------------------------------------------------------------
    def train(self) -> None:
        resume = self.ckpt if self.ckpt.exists() else None
        if resume is not None and rank_zero_only.rank == 0:
            print(f"{self.stage}: resuming {self.out} from {resume}")
        self.trainer.fit(self.module, datamodule=self.datamodule, ckpt_path=resume)
        if self.trainer.global_step != self.cfg.steps:  # never mark a partial run finished
            raise RuntimeError(f"training stopped at step {self.trainer.global_step} of {self.cfg.steps}")

    # ---- save: the HF model (atomically), then the summary that marks the run finished -----------------------
    def save(self) -> dict:
        """The summary (every rank computes it; rank 0 alone writes the model and the summary)."""
        cfg = self.cfg
        params = self.module.model.num_parameters()
        tokens = cfg.steps * cfg.tokens_per_step
        summary = {
            "stage": self.stage, "params": params, "tokens": tokens, "flops": 6 * params * tokens,
            "steps": cfg.steps, "wall_s": round(self.stopwatch.total, 3),
            "tokens_per_s": round(tokens / max(self.stopwatch.total, 1e-9), 1), "seed": cfg.seed,
            "final_loss": self._final_loss(),
            "data": {"dir": str(self.data.resolve()), **self.record["corpus"], **self.lengths},
            "init": self.record["init"], "config": self.record["config"],
            "placement": {"devices": cfg.devices, "num_nodes": cfg.num_nodes, "threads": self.threads,
                          "strategy": type(self.trainer.strategy).__name__},
            **provenance(),
        }
        if not self.trainer.is_global_zero:
            return summary
        save_hf_model(self.module.model, self.tokenizer, self.out, quiet=not self.progress)
        write_json(self.out / "summary.json", summary)
        return summary

    def _final_loss(self) -> float | None:
        # The last step's loss if this process trained it (it may not have been logged), else the last one logged.
        if "train/loss" in self.trainer.callback_metrics:
            return float(self.trainer.callback_metrics["train/loss"])
        logged = read_metrics(self.out).get("train/loss")
        return None if logged is None or logged.dropna().empty else float(logged.dropna().iloc[-1])

    def cleanup(self) -> None:
        if not self.cfg.keep_checkpoints and self.trainer.is_global_zero:
            shutil.rmtree(self.ckpt.parent, ignore_errors=True)


def run(stage: str, cfg: TrainConfig, data: str | Path, out: str | Path, init: str | Path | None = None,
        progress: bool = True) -> dict | None:
    """Train (or resume, or skip if finished) one run; the summary, or None when it was already finished."""
    with exclusive(out):
        recipe = Recipe(stage, cfg, data, out, init, progress)
        recipe.setup()
        if recipe.finished:
            return None
        recipe.train()
        summary = recipe.save()
        recipe.cleanup()
        return summary
