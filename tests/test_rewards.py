"""Reward registry on crafted outputs, and the DELTA dense→binary schedule."""

import random

import pytest

from datagen.contexts import load_context
from datagen.graph import GraphConfig, generate
from datagen.render import render
from datagen.verify import completion_of, verify
from rl.rewards import REWARDS, RewardSchedule, reward


@pytest.fixture(scope="module")
def sample():
    ctx = load_context("zoo")
    problem = generate(6, random.Random(1), GraphConfig(), len(ctx.groups), len(ctx.items))
    return problem, render(problem, ctx, "compact", random.Random(2))


def grade(sample, completion):
    problem, rendered = sample
    return verify(completion, problem, rendered.names, "compact")


def test_gold_solution_earns_every_reward(sample):
    _, rendered = sample
    verdict = grade(sample, completion_of(rendered.text))
    assert all(reward(name, verdict) == 1.0 for name in REWARDS)


def test_right_answer_wrong_step(sample):
    problem, rendered = sample
    first = problem.necessary_nodes()[0]
    name = rendered.names[first.index]
    wrong_value = (first.value + 1) % 23
    corrupted = rendered.solution.replace(f"{name} = {first.value} ;", f"{name} = {wrong_value} ;", 1)
    assert corrupted != rendered.solution
    verdict = grade(sample, f" {corrupted} </solution> <answer> {problem.answer} </answer>")
    assert reward("outcome", verdict) == 1.0
    assert reward("strict", verdict) == 0.0
    process = reward("process", verdict)
    assert 0.0 < process < 1.0
    assert reward("mixed", verdict, alpha=0.2) == pytest.approx(0.2 + 0.8 * process)


@pytest.mark.parametrize("garbage", ["", "</answer>", "<solution> = = ; ;", "\x00\xff" * 50, "<answer> -7"])
def test_garbage_scores_zero_without_raising(sample, garbage):
    verdict = grade(sample, garbage)
    assert all(reward(name, verdict, garbage, alpha=0.5) == 0.0 for name in REWARDS)


def test_unknown_reward_is_named():
    with pytest.raises(KeyError, match="bogus"):
        reward("bogus", None, "")


def test_schedule_switches_at_a_fixed_step():
    schedule = RewardSchedule(dense="process", final="strict", switch_step=3)
    assert [schedule.active(step, []) for step in range(5)] == ["process"] * 3 + ["strict"] * 2
    assert schedule.switched_at == 3


def test_schedule_switches_on_plateau_and_survives_resume():
    schedule = RewardSchedule(window=5, tolerance=0.01)
    rising = [i / 20 for i in range(10)]
    assert schedule.active(10, rising) == "process"
    flat = rising + [0.5] * 10
    assert schedule.active(20, flat) == "outcome" and schedule.switched_at == 20
    resumed = RewardSchedule(window=5, tolerance=0.01)
    resumed.load_state_dict(schedule.state_dict())
    assert resumed.active(21, []) == "outcome"
