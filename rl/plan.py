"""`lab plan-budget --preset NAME --total-tokens T [--betas 0,0.2,0.5,0.8,1] [--data CORPUS | --seq-len L]`.

Prints the mid-training and RL arms of a fixed compute budget. An RL sample's length is measured from the
prompt pool (prompt + gold solution of the corpus's RL split) when `--data` is given, instead of assuming
the paper's 2,048 tokens.
"""

from __future__ import annotations

import argparse
import math
import sys

from core.config import ConfigError, load
from datagen.corpus import CorpusError, read_split
from midtrain.config import MidtrainConfig
from rl.budget import PAPER_SEQ_LEN, plan_budget
from rl.config import RLConfig


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab plan-budget", description=__doc__)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--total-tokens", type=float, required=True, help="budget in token-equivalents (6P FLOPs each)")
    parser.add_argument("--betas", default="0,0.2,0.5,0.8,1", help="RL shares of the budget, comma-separated")
    parser.add_argument("--data", help="corpus whose RL split gives the mean sample length")
    parser.add_argument("--seq-len", type=float, default=None, help=f"mean tokens per RL sample (default {PAPER_SEQ_LEN})")
    args = parser.parse_args(argv)
    try:
        if not (math.isfinite(args.total_tokens) and args.total_tokens > 0):
            raise ConfigError(f"--total-tokens: must be a finite number > 0, got {args.total_tokens}")
        if args.seq_len is not None and not (math.isfinite(args.seq_len) and args.seq_len > 0):
            raise ConfigError(f"--seq-len: must be a finite number > 0, got {args.seq_len}")
        mid = load(MidtrainConfig, args.preset, "midtrain")
        rl = load(RLConfig, args.preset, "rl")
        seq_len = args.seq_len or PAPER_SEQ_LEN
        if args.data:
            seq_len = float(read_split(args.data, rl.split, columns=["n_tokens"])["n_tokens"].mean())
        plan = plan_budget(round(args.total_tokens), [float(b) for b in args.betas.split(",")],
                           mid.tokens_per_step, rl.prompts_per_step, rl.rollouts, seq_len, kl=rl.kl_coef > 0)
    except (ConfigError, CorpusError, ValueError) as err:
        print(f"lab plan-budget: error: {err}", file=sys.stderr)
        return 2
    print(plan.table())
    return 0
