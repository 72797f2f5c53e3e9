"""Tokens/s of the Lightning training pipeline against a bare PyTorch loop, same model, same batches.

The Lightning side is the real thing (`pretrain.recipe.Recipe`: streaming DataModule, logger, throughput and
checkpoint callbacks, progress off); the bare loop trains an identically initialised model with the same
optimizer, schedule, clipping, loss, precision and compilation on the same batches, pre-collated in memory, and
nothing else. When the preset trains in bf16 or compiled, a third row runs the Lightning pipeline in fp32 without
compilation, so the gain of those two settings on this machine is measured beside them. All run in one process
with the same thread count; each is timed from the end of its `--warmup`-th step to its last step,
and the best of `--repeats` is kept because noise on a shared machine only ever adds time. Peak RSS is reset
(/proc/self/clear_refs) before each measurement; on a GPU, peak allocated memory and MFU are reported too.

    python -m benchmarks.bench_train --data CORPUS [--preset micro] [--steps 12] [--warmup 2] [--repeats 2]
                                     [--threads 2] [--field value ...]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.throughput import get_available_flops

from core.config import load, parse_overrides
from datagen.tokenizer import load_tokenizer
from pretrain.config import PretrainConfig
from pretrain.data import PackedData
from pretrain.model import build_model
from pretrain.module import CausalLM, token_losses
from pretrain.recipe import Recipe, resolve_precision


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class StepClock(L.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, *_) -> None:
        if not trainer.fit_loop._should_accumulate():
            if trainer.strategy.root_device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())


def lightning_run(cfg: PretrainConfig, data: Path) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Recipe("pretrain", cfg, data, Path(tmp) / "run", progress=False)
        recipe.setup()
        clock = StepClock()
        recipe.trainer.callbacks.append(clock)
        recipe.train()
    return clock.times


def bare_run(cfg: PretrainConfig, data: Path, batches: list[dict], precision: str) -> list[float]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(data / "tokenizer")
    model = build_model(cfg.model, tokenizer, cfg.seed).to(device).train()
    if cfg.compile:
        model.compile()
    opt_config = CausalLM(model, cfg).configure_optimizers()
    optimizer, scheduler = opt_config["optimizer"], opt_config["lr_scheduler"]["scheduler"]
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    times, it = [], iter(batches)
    for _ in range(cfg.steps):
        for _ in range(cfg.accumulate):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(it).items()}
            with autocast:
                loss_all, loss_solution = token_losses(model, batch)
            loss = loss_solution if cfg.loss == "solution" else loss_all
            (loss / cfg.accumulate).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return times


def measure(fn, cfg: PretrainConfig, warmup: int) -> dict:
    reset_peak_rss()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = fn()
    tokens_per_s = (len(times) - 1 - warmup) * cfg.tokens_per_step / (times[-1] - times[warmup])
    result = {"tokens_per_s": tokens_per_s, "step_ms": 1000 * cfg.tokens_per_step / tokens_per_s,
              "rss_mib": peak_rss_mib()}
    if torch.cuda.is_available():
        result["cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="corpus directory")
    parser.add_argument("--preset", default="micro", help="preset whose pretrain section sets model and batch")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="steps excluded from timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args, rest = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    # The bare loop has no in-training evaluation, so the Lightning side runs without it too.
    cfg = load(PretrainConfig, args.preset, "pretrain", {"eval_every": 0, **parse_overrides(rest)})
    cfg.tokens = args.steps * cfg.tokens_per_step
    cfg.checkpoint_every = args.steps + 1  # the final checkpoint falls after the timed window

    tokenizer = load_tokenizer(args.data / "tokenizer")
    stream = PackedData(args.data, tokenizer, cfg).stream(0)
    batches = list(torch.utils.data.DataLoader(stream, batch_size=cfg.batch_size))

    precision = resolve_precision(cfg.precision)
    if precision not in ("bf16-mixed", "32-true"):
        parser.error(f"the bare loop reproduces bf16-mixed and 32-true only, not precision {precision}")
    runs = {"bare PyTorch": lambda: bare_run(cfg, args.data, batches, precision),
            "Lightning pipeline": lambda: lightning_run(cfg, args.data)}
    if precision != "32-true" or cfg.compile:
        baseline = replace(cfg, precision="32-true", compile=False)
        runs["Lightning fp32 eager"] = lambda: lightning_run(baseline, args.data)
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            result = measure(fn, cfg, args.warmup)
            if name not in best or result["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = result

    with torch.device("meta"):
        params = build_model(cfg.model, tokenizer, 0).num_parameters()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = get_available_flops(device, torch.bfloat16) if device.type == "cuda" else None
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"preset {args.preset}: {params / 1e6:.2f}M params, {cfg.batch_size}x{cfg.accumulate}x{cfg.seq_len} "
          f"= {cfg.tokens_per_step} tokens/step, {precision}, compile {cfg.compile}, {args.steps} steps "
          f"({args.warmup} untimed), best of {args.repeats}, {where}")
    header = f"{'pipeline':<21} {'tokens/s':>10} {'step ms':>9} {'peak RSS MiB':>13}"
    header += f" {'peak CUDA MiB':>14} {'MFU':>6}" if peak else ""
    print(header)
    for name, r in best.items():
        line = f"{name:<21} {r['tokens_per_s']:>10,.0f} {r['step_ms']:>9.1f} {r['rss_mib']:>13,.0f}"
        if peak:
            line += f" {r['cuda_mib']:>14,.0f} {6 * params * r['tokens_per_s'] / peak:>6.1%}"
        print(line)
    ratio = best["Lightning pipeline"]["tokens_per_s"] / best["bare PyTorch"]["tokens_per_s"]
    print(f"Lightning / bare = {ratio:.3f} (target >= 0.9)")
    if "Lightning fp32 eager" in best:
        gain = best["Lightning pipeline"]["tokens_per_s"] / best["Lightning fp32 eager"]["tokens_per_s"]
        print(f"{precision}, compile {cfg.compile} / fp32 eager = {gain:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
