"""`lab rl --preset NAME --data CORPUS --init RUN_DIR --out RL_DIR [--field value ...]`: GRPO-family RL.

Exit codes as for `lab pretrain`: 0 done (or already finished), 1 diverged (non-finite loss, gradient or weights),
2 bad input, 143 stopped by SIGTERM (rerun resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning.pytorch.utilities.exceptions import SIGTERMException

from core.config import ConfigError, config_help, help_formatter, load, parse_overrides
from core.lock import LockError
from core.rundir import InputError, NonFiniteError
from datagen.corpus import CorpusError
from rl.config import RLConfig
from rl.recipe import run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab rl", description=__doc__, formatter_class=help_formatter,
                                     epilog=config_help(argv, [("rl", RLConfig)]))
    parser.add_argument("--preset", default="smoke", help="preset name or YAML path (section 'rl')")
    parser.add_argument("--data", required=True, type=Path, help="corpus whose split (default 'rl') is the prompt pool")
    parser.add_argument("--init", required=True, type=Path, help="finished pre-/mid-training run to start from")
    parser.add_argument("--out", required=True, type=Path, help="RL run directory (created, or resumed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    try:
        cfg = load(RLConfig, args.preset, "rl", parse_overrides(rest))
        summary = run(cfg, args.data, args.init, args.out, progress=not args.quiet)
    except (ConfigError, CorpusError, InputError, LockError) as err:
        print(f"lab rl: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(f"lab rl: error: {err}", file=sys.stderr)
        return 1
    except SIGTERMException:
        print("lab rl: stopped by SIGTERM; run the same command to resume", file=sys.stderr)
        return 143
    if summary is None:
        print(f"{args.out}: already finished (summary.json exists); nothing to do")
        return 0
    ledger = summary["ledger"]
    print(f"rl: {summary['steps']} steps, {ledger['samples']:,} samples, {ledger['generated_tokens']:,} tokens generated, "
          f"{ledger['token_equivalents']:,.0f} token-equivalents (paper formula {ledger['paper_token_equivalents']:,.0f}), "
          f"{summary['wall_s']:.1f}s, final reward {summary['final_reward']}")
    print(f"wrote {args.out / 'model'} and {args.out / 'summary.json'}")
    return 0
