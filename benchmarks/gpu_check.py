"""One-GPU check of every stage at `small` scale, in minutes, written to `results/gpu.md` (run `gpu_check.sh`).

What a first session on a GPU needs to know, measured by the real code paths (no stand-ins): pre-training
tokens/s and MFU in bf16, the rollout sampler against HF `generate`, evaluation throughput, the time of one RL
step, and peak GPU memory of each. Each part is sized to finish in about a minute on one current GPU, so the
whole check stays within 8 minutes; `--preset smoke` runs the same code on a CPU in seconds (that is how it is
tested without a GPU). Models are trained here from scratch for a few dozen steps: the figures are speeds,
not accuracies.

MFU uses the PaLM-appendix FLOPs per trained token, 6·N + 12·L·d·T (N all parameters, L layers, d width, T the
sequence length: the attention scores that 6·N leaves out), against the device's peak dense bf16 FLOPs
(Lightning's table of devices).

    python -m benchmarks.gpu_check [--preset small] [--out results/gpu.md] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.throughput import get_available_flops

from analysis.config import load_eval_config
from analysis.evaluate import evaluate, prompt_of
from core.config import load
from core.provenance import provenance
from core.sampler import sample
from datagen.corpus import build_corpus, corpus_tokenizer, read_manifest, read_split
from datagen.spec import CorpusSpec
from pretrain.config import PretrainConfig
from pretrain.model import load_init
from pretrain.recipe import Recipe
from rl.config import RLConfig
from rl.recipe import RLRecipe

# Per preset: corpus size and the shrunken length of each measured part.
SIZES = {
    "small": {"train_tokens": 4_000_000, "workers": 8, "steps": 40, "warmup": 10, "eval_problems": 4,
              "eval_samples": 32, "rl_steps": 2, "sampler_prompts": 32, "sampler_k": 8, "new_tokens": 256},
    "smoke": {"train_tokens": 40_000, "workers": 1, "steps": 6, "warmup": 2, "eval_problems": 1,
              "eval_samples": 2, "rl_steps": 2, "sampler_prompts": 2, "sampler_k": 2, "new_tokens": 16},
}


class StepClock(L.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, *_) -> None:
        if not trainer.fit_loop._should_accumulate():
            _sync()
            self.times.append(time.perf_counter())


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_mib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def build(preset: str, work: Path, size: dict) -> Path:
    data = load(CorpusSpec, preset, "datagen", {"train_tokens": size["train_tokens"], "workers": size["workers"],
                                               "splits": {"val": 100, "test": 200, "rl": 200}})
    out = work / "corpus"
    build_corpus(data, out, progress=False)
    return out


def pretrain(preset: str, data: Path, work: Path, size: dict) -> tuple[dict, Path]:
    cfg = load(PretrainConfig, preset, "pretrain", {"eval_every": 0, "num_workers": 2})
    cfg.tokens = size["steps"] * cfg.tokens_per_step
    cfg.checkpoint_every = size["steps"] + 1
    cfg.compile = cfg.compile and torch.cuda.is_available()
    recipe = Recipe("pretrain", cfg, data, work / "pretrain", progress=False)
    recipe.setup()
    clock = StepClock()
    recipe.trainer.callbacks.append(clock)
    _reset_peak()
    recipe.train()
    recipe.save()
    timed = clock.times[size["warmup"]:]
    tokens_per_s = (len(timed) - 1) * cfg.tokens_per_step / (timed[-1] - timed[0])
    params = recipe.module.model.num_parameters()
    m = cfg.model
    flops_per_token = 6 * params + 12 * m.layers * m.hidden * cfg.seq_len
    device = recipe.trainer.strategy.root_device
    peak = get_available_flops(device, torch.bfloat16) if device.type == "cuda" else None
    return {"params": params, "precision": recipe.trainer.precision, "compile": cfg.compile,
            "tokens_per_step": cfg.tokens_per_step, "timed_steps": len(timed) - 1, "tokens_per_s": tokens_per_s,
            "flops_per_token": flops_per_token, "mfu": flops_per_token * tokens_per_s / peak if peak else None,
            "peak_mib": _peak_mib()}, work / "pretrain"


def sampler_vs_generate(run: Path, data: Path, size: dict) -> dict:
    tokenizer = corpus_tokenizer(data, read_manifest(data))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_init(run / "model", tokenizer).to(device, dtype).eval()
    texts = read_split(data, "test", columns=["text"])["text"].tolist()[:size["sampler_prompts"]]
    prompts = tokenizer([prompt_of(t) for t in texts], add_special_tokens=False)["input_ids"]
    k, new = size["sampler_k"], size["new_tokens"]
    results = {}
    for repeat in range(2):  # the first round compiles kernels and warms caches; the second is kept
        _reset_peak()
        _sync()
        start = time.perf_counter()
        generator = torch.Generator(device).manual_seed(0)
        ours = sum(sample(model, prompts, k, new, 1.0, None, tokenizer.pad_token_id, generator).lengths)
        _sync()
        results["ours"] = {"tokens": ours, "s": time.perf_counter() - start, "peak_mib": _peak_mib()}
        width = max(map(len, prompts))
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        _reset_peak()
        _sync()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, num_return_sequences=k, max_new_tokens=new,
                                 min_new_tokens=new, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 pad_token_id=pad, eos_token_id=None)
        _sync()
        results["hf"] = {"tokens": out[:, width:].numel(), "s": time.perf_counter() - start, "peak_mib": _peak_mib()}
    for r in results.values():
        r["tokens_per_s"] = r["tokens"] / r["s"]
    return {"prompts": len(prompts), "k": k, "new_tokens": new, **results}


def evaluation(preset: str, run: Path, data: Path, work: Path, size: dict) -> dict:
    cfg, ladder = load_eval_config(preset, {"problems_per_op": size["eval_problems"],
                                            "samples": size["eval_samples"], "n_boot": 100})
    _reset_peak()
    summary = evaluate(run, data, work / "eval", cfg, ladder, progress=False)
    return {**summary["provenance"]["throughput"], "max_new_tokens": summary["max_new_tokens"],
            "problems": sum(sum(ops.values()) for ops in summary["problems"].values()), "peak_mib": _peak_mib()}


def rl_step(preset: str, run: Path, data: Path, work: Path, size: dict) -> dict:
    cfg = load(RLConfig, preset, "rl", {"steps": size["rl_steps"], "checkpoint_every": size["rl_steps"] + 1,
                                        "completions_every": 0})
    recipe = RLRecipe(cfg, data, run, work / "rl", progress=False)
    recipe.setup()
    clock = StepClock()
    recipe.trainer.callbacks.append(clock)
    _reset_peak()
    start = time.perf_counter()
    recipe.train()
    steps = [b - a for a, b in zip([start, *clock.times], clock.times)]
    return {"prompts": cfg.prompts_per_step, "rollouts": cfg.rollouts, "max_new_tokens": cfg.max_new_tokens,
            "step_s": steps, "precision": recipe.trainer.precision, "peak_mib": _peak_mib()}


def report(preset: str, parts: dict, wall: float, command: str) -> str:
    def mib(x):
        return "n/a (CPU)" if x is None else f"{x:,.0f} MiB"

    rows = []
    if p := parts.get("pretrain"):
        mfu = "n/a (no peak FLOPs known for this device)" if p["mfu"] is None else f"{p['mfu']:.1%}"
        rows.append(f"| pre-training ({p['params'] / 1e6:.1f}M params, {p['precision']}, compile {p['compile']}, "
                    f"{p['tokens_per_step']:,} tokens/step, {p['timed_steps']} timed steps) | "
                    f"{p['tokens_per_s']:,.0f} tokens/s, MFU {mfu} | {mib(p['peak_mib'])} |")
    if s := parts.get("sampler"):
        rows.append(f"| sampler, ours ({s['prompts']} prompts x {s['k']}, {s['new_tokens']} new tokens) | "
                    f"{s['ours']['tokens_per_s']:,.0f} tokens/s | {mib(s['ours']['peak_mib'])} |")
        rows.append(f"| sampler, HF `generate` (same) | {s['hf']['tokens_per_s']:,.0f} tokens/s (ours / HF = "
                    f"{s['ours']['tokens_per_s'] / s['hf']['tokens_per_s']:.2f}) | {mib(s['hf']['peak_mib'])} |")
    if e := parts.get("eval"):
        rows.append(f"| evaluation ({e['problems']} problems, {e['samples']:,} samples, <= {e['max_new_tokens']} "
                    f"new tokens) | {e['tokens_per_s']:,.0f} tokens/s, {e['samples_per_s']:,.1f} samples/s | "
                    f"{mib(e['peak_mib'])} |")
    if r := parts.get("rl"):
        rows.append(f"| RL steps ({r['prompts']} prompts x {r['rollouts']}, <= {r['max_new_tokens']} new tokens, "
                    f"{r['precision']}) | " + ", ".join(f"{t:.1f} s" for t in r["step_s"])
                    + f" | {mib(r['peak_mib'])} |")
    missing = [name for name in PARTS if name not in parts]
    prov = provenance()
    where = prov["hardware"].get("gpu") or f"CPU ({prov['hardware']['cpu']})"
    lines = [
        f"# GPU check: `{preset}` preset on {where}",
        "",
        f"Command `{command}`, commit {prov['commit']}, torch {prov['hardware'].get('torch')}, "
        f"finished {prov['finished_at']}, wall {wall:.0f} s. Models trained here for a few dozen steps: speeds only.",
        *([f"**Not reached (stopped or failed before): {', '.join(missing)}.**"] if missing else []),
        "",
        "| part | figure | peak GPU memory |",
        "|---|---|---|",
        *rows,
        "",
        "MFU: FLOPs per trained token = 6·N + 12·L·d·T (N parameters, L layers, d width, T sequence length), "
        "over the device's peak dense bf16 FLOPs.",
    ]
    return "\n".join(lines) + "\n\n```json\n" + json.dumps(parts, indent=1, default=float) + "\n```\n"


PARTS = ("pretrain", "sampler", "eval", "rl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", choices=sorted(SIZES))
    parser.add_argument("--out", type=Path, default=Path("results/gpu.md"))
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one, removed)")
    args = parser.parse_args()
    if args.preset == "small" and not torch.cuda.is_available():
        print("gpu_check: no GPU visible to torch (torch.cuda.is_available() is False); "
              "run --preset smoke to exercise the code on a CPU", file=sys.stderr)
        return 2
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    size = SIZES[args.preset]
    command = "benchmarks/gpu_check.sh" + ("" if args.preset == "small" else f" --preset {args.preset}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    parts: dict = {}

    def write() -> None:  # after every part, so a timeout still leaves what was measured
        args.out.write_text(report(args.preset, parts, time.perf_counter() - started, command))

    try:
        data = build(args.preset, work, size)
        print(f"corpus built in {time.perf_counter() - started:.0f} s", flush=True)
        parts["pretrain"], run = pretrain(args.preset, data, work, size)
        write()
        parts["sampler"] = sampler_vs_generate(run, data, size)
        write()
        parts["eval"] = evaluation(args.preset, run, data, work, size)
        write()
        parts["rl"] = rl_step(args.preset, run, data, work, size)
        write()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(args.out.read_text())
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
