"""The LightningModule: next-token loss on packed rows; optimizer and schedule from `pretrain.optim`.

The loss is computed here rather than by the HF model so one forward pass gives both the all-token loss and
the solution-token loss (tokens after `<solution>`, the part RL later samples); the config picks which one
is optimised and both are always logged. Everything else (clipping, precision, accumulation, checkpoints,
throughput, progress) is the Trainer's.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from pretrain.config import TrainConfig
from pretrain.data import IGNORE
from pretrain.optim import build_optimizer, build_schedule


def token_losses(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss over all targets, mean loss over solution targets) of a packed batch."""
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    # Shift the targets, not the logits: slicing the (tokens x vocab) logits would copy the largest tensor.
    targets = F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE).flatten()
    solution = F.pad(batch["solution"][:, 1:], (0, 1), value=False).flatten()
    ce = F.cross_entropy(logits.flatten(0, 1).float(), targets, ignore_index=IGNORE, reduction="none")
    loss_all = ce.sum() / (targets != IGNORE).sum().clamp(min=1)
    loss_solution = (ce * solution).sum() / solution.sum().clamp(min=1)
    return loss_all, loss_solution


class CausalLM(L.LightningModule):
    def __init__(self, model: PreTrainedModel, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        # Read by Lightning's ThroughputMonitor for MFU: ≈ 6·P FLOPs per token, forward and backward.
        self.flops_per_batch = 6 * model.num_parameters() * cfg.batch_size * cfg.seq_len

    def configure_model(self) -> None:
        if self.cfg.compile:
            self.model.compile()  # in place: parameter names (and so checkpoints) stay those of the HF model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_all, loss_solution = token_losses(self.model, batch)
        loss = loss_solution if self.cfg.loss == "solution" else loss_all
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({"train/loss_all": loss_all, "train/loss_solution": loss_solution,
                       "train/tokens": float((self.global_step + 1) * self.cfg.tokens_per_step)})
        return loss

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.cfg, fused=self.device.type == "cuda")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": build_schedule(optimizer, self.cfg),
                                                         "interval": "step"}}
