"""What a sweep needs to know about each stage: its preset section, typed config and completion marker.

A sweep step is a `lab` command line, so stages stay runnable by hand exactly as a sweep runs them. The
registry below is the one place that maps a command to the config class that resolves it (for the step's
key) and to the file whose presence means the step is finished.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class StageInfo:
    section: str  # preset section the stage reads
    config: str  # "package.module:Class" of its typed config
    marker: str  # file in the output directory that is written last
    # Other preset sections the stage reads, as (section, "package.module:Class"); they count in the key too.
    also: tuple[tuple[str, str], ...] = ()

    def config_class(self) -> type:
        return _resolve(self.config)

    def sections(self) -> list[tuple[str, type]]:
        return [(self.section, self.config_class()), *((name, _resolve(path)) for name, path in self.also)]


# Preset sections read by the sweep machinery itself rather than by one stage.
SWEEP_SECTIONS: dict[str, str] = {"resources": "sweeps.executors:SweepResources",
                                   "findings": "sweeps.findings:FindingsConfig"}


def _resolve(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


STAGES: dict[str, StageInfo] = {
    "datagen": StageInfo("datagen", "datagen.spec:CorpusSpec", "manifest.json"),
    "pretrain": StageInfo("pretrain", "pretrain.config:PretrainConfig", "summary.json"),
    "midtrain": StageInfo("midtrain", "midtrain.config:MidtrainConfig", "summary.json"),
    "rl": StageInfo("rl", "rl.config:RLConfig", "summary.json"),
    "eval": StageInfo("eval", "analysis.config:EvalConfig", "summary.json", also=(("ladder", "analysis.config:Ladder"),)),
}
