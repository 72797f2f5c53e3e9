"""`lab`: one console script, one subcommand per stage.

Subcommands are resolved lazily so `lab datagen` never pays for importing torch. Each target is a module
exposing `main(argv) -> int`, or "module:function" for another entry point of that signature.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "datagen": ("datagen.cli", "build a corpus (problems, splits, tokenizer, manifest)"),
    "datagen-array": ("sweeps.corpus_array", "build a large corpus as a SLURM (or local) job array, then its manifest"),
    "pretrain": ("pretrain.cli", "train a Qwen2 model from scratch on a corpus (resumable)"),
    "midtrain": ("midtrain.cli", "continue training a finished run on another corpus (resumable)"),
    "rl": ("rl.cli", "GRPO-family RL from a finished run on a prompt pool (resumable)"),
    "plan-budget": ("rl.plan", "split a compute budget between mid-training and RL arms"),
    "eval": ("analysis.evaluate", "sample a checkpoint on held-out problems; process-verified pass@k with CIs"),
    "calibrate": ("analysis.calibrate", "measure a base's per-op pass@1/pass@k and write the ladder it has"),
    "diagnose": ("analysis.diagnose", "teacher-forced accuracy by token role, with a figure"),
    "plot": ("analysis.figures", "pass@k curves, split bars, error taxonomy, training curves for eval dirs"),
    "report": ("analysis.report", "markdown report with CI tables, figures and data-derived verdicts"),
    "reproduce": ("sweeps.reproduce", "run a finding's sweep (local or SLURM), then eval, figures and report"),
    "sweep": ("sweeps.reproduce:sweep_main", "status of a sweep's steps (done / failed with log / blocked)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: lab COMMAND [--preset NAME] [--field value ...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lab: unknown command {name!r} (known: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module, _, function = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module), function or "main")(rest)


if __name__ == "__main__":
    raise SystemExit(main())
