"""The jump detector on synthetic curves: real plateau-then-jump curves are found, look-alikes are not."""

import numpy as np
import pytest

from analysis.phase import detect_jump

STEPS = np.arange(200.0)


def noisy(curve, seed, sd=0.05):
    return curve + np.random.default_rng(seed).normal(0, sd, len(curve))


@pytest.mark.parametrize("position", [30, 100, 170])
@pytest.mark.parametrize("seed", [0, 1])
def test_finds_a_jump_wherever_it_is(position, seed):
    values = noisy(np.where(STEPS >= position, 0.9, 0.02), seed)
    result = detect_jump(STEPS, values)
    assert result.jumped
    assert abs(result.step - position) <= 2
    assert result.size == pytest.approx(0.88, abs=0.05)
    assert result.plateau_level == pytest.approx(0.02, abs=0.03)
    assert result.plateau_length == pytest.approx(position, abs=6)


def test_delta_style_long_plateau_then_sigmoid_jump():
    values = noisy(1 / (1 + np.exp(-(STEPS - 150) / 2)), seed=3)
    result = detect_jump(STEPS, values)
    assert result.jumped and abs(result.step - 150) <= 3 and result.plateau_length > 130


def test_step_units_and_irregular_logging_are_respected():
    steps = np.sort(np.random.default_rng(4).choice(np.arange(0, 10_000, 10), 120, replace=False))
    result = detect_jump(steps, noisy(np.where(steps >= 6000, 0.7, 0.0), seed=4))
    assert result.jumped and 5900 <= result.step <= 6100


def test_short_clean_curve():
    steps = np.arange(30.0)
    assert detect_jump(steps, np.where(steps >= 20, 1.0, 0.0)).step == 20


@pytest.mark.parametrize("name, curve", [
    ("linear rise", STEPS / 199),
    ("paper-like reward rise 0.2 -> 0.5", 0.2 + 0.3 * STEPS / 199),
    ("wide sigmoid", 1 / (1 + np.exp(-(STEPS - 100) / 25))),
    ("fast saturating rise", 1 - np.exp(-STEPS / 25)),
    ("very fast saturating rise", 1 - np.exp(-STEPS / 4)),
    ("flat noise", np.full(200, 0.3)),
    ("step down", np.where(STEPS >= 100, 0.0, 0.9)),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_look_alikes_are_not_jumps(name, curve, seed):
    assert not detect_jump(STEPS, noisy(curve, seed)).jumped, name


def test_noise_free_ramp_and_constant_are_not_jumps():
    assert not detect_jump(STEPS, STEPS / 199).jumped
    assert not detect_jump(STEPS, np.zeros(200)).jumped


def test_jump_smaller_than_noise_threshold_is_ignored():
    values = noisy(np.where(STEPS >= 100, 0.1, 0.0), seed=5)  # 2 noise sds
    assert not detect_jump(STEPS, values).jumped
    assert detect_jump(STEPS, values, min_snr=1.0).jumped
    big = noisy(np.where(STEPS >= 100, 0.9, 0.0), seed=5)
    assert not detect_jump(STEPS, big, min_size=1.0).jumped


def test_resumed_run_duplicates_keep_last_value():
    # Logged steps 0..149, then resumed from the step-100 checkpoint and re-logged 100..199.
    steps = np.concatenate([STEPS[:150], STEPS[100:]])
    jump_lost_on_resume = np.concatenate([np.where(STEPS[:150] >= 100, 0.9, 0.0), np.zeros(100)])
    assert not detect_jump(steps, jump_lost_on_resume).jumped
    jump_only_after_resume = np.concatenate([np.zeros(150), np.full(100, 0.9)])
    assert detect_jump(steps, jump_only_after_resume).step == 100


def test_too_few_points():
    assert not detect_jump([0, 1, 2, 3], [0, 0, 1, 1]).jumped


def test_rejects_bad_smoothing():
    with pytest.raises(ValueError, match="smoothing"):
        detect_jump(STEPS, np.zeros(200), smoothing=0)
