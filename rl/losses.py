"""GRPO-family policy loss as pure tensor functions.

GRPO, DAPO and Dr. GRPO differ only in three knobs: whether group advantages are divided by the group's standard
deviation, how wide the clip range is on each side, and how per-token losses are averaged into one number. Keeping
them as arguments of one function (rather than three trainers) lets a sweep switch variant by config, and keeping the
functions free of models and optimisers lets tests pin them to hand-computed numbers.

Layout: rewards are flat [N*K], prompt-major (the K samples of prompt i are rows i*K .. i*K+K-1), as produced by
`core.sampler.sample`; token tensors are [B, T] with a 0/1 mask over completion tokens.
"""

from dataclasses import dataclass
from typing import Literal

import torch

Aggregation = Literal["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"]


def group_advantages(
    rewards: torch.Tensor, k: int, normalize_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """Each reward minus its group's mean, optionally divided by the group's standard deviation (+eps).

    GRPO normalises by the (unbiased, as in TRL and verl) std; Dr. GRPO drops the division because it up-weights
    groups that are nearly all right or all wrong. A group with identical rewards gets zero advantage either way.
    """
    groups = _as_groups(rewards, k)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if normalize_std:
        if k < 2:
            raise ValueError("std normalisation needs at least 2 samples per group")
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


@dataclass(frozen=True)
class ZeroVarianceGroups:
    """Per-group flags [N]. Such groups carry no GRPO gradient; all-zero means too hard, all-one too easy."""

    constant: torch.Tensor
    all_zero: torch.Tensor
    all_one: torch.Tensor


def zero_variance_mask(rewards: torch.Tensor, k: int) -> ZeroVarianceGroups:
    groups = _as_groups(rewards, k)
    constant = (groups == groups[:, :1]).all(dim=1)
    return ZeroVarianceGroups(
        constant=constant,
        all_zero=(groups == 0).all(dim=1),
        all_one=(groups == 1).all(dim=1),
    )


def policy_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: Aggregation = "seq_mean_token_mean",
    max_len: int | None = None,
    kl_coef: float = 0.0,
    logp_ref: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss (to minimise) plus an optional k3 KL penalty, aggregated per `aggregation`.

    logp_* are per-token log-probs [B, T] of the sampled tokens; advantages [B] are broadcast over a sequence's
    tokens. clip_low/clip_high bound the ratio to [1 - clip_low, 1 + clip_high]; DAPO's clip-higher raises only
    clip_high so that unlikely tokens can still gain probability. Aggregations:
      seq_mean_token_mean      GRPO: mean over a sequence's tokens, then over sequences (long answers count less
                               per token).
      token_mean               DAPO: sum over all tokens / number of tokens.
      seq_mean_token_sum_norm  Dr. GRPO: sum over a sequence's tokens / max_len, then mean over sequences, so no
                               length-dependent weighting at all.
    Stats are detached scalars: clip_frac_low / clip_frac_high (share of tokens whose gradient the clip removes, on
    each side), clip_frac (their sum) and, with a reference, kl (token mean of the k3 estimate).
    """
    mask = mask.to(logp_new.dtype)
    advantages = advantages[:, None]
    ratio = torch.exp(logp_new - logp_old)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)

    stats = {}
    with torch.no_grad():
        clipped_high = ((advantages > 0) & (ratio > 1.0 + clip_high)).to(mask.dtype)
        clipped_low = ((advantages < 0) & (ratio < 1.0 - clip_low)).to(mask.dtype)
        stats["clip_frac_high"] = _token_mean(clipped_high, mask)
        stats["clip_frac_low"] = _token_mean(clipped_low, mask)
        stats["clip_frac"] = stats["clip_frac_high"] + stats["clip_frac_low"]

    if kl_coef != 0.0 or logp_ref is not None:
        if logp_ref is None:
            raise ValueError("kl_coef != 0 needs logp_ref")
        # k3 (Schulman): unbiased for KL(new || ref) under samples from new, and never negative.
        log_ratio_ref = logp_ref - logp_new
        kl = torch.exp(log_ratio_ref) - log_ratio_ref - 1.0
        per_token = per_token + kl_coef * kl
        stats["kl"] = _token_mean(kl.detach(), mask)

    return _aggregate(per_token, mask, aggregation, max_len), stats


def _aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: Aggregation, max_len: int | None):
    if aggregation == "token_mean":
        return _token_mean(per_token, mask)
    per_sequence_sum = (per_token * mask).sum(dim=1)
    if aggregation == "seq_mean_token_mean":
        return (per_sequence_sum / mask.sum(dim=1).clamp(min=1.0)).mean()
    if aggregation == "seq_mean_token_sum_norm":
        if max_len is None:
            raise ValueError("seq_mean_token_sum_norm needs max_len (a constant, e.g. the response budget)")
        return (per_sequence_sum / max_len).mean()
    raise ValueError(f"unknown aggregation {aggregation!r}")


def _token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _as_groups(rewards: torch.Tensor, k: int) -> torch.Tensor:
    if rewards.dim() != 1 or k < 1 or rewards.numel() % k:
        raise ValueError(f"rewards must be flat [N*K] with K={k}, got shape {tuple(rewards.shape)}")
    groups = rewards.reshape(-1, k)
    return groups if groups.is_floating_point() else groups.float()
