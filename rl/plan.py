"""`lab plan-budget --preset NAME --total-tokens T [--betas 0,0.2,0.5,0.8,1] [--data CORPUS]`.

Prints the mid-training and RL arms of a fixed compute budget, priced by `rl.budget` (the same pricing the RL
ledger uses). Without `--data` an RL sample costs the paper's (5/3)·2,048 token-equivalents (L mode `paper`);
with `--data` its prompt and completion lengths are measured from the corpus's RL split (prompt + gold
solution) and priced pass by pass (L mode `measured`).
"""

from __future__ import annotations

import argparse
import math
import sys

from core.config import ConfigError, load
from datagen.corpus import CorpusError, corpus_tokenizer, read_split
from midtrain.config import MidtrainConfig
from rl.budget import plan_budget, pricing_of, rl_step_cost
from rl.config import RLConfig


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab plan-budget", description=__doc__)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--total-tokens", type=float, required=True, help="budget in token-equivalents (6P FLOPs each)")
    parser.add_argument("--betas", default="0,0.2,0.5,0.8,1", help="RL shares of the budget, comma-separated")
    parser.add_argument("--data", help="corpus whose RL split gives the mean sample length")
    args = parser.parse_args(argv)
    try:
        if not (math.isfinite(args.total_tokens) and args.total_tokens > 0):
            raise ConfigError(f"--total-tokens: must be a finite number > 0, got {args.total_tokens}")
        mid = load(MidtrainConfig, args.preset, "midtrain")
        rl = load(RLConfig, args.preset, "rl")
        mode, prompt_len, completion_len = "paper", None, None
        if args.data:
            mode = "measured"
            prompt_len, completion_len = measured_lengths(args.data, rl.split)
        step = rl_step_cost(mode, rl.prompts_per_step, rl.rollouts, pricing_of(rl.kl_coef, rl.updates),
                            prompt_len, completion_len)
        betas = [float(b) for b in args.betas.split(",")]
        plan = plan_budget(args.total_tokens, betas, mid.tokens_per_step, step, mode)
    except (ConfigError, CorpusError, ValueError) as err:
        print(f"lab plan-budget: error: {err}", file=sys.stderr)
        return 2
    print(plan.table())
    return 0


def measured_lengths(corpus, split: str) -> tuple[float, float]:
    """Mean prompt tokens (through `<solution>`) and mean completion tokens (the gold rest) of a corpus split."""
    frame = read_split(corpus, split, columns=["n_tokens", "text"])
    tokenizer = corpus_tokenizer(corpus)
    prompts = [text[: text.index("<solution>") + len("<solution>")] for text in frame["text"]]
    prompt_len = sum(map(len, tokenizer(prompts, add_special_tokens=False)["input_ids"])) / len(prompts)
    return prompt_len, float(frame["n_tokens"].mean()) - prompt_len
