"""Optimizer and learning-rate schedule of next-token training, chosen by config (`optimizer`, `schedule`).

AdamW everywhere is the paper's recipe. Muon (`torch.optim.Muon`) orthogonalises the update of a 2-D weight matrix
and is defined only for the hidden matrices of a network: embeddings and the output head are lookup tables and a
classifier, norm gains and biases are vectors, so they stay on AdamW (as in Keller Jordan's Muon and Moonlight).
The two optimizers are stepped as one (`MuonWithAdamW`) because Lightning's automatic optimization takes a single
optimizer; its `param_groups` are the inner optimizers' own group dicts, so the Trainer's gradient clipping and one
LambdaLR schedule act on both (each group keeps its own peak lr; the schedule scales them by the same factor).

Schedules come from transformers: warmup + cosine to `min_lr`, or warmup-stable-decay (WSD: constant after the
warmup, then a 1-sqrt cooldown to `min_lr` over the last `decay` fraction of the steps, the shape Hägele et al. 2024
found to match cosine) whose stable phase can be branched off and cooled down at any budget.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup, get_wsd_schedule

from pretrain.config import TrainConfig


def param_groups(model: PreTrainedModel, cfg: TrainConfig) -> dict[str, list[dict]]:
    """Trainable parameters by optimizer: {"adamw": groups, "muon": groups}; every parameter in exactly one group.

    AdamW decays 2-D tensors (embeddings, head) and not 1-D ones (norm gains, biases); under `optimizer: muon` the
    hidden 2-D matrices go to Muon with the same weight decay.
    """
    lookup = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    params = [p for p in model.parameters() if p.requires_grad]  # a tied head appears once
    hidden = [p for p in params if p.dim() == 2 and id(p) not in lookup] if cfg.optimizer == "muon" else []
    on_muon = {id(p) for p in hidden}
    adamw = [p for p in params if id(p) not in on_muon]
    groups = {"adamw": [{"params": [p for p in adamw if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                        {"params": [p for p in adamw if p.dim() < 2], "weight_decay": 0.0}]}
    if hidden:
        groups["muon"] = [{"params": hidden, "weight_decay": cfg.weight_decay}]
    return groups


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the hidden matrices and AdamW on the rest, stepped, zeroed, saved and restored as one optimizer."""

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW):
        self.inner = [muon, adamw]
        super().__init__([p for o in self.inner for g in o.param_groups for p in g["params"]], {})
        self.param_groups = [g for o in self.inner for g in o.param_groups]  # shared dicts: schedules reach both

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.inner:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.inner:
            optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"inner": [o.state_dict() for o in self.inner]}

    def load_state_dict(self, state_dict: dict) -> None:
        for optimizer, state in zip(self.inner, state_dict["inner"], strict=True):
            optimizer.load_state_dict(state)
        # torch's load_state_dict gives each optimizer new group dicts: point at them, or a resumed run's schedule
        # would set the learning rate of groups nobody steps any more.
        self.param_groups = [g for o in self.inner for g in o.param_groups]


def build_optimizer(model: PreTrainedModel, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    adamw = torch.optim.AdamW(groups["adamw"], lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)
    if "muon" not in groups:
        return adamw
    muon = torch.optim.Muon(groups["muon"], lr=cfg.muon_lr, momentum=cfg.muon_momentum)
    return MuonWithAdamW(muon, adamw)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step lr multiplier: 1 at the peak, min_lr / lr at the floor, for every group alike."""
    warmup, floor = round(cfg.warmup * cfg.steps), cfg.min_lr / cfg.lr
    if cfg.schedule == "wsd":
        decay = max(1, round(cfg.decay * cfg.steps))
        return get_wsd_schedule(optimizer, num_warmup_steps=warmup, num_decay_steps=decay,
                                num_stable_steps=max(0, cfg.steps - warmup - decay), decay_type="1-sqrt",
                                min_lr_ratio=floor)
    return get_cosine_with_min_lr_schedule_with_warmup(optimizer, num_warmup_steps=warmup,
                                                       num_training_steps=cfg.steps, min_lr_rate=floor)
