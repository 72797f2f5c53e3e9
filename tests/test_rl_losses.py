"""rl.losses against numbers worked out by hand in the comments, for every aggregation, with and without clipping."""

import math

import pytest
import torch

from rl.losses import group_advantages, policy_loss, zero_variance_mask

# Four sequences (2 groups x 2 samples) of up to 3 tokens; lengths 3, 2, 1, 3.
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
ADVANTAGES = torch.tensor([1.0, -1.0, 0.5, -2.0])
# Masked-out slots get absurd ratios: they must not leak into any number.
RATIOS_INSIDE_CLIP = torch.tensor([[1.0, 1.1, 0.9], [1.0, 0.95, 5.0], [1.1, 3.0, 3.0], [0.9, 1.0, 1.05]])
RATIOS_CLIPPED = torch.tensor([[1.5, 1.0, 0.5], [0.5, 1.5, 9.0], [1.2, 9.0, 9.0], [0.7, 1.0, 1.3]])


def loss_for(ratios, aggregation, **kwargs):
    logp_old = torch.full_like(ratios, -1.0)
    return policy_loss(
        logp_new=logp_old + ratios.log(),
        logp_old=logp_old,
        advantages=ADVANTAGES,
        mask=MASK,
        aggregation=aggregation,
        **kwargs,
    )


# No clipping: per-token loss is -A * ratio.
#   row 0 (A=1):  -1.0 -1.1 -0.9  sum -3.0  mean -1.0
#   row 1 (A=-1):  1.0  0.95      sum 1.95  mean 0.975
#   row 2 (A=.5): -0.55           sum -0.55 mean -0.55
#   row 3 (A=-2):  1.8  2.0  2.1  sum 5.9   mean 1.966667
# seq_mean_token_mean = (-1.0 + 0.975 - 0.55 + 1.966667) / 4 = 0.3479167
# token_mean = 4.3 / 9 = 0.4777778
# seq_mean_token_sum_norm (max_len 4) = (4.3 / 4) / 4 = 0.26875
@pytest.mark.parametrize(
    "aggregation, expected",
    [("seq_mean_token_mean", 0.3479167), ("token_mean", 0.4777778), ("seq_mean_token_sum_norm", 0.26875)],
)
def test_loss_without_active_clipping(aggregation, expected):
    loss, stats = loss_for(RATIOS_INSIDE_CLIP, aggregation, clip_low=0.2, clip_high=0.28, max_len=4)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["clip_frac"].item() == 0.0
    assert "kl" not in stats


# clip range [0.8, 1.28]; per-token loss is max(-A*r, -A*clip(r)).
#   row 0 (A=1):  r 1.5 -> -1.28 (clipped high); 1.0 -> -1.0; 0.5 -> -0.5 (A>0: no clip below)  sum -2.78
#   row 1 (A=-1): r 0.5 -> 0.8 (clipped low); 1.5 -> 1.5 (A<0: no clip above)                   sum 2.3
#   row 2 (A=.5): r 1.2 -> -0.6                                                                  sum -0.6
#   row 3 (A=-2): r 0.7 -> 1.6 (clipped low); 1.0 -> 2.0; 1.3 -> 2.6                             sum 6.2
# seq_mean_token_mean = (-2.78/3 + 2.3/2 - 0.6 + 6.2/3) / 4 = 1.69 / 4 = 0.4225
# token_mean = 5.12 / 9 = 0.5688889
# seq_mean_token_sum_norm (max_len 4) = (5.12 / 4) / 4 = 0.32
@pytest.mark.parametrize(
    "aggregation, expected",
    [("seq_mean_token_mean", 0.4225), ("token_mean", 0.5688889), ("seq_mean_token_sum_norm", 0.32)],
)
def test_loss_with_asymmetric_clipping(aggregation, expected):
    loss, stats = loss_for(RATIOS_CLIPPED, aggregation, clip_low=0.2, clip_high=0.28, max_len=4)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["clip_frac_high"].item() == pytest.approx(1 / 9)
    assert stats["clip_frac_low"].item() == pytest.approx(2 / 9)
    assert stats["clip_frac"].item() == pytest.approx(3 / 9)


def test_clipped_tokens_get_no_gradient():
    logp_new = RATIOS_CLIPPED.log().requires_grad_()
    loss, _ = policy_loss(logp_new, torch.zeros(4, 3), ADVANTAGES, MASK, 0.2, 0.28, "token_mean")
    loss.backward()
    # The three clipped tokens (row 0 tok 0, row 1 tok 0, row 3 tok 0) and the masked slots.
    no_gradient = torch.tensor([[1, 0, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=torch.bool)
    assert (logp_new.grad[no_gradient] == 0).all()
    assert (logp_new.grad[~no_gradient] != 0).all()


# k3 = exp(d) - d - 1 with d = logp_ref - logp_new:
#   d = ln 2 at row 0 tok 1 -> 2 - ln2 - 1 = 0.3068528;  d = -ln 2 at row 3 tok 2 -> 0.5 + ln2 - 1 = 0.1931472
#   (a third d = ln 2 sits in a masked slot and must not count). Together 0.5; x kl_coef 0.1 = 0.05.
# token_mean = (4.3 + 0.05) / 9 = 0.4833333
# seq_mean_token_mean = 0.3479167 + (0.03068528 / 3 + 0.01931472 / 3) / 4 = 0.3520833
# seq_mean_token_sum_norm = (4.35 / 4) / 4 = 0.271875
# kl stat = 0.5 / 9
@pytest.mark.parametrize(
    "aggregation, expected",
    [("seq_mean_token_mean", 0.3520833), ("token_mean", 0.4833333), ("seq_mean_token_sum_norm", 0.271875)],
)
def test_k3_kl_penalty(aggregation, expected):
    log_ratio_ref = torch.zeros(4, 3)
    log_ratio_ref[0, 1] = math.log(2)
    log_ratio_ref[3, 2] = -math.log(2)
    log_ratio_ref[1, 2] = math.log(2)
    logp_new = RATIOS_INSIDE_CLIP.log() - 1.0
    loss, stats = policy_loss(
        logp_new=logp_new,
        logp_old=torch.full((4, 3), -1.0),
        advantages=ADVANTAGES,
        mask=MASK,
        clip_low=0.2,
        clip_high=0.28,
        aggregation=aggregation,
        max_len=4,
        kl_coef=0.1,
        logp_ref=logp_new + log_ratio_ref,
    )
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["kl"].item() == pytest.approx(0.5 / 9, abs=1e-6)


def test_kl_coefficient_without_reference_is_an_error():
    with pytest.raises(ValueError, match="logp_ref"):
        loss_for(RATIOS_INSIDE_CLIP, "token_mean", kl_coef=0.1)


def test_sum_norm_needs_max_len():
    with pytest.raises(ValueError, match="max_len"):
        loss_for(RATIOS_INSIDE_CLIP, "seq_mean_token_sum_norm")


# Groups [1, 0] and [3, 1]: means 0.5 and 2, centred [0.5, -0.5] and [1, -1];
# unbiased stds sqrt(0.5) and sqrt(2), so both normalise to [1/sqrt2, -1/sqrt2].
def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 3.0, 1.0])
    s = 1 / math.sqrt(2)
    assert group_advantages(rewards, k=2, eps=0.0).tolist() == pytest.approx([s, -s, s, -s])
    assert group_advantages(rewards, k=2, normalize_std=False).tolist() == pytest.approx([0.5, -0.5, 1.0, -1.0])


def test_constant_group_gets_zero_advantage_not_nan():
    advantages = group_advantages(torch.tensor([1, 1, 1, 0, 0, 1]), k=3)
    assert advantages[:3].tolist() == [0.0, 0.0, 0.0]
    # [0, 0, 1]: mean 1/3, unbiased std sqrt(1/3)
    assert advantages[3:].tolist() == pytest.approx([-1 / math.sqrt(3), -1 / math.sqrt(3), 2 / math.sqrt(3)], abs=1e-5)


def test_zero_variance_groups():
    flags = zero_variance_mask(torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.5]), k=2)
    assert flags.constant.tolist() == [True, True, False, True]
    assert flags.all_zero.tolist() == [True, False, False, False]
    assert flags.all_one.tolist() == [False, True, False, False]


def test_rewards_must_split_into_groups():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(5), k=2)
