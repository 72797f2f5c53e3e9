"""Ledger arithmetic and the mid/RL budget planner."""

import pytest

from rl.budget import PAPER_PRICING, ComputeLedger, RLPricing, plan_budget, pricing_of, rl_step_cost


def test_ledger_counts_actual_tokens():
    ledger = ComputeLedger(params=1000)
    # 2 prompts of 10 and 20 tokens, 3 rollouts each, completions of these lengths:
    ledger.record_step(prompts=2, rollouts=3, prompt_tokens=30, generated_tokens=[5, 6, 7, 8, 9, 10],
                       updates=1, with_reference=True, with_old_logprobs=False)
    seen = 3 * 30 + 45  # every sample's prompt + its completion = 135 tokens
    assert ledger.samples == 6 and ledger.generated_tokens == 45
    assert ledger.rollout_flops == 2 * 1000 * (30 + 45)  # prompts prefilled once, then decoded tokens
    assert ledger.reference_flops == 2 * 1000 * seen
    assert ledger.policy_flops == 6 * 1000 * seen
    assert ledger.nkl == seen
    assert ledger.token_equivalents == pytest.approx((2 * 75 + 2 * seen + 6 * seen) / 6)
    assert ledger.paper_token_equivalents == pytest.approx(5 / 3 * 6 * 2048)


def test_ledger_without_reference_and_multiple_updates():
    ledger = ComputeLedger(params=10)
    for _ in range(2):
        ledger.record_step(prompts=1, rollouts=2, prompt_tokens=4, generated_tokens=[1, 3],
                           updates=2, with_reference=False, with_old_logprobs=True)
    seen = 2 * 4 + 4
    assert ledger.steps == 2 and ledger.reference_flops == 0
    assert ledger.policy_flops == 2 * 6 * 10 * seen * 2
    assert ledger.rollout_flops == 2 * (2 * 10 * (4 + 4) + 2 * 10 * seen)
    assert ledger.summary()["flops"] == ledger.flops


def test_paper_rl_step_matches_its_stated_cost():
    # "one RL step ≈ 21M tokens ≈ 40 mid-training steps" (1,024 prompts x 6 rollouts x 2,048 tokens, batch 512K)
    step = rl_step_cost("paper", 1024, 6, pricing_of(1e-3))
    assert step == pytest.approx(5 / 3 * 1024 * 6 * 2048)
    assert 20e6 < step < 22e6
    assert round(step / 524_288) == 40


def test_measured_step_cost_prices_the_passes_the_ledger_counts():
    # 2 prompts of 10 tokens, 3 rollouts of 5 tokens, KL on, old-logprob pass, one update (hand count, in P units):
    # rollout 2*(20 + 30); reference, old logprobs 2*(60 + 30) each; policy 6*(60 + 30).
    by_hand = (2 * 50 + 2 * 90 + 2 * 90 + 6 * 90) / 6
    assert rl_step_cost("measured", 2, 3, pricing_of(1e-3), prompt_len=10, completion_len=5) == pytest.approx(by_hand)
    ledger = ComputeLedger(params=1)
    ledger.record_step(prompts=2, rollouts=3, prompt_tokens=20, generated_tokens=[5] * 6, updates=1,
                       with_reference=True, with_old_logprobs=True)
    assert ledger.realised("measured") == pytest.approx(by_hand)
    assert ledger.realised("paper") == pytest.approx(5 / 3 * 6 * 2048)
    assert PAPER_PRICING.token_equivalents(1, 6, 0, 6 * 2048) == pytest.approx(5 / 3 * 6 * 2048)
    with pytest.raises(ValueError, match="measured"):
        rl_step_cost("measured", 2, 3, RLPricing())


def test_plan_splits_budget_exactly():
    step = (8 / 6) * 8 * 4 * 50
    plan = plan_budget(total_tokens=1_000_000, betas=[0, 0.2, 0.5, 0.8, 1], mid_batch_tokens=10_000,
                       rl_step_cost=step)
    by_beta = {a.beta: a for a in plan.arms}
    assert by_beta[0].mid_tokens == 1_000_000 and by_beta[0].rl_steps == 0
    assert by_beta[1].mid_tokens == 0 and by_beta[1].rl_steps == round(1_000_000 / step)  # 468.75 -> 469
    assert by_beta[0.2].mid_steps == 80 and by_beta[0.2].rl_steps == round(200_000 / step)  # 93.75 -> 94
    for a in plan.arms:
        assert a.mid_tokens + a.rl_token_equivalents == pytest.approx(1_000_000)
    assert "beta" in plan.table()


@pytest.mark.parametrize("kwargs, field", [
    ({"betas": [1.5]}, "betas"), ({"total_tokens": 0}, "total_tokens"), ({"total_tokens": float("nan")}, "total_tokens"),
    ({"rl_step_cost": 0}, "rl_step_cost"),
])
def test_plan_rejects_bad_input(kwargs, field):
    args = dict(total_tokens=100, betas=[0.5], mid_batch_tokens=10, rl_step_cost=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        plan_budget(**args)


def test_ledger_round_trips_through_its_summary_and_counts_scoring():
    ledger = ComputeLedger(params=7)
    ledger.record_step(prompts=1, rollouts=2, prompt_tokens=3, generated_tokens=[1, 2], updates=1,
                       with_reference=False, with_old_logprobs=False)
    ledger.record_scoring(prompt_tokens=6, generated_tokens=[4, 4])
    assert ledger.rollout_flops == 2 * 7 * (3 + 3) + 2 * 7 * (6 + 8)
    assert ledger.samples == 2 and ledger.generated_tokens == 11
    assert ComputeLedger.from_summary(ledger.summary()) == ledger
