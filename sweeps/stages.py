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

    def config_class(self) -> type:
        module, _, name = self.config.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: dict[str, StageInfo] = {
    "datagen": StageInfo("datagen", "datagen.spec:CorpusSpec", "manifest.json"),
    "pretrain": StageInfo("pretrain", "pretrain.config:PretrainConfig", "summary.json"),
    "midtrain": StageInfo("midtrain", "midtrain.config:MidtrainConfig", "summary.json"),
}
