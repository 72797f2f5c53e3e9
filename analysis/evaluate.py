"""`lab eval --model MODEL_DIR --data CORPUS --out EVAL_DIR`: sample a checkpoint on held-out problems and
score every completion with the process verifier.

- Problems are the first `problems_per_op` of each (context, op) cell in id order. Ids are content hashes, so
  that order is pseudo-random yet the same for every checkpoint evaluated on a corpus: arms and base always
  share their problems, which is what paired confidence intervals need, and a smaller set is a subset of a
  larger one. The seed drives sampling and the bootstrap, never the choice of problems.
- Sampled and greedy completions are scored by one function, `score`, which sees nothing but token ids and
  the gold graph; the tests feed it gold and corrupted completions, so the scoring path is checked without a
  stand-in model.
- Each batch of prompts draws from its own generator, seeded by (seed, pass, batch number): a rerun with the
  same seed and batch_prompts reproduces every sample (on a given device and thread count), however many
  processes share the work.
- Data parallel (`--devices N --num_nodes M`, Lightning Fabric): rank r samples and scores every N-th batch,
  rank 0 gathers the scored samples, puts them back in batch order and writes the one table, so N ranks give
  the table one process gives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from lightning.fabric.utilities.rank_zero import rank_zero_only
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from analysis.config import EvalConfig, Ladder, load_eval_config
from analysis.evaldir import STEP_COUNTERS, EvalError, read_summary, write_eval
from core.config import ConfigError, config_help, help_formatter, parse_overrides, to_dict
from core.lock import LockError, exclusive
from core.parallel import set_threads, without_placement
from core.provenance import provenance
from core.rundir import InputError, check_stage
from core.sampler import Rollouts, sample
from datagen.corpus import CorpusError, corpus_tokenizer, load_gold, read_manifest, read_split
from datagen.verify import verify
from pretrain.model import check_same_vocabulary, model_dir_of

PROMPT_END = "<solution>"
STOP = "</answer>"
PROBLEM_COLUMNS = ["id", "context", "op", "arith_ops", "text", "graph"]


def prompt_of(text: str) -> str:
    """The prompt of a corpus sequence: everything up to and including `<solution>`."""
    return text[: text.index(PROMPT_END) + len(PROMPT_END)]


def select_problems(rows: pd.DataFrame, ladder: Ladder, per_op: int) -> pd.DataFrame:
    """The first `per_op` distinct problems by id of every (context, op) cell whose op lies on the ladder."""
    on_ladder = rows[[ladder.covers(int(op)) for op in rows["op"]]]
    # A split may repeat a short problem verbatim (same id); counting it twice would double its weight.
    ordered = on_ladder.drop_duplicates("id").sort_values(["context", "op", "id"], kind="stable")
    return ordered.groupby(["context", "op"], sort=False).head(per_op).reset_index(drop=True)


def score(problems: pd.DataFrame, rollouts: Rollouts, tokenizer, style: str) -> pd.DataFrame:
    """Verify every completion against its problem's gold graph; rows of `rollouts` are prompt-major.

    Returns the per-sample columns that depend on the completion alone (no checkpoint or mode).
    """
    if len(rollouts.tokens) != len(problems) * rollouts.k:
        raise ValueError(f"{len(rollouts.tokens)} completions for {len(problems)} problems × k={rollouts.k}")
    texts = tokenizer.batch_decode(rollouts.tokens, skip_special_tokens=False)
    records = []
    for i, problem in enumerate(problems.itertuples(index=False)):
        gold, names = load_gold({"graph": problem.graph})
        for j in range(rollouts.k):
            row = i * rollouts.k + j
            verdict = verify(texts[row], gold, names, style)
            records.append(dict(context=problem.context, op=int(problem.op), arith_ops=int(problem.arith_ops),
                                problem_id=problem.id, sample_idx=j,
                                answer_correct=verdict.answer_correct, verified=verdict.verified,
                                process_acc=verdict.process_acc, error=verdict.error,
                                **{name: getattr(verdict, name) for name in STEP_COUNTERS},
                                length=len(rollouts.tokens[row]), stopped=bool(rollouts.stopped[row]),
                                completion=texts[row]))
    return pd.DataFrame.from_records(records)


def checkpoint_name(model_dir: Path) -> str:
    """A run's `model/` is named after its run directory; any other model directory after itself."""
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


def load_inputs(model_path: str | Path, data: str | Path):
    """(model_dir, manifest, tokenizer) after checking the model and corpus exist and share a vocabulary."""
    try:
        model_dir = model_dir_of(model_path)
        manifest = read_manifest(data)
        tokenizer = corpus_tokenizer(data, manifest)
        check_same_vocabulary(model_dir, tokenizer)
    except (InputError, CorpusError, FileNotFoundError) as err:
        raise EvalError(str(err)) from None
    return model_dir, manifest, tokenizer


def load_model(model_dir: Path, progress: bool = True, device: torch.device | None = None):
    """fp32 on CPU; bf16 on a GPU, where it halves the KV cache that bounds the batch."""
    if not progress:
        hf_logging.disable_progress_bar()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # truncated or corrupt weights
        raise EvalError(f"{model_dir}: cannot load checkpoint weights ({err})") from None
    return model.to(device).eval()


def evaluate(model_path: str | Path, data: str | Path, out: str | Path, cfg: EvalConfig, ladder: Ladder,
             name: str | None = None, progress: bool = True) -> dict | None:
    """Evaluate one checkpoint into `out`; its summary, or None when `out` already holds this evaluation."""
    with exclusive(out):
        return _evaluate(model_path, data, out, cfg, ladder, name, progress)


def _evaluate(model_path: str | Path, data: str | Path, out: str | Path, cfg: EvalConfig, ladder: Ladder,
              name: str | None, progress: bool) -> dict | None:
    started = time.time()
    model_dir, manifest, tokenizer = load_inputs(model_path, data)
    name = name or checkpoint_name(model_dir)
    # Through JSON, so it compares equal to the copy a finished evaluation stored in its summary.
    request = json.loads(json.dumps({"checkpoint": name, "model": str(model_dir.resolve()),
                                     "data": str(Path(data).resolve()), "config": without_placement(to_dict(cfg)),
                                     "ladder": ladder.splits()}))
    out = Path(out)
    if out.exists():
        try:
            check_stage(out, "eval")
        except InputError as err:
            raise EvalError(str(err)) from None
        if read_summary(out)["request"] != request:
            raise EvalError(f"{out}: holds an evaluation with a different request; choose another --out")
        return None

    set_threads(cfg, "eval")
    fabric = L.Fabric(**cfg.trainer_args())
    fabric.launch()  # the other ranks re-run this command and join here
    progress = progress and fabric.is_global_zero
    problems = _problems(data, cfg, ladder)
    prompts = tokenizer([prompt_of(text) for text in problems["text"]], add_special_tokens=False)["input_ids"]
    model = load_model(model_dir, progress, fabric.device)
    room = model.config.max_position_embeddings - max(map(len, prompts))
    if room < 1:
        raise EvalError(f"{model_dir}: the longest prompt ({max(map(len, prompts))} tokens) fills the model's "
                        f"context of {model.config.max_position_embeddings}")
    max_new_tokens = min(cfg.max_new_tokens, room)
    style = manifest["spec"]["rendering"]

    sampling_started = time.time()
    samples = generate_and_score(model, tokenizer, problems, prompts, cfg, max_new_tokens, style,
                                 desc=f"eval {name}", progress=progress,
                                 rank=fabric.global_rank, world=fabric.world_size)
    if fabric.world_size > 1:
        gathered = [None] * fabric.world_size if fabric.is_global_zero else None
        dist.gather_object(samples, gathered, dst=0)
        if not fabric.is_global_zero:
            return None
        samples = pd.concat(gathered, ignore_index=True).sort_values(["pass", "batch"], kind="stable")
    samples = samples.drop(columns=["pass", "batch"]).reset_index(drop=True).assign(checkpoint=name)
    sampling_s = time.time() - sampling_started

    summary = {
        "stage": "eval", "checkpoint": name, "request": request, "seeds": {"sampling": cfg.seed, "bootstrap": cfg.seed},
        "data": {"dir": request["data"], "split": cfg.split, "rendering": style,
                 "tokenizer_fingerprint": manifest["tokenizer"]["fingerprint"]},
        "model": {"dir": request["model"], "params": model.num_parameters(), "dtype": str(model.dtype),
                  "device": str(model.device), "processes": fabric.world_size},
        "problems": _cell_counts(problems),
        "max_new_tokens": max_new_tokens,
        # Wall time covers loading, sampling and scoring; the bootstrap in write_eval adds seconds at most.
        "provenance": provenance(wall_s=round(time.time() - started, 3),
                                 throughput=_throughput(samples, sampling_s)),
    }
    return write_eval(out, samples, summary, n_boot=cfg.n_boot, level=cfg.level, seed=cfg.seed)


def generate_and_score(model, tokenizer, problems: pd.DataFrame, prompts: list[list[int]], cfg: EvalConfig,
                       max_new_tokens: int, style: str, desc: str = "eval", progress: bool = True,
                       rank: int = 0, world: int = 1) -> pd.DataFrame:
    """`cfg.samples` sampled completions per problem, then (if `cfg.greedy`) one greedy one, all scored.

    Rank `rank` of `world` does batches rank, rank + world, ...; the `pass` and `batch` columns give each row's
    place in the single-process order."""
    passes = [("sampled", cfg.samples, cfg.temperature, cfg.batch_prompts)]
    if cfg.greedy:
        passes.append(("greedy", 1, 0.0, cfg.greedy_batch_prompts))
    stop_token_id = tokenizer.convert_tokens_to_ids(STOP)
    frames = []
    with tqdm(total=len(problems) * (cfg.samples + cfg.greedy) // world, unit="samples", desc=desc,
              disable=not progress) as bar:
        for number, (mode, k, temperature, batch) in enumerate(passes):
            for index, start in enumerate(range(0, len(problems), batch)):
                if index % world != rank:
                    continue
                seed = int(np.random.SeedSequence([cfg.seed, number, index]).generate_state(1)[0])
                generator = torch.Generator(model.device).manual_seed(seed)
                rollouts = sample(model, prompts[start:start + batch], k=k, max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_p=cfg.top_p, stop_token_id=stop_token_id,
                                  pad_token_id=tokenizer.pad_token_id, generator=generator)
                frames.append(score(problems.iloc[start:start + batch], rollouts, tokenizer, style)
                              .assign(mode=mode, **{"pass": number, "batch": index}))
                bar.update(len(rollouts.tokens))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["pass", "batch"])


def _problems(data: str | Path, cfg: EvalConfig, ladder: Ladder) -> pd.DataFrame:
    try:
        rows = read_split(data, cfg.split, columns=PROBLEM_COLUMNS)
    except CorpusError as err:
        raise EvalError(str(err)) from None
    problems = select_problems(rows, ladder, cfg.problems_per_op)
    if problems.empty:
        raise EvalError(f"{data}: split {cfg.split!r} has no problems with ops on the ladder {ladder.splits()} "
                        f"(its ops: {sorted(rows['op'].unique().tolist())})")
    return problems


def _cell_counts(problems: pd.DataFrame) -> dict[str, dict[str, int]]:
    """context -> op -> problems evaluated: fewer than problems_per_op where the corpus ran short."""
    counts: dict[str, dict[str, int]] = {}
    for (context, op), n in problems.groupby(["context", "op"]).size().items():
        counts.setdefault(context, {})[str(op)] = int(n)
    return counts


def _throughput(samples: pd.DataFrame, seconds: float) -> dict:
    tokens = int(samples["length"].sum())
    return {"samples": len(samples), "tokens": tokens, "sampling_s": round(seconds, 3),
            "samples_per_s": round(len(samples) / max(seconds, 1e-9), 2),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            "stopped_share": round(float(samples["stopped"].mean()), 4)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=help_formatter,
                                     epilog=config_help(argv, [("eval", EvalConfig), ("ladder", Ladder)]))
    parser.add_argument("--model", required=True, type=Path, help="HF model directory, or a run directory")
    parser.add_argument("--data", required=True, type=Path, help="corpus directory (lab datagen --out)")
    parser.add_argument("--out", required=True, type=Path, help="eval directory to create")
    parser.add_argument("--preset", default="smoke", help="preset name or YAML path (sections 'eval', 'ladder')")
    parser.add_argument("--ladder-file", type=Path, help="a ladder.yaml (lab calibrate) in place of the preset's ladder")
    parser.add_argument("--name", help="checkpoint name in the tables (default: the run directory's name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    try:
        cfg, ladder = load_eval_config(args.preset, parse_overrides(rest), args.ladder_file)
        summary = evaluate(args.model, args.data, args.out, cfg, ladder, name=args.name, progress=not args.quiet)
    except (ConfigError, EvalError, InputError, LockError) as err:
        print(f"lab eval: error: {err}", file=sys.stderr)
        return 2
    if rank_zero_only.rank != 0:  # the other ranks of a data-parallel evaluation; rank 0 reports
        return 0
    if summary is None:
        print(f"{args.out}: already holds this evaluation; nothing to do")
        return 0
    throughput = summary["provenance"]["throughput"]
    print(f"eval {summary['checkpoint']}: {throughput['samples']:,} samples in {throughput['sampling_s']:.1f}s "
          f"({throughput['samples_per_s']:,.1f} samples/s, {throughput['tokens_per_s']:,.0f} tokens/s)")
    for context, splits in summary["headline"].items():
        for split, numbers in splits.items():
            shown = ", ".join(f"{key} {100 * value:.1f}%" for key, value in numbers.items() if key != "n_problems")
            print(f"  {context} {split} ({numbers['n_problems']} problems): {shown}")
    print(f"wrote {args.out}")
    return 0
