"""`lab pretrain --preset NAME --data CORPUS --out RUN_DIR [--field value ...]`: train a model from scratch.

`command` is shared with `lab midtrain`, which differs only in its config section and a required `--init`.
Exit codes: 0 done (or already finished), 1 diverged (non-finite loss, gradient or weights; no model written),
2 bad input (nothing trained), 143 stopped by SIGTERM (rerun resumes).
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
from pretrain.config import PretrainConfig
from pretrain.recipe import run


def command(stage: str, config_cls: type, argv: list[str], doc: str, needs_init: bool = False) -> int:
    parser = argparse.ArgumentParser(prog=f"lab {stage}", description=doc, formatter_class=help_formatter,
                                     epilog=config_help(argv, [(stage, config_cls)]))
    parser.add_argument("--preset", default="smoke", help=f"preset name or YAML path (section '{stage}')")
    parser.add_argument("--data", required=True, type=Path, help="corpus directory (lab datagen --out)")
    parser.add_argument("--out", required=True, type=Path, help="run directory (created, or resumed)")
    if needs_init:
        parser.add_argument("--init", required=True, type=Path, help="finished run directory to start from")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    try:
        cfg = load(config_cls, args.preset, stage, parse_overrides(rest))
        summary = run(stage, cfg, args.data, args.out, init=getattr(args, "init", None), progress=not args.quiet)
    except (ConfigError, CorpusError, InputError, LockError) as err:
        print(f"lab {stage}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(f"lab {stage}: error: {err}", file=sys.stderr)
        return 1
    except SIGTERMException:
        print(f"lab {stage}: stopped by SIGTERM after saving {args.out / 'checkpoints' / 'last.ckpt'}; "
              "run the same command to resume", file=sys.stderr)
        return 143
    if summary is None:
        print(f"{args.out}: already finished (summary.json exists); nothing to do")
        return 0
    loss = "n/a" if summary["final_loss"] is None else f"{summary['final_loss']:.4f}"
    print(f"{stage}: {summary['params']:,} params, {summary['tokens']:,} tokens in {summary['steps']} steps, "
          f"{summary['wall_s']:.1f}s ({summary['tokens_per_s']:,.0f} tokens/s), final loss {loss}")
    print(f"wrote {args.out / 'model'} and {args.out / 'summary.json'}")
    return 0


def main(argv: list[str]) -> int:
    return command("pretrain", PretrainConfig, argv, __doc__)
