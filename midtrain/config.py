"""`presets/*.yaml` section `midtrain:` builds into `MidtrainConfig`.

Mid-training is next-token training continued from a finished run on another mixture, with a complete
schedule of its own, so it reuses `TrainConfig` whole: only the paper's schedule defaults differ (lr 1e-4,
15% warmup). There is no architecture here; it is the init checkpoint's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.config import TrainConfig


@dataclass
class MidtrainConfig(TrainConfig):
    lr: float = 1e-4
    min_lr: float = 3e-5
    warmup: float = 0.15
