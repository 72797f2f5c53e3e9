"""core.sampler against transformers' own generate, plus the properties RL relies on: reproducible draws, stop
handling, one prefill per prompt, and the right sampling distribution."""

import warnings

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from core.sampler import sample

PAD = 0
# Different lengths, so the batch is left-padded.
PROMPTS = [[5, 17, 42, 8, 99, 23, 61], [11, 3], [70, 70, 12, 64, 9], [31]]



@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in the lab's models
        max_position_embeddings=128,
        tie_word_embeddings=False,
        initializer_range=0.3,  # peaked logits: the default init makes near-ties that float noise could flip
    )
    return Qwen2ForCausalLM(config).eval()


def hf_greedy(model, prompts, max_new_tokens, stop_token_id):
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    output = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_token_id,
        pad_token_id=PAD,
    )
    completions = []
    for row in output[:, width:].tolist():
        if stop_token_id in row:
            row = row[: row.index(stop_token_id) + 1]
        completions.append(row)
    return completions


def greedy(model, prompts, max_new_tokens, stop_token_id, k=1):
    return sample(model, prompts, k, max_new_tokens, 0.0, stop_token_id, PAD, None)


def test_greedy_matches_hf_generate(model):
    ours = greedy(model, PROMPTS, 24, stop_token_id=None)
    assert ours.tokens == hf_greedy(model, PROMPTS, 24, stop_token_id=None)
    assert ours.lengths == [24] * len(PROMPTS)
    assert ours.stopped == [False] * len(PROMPTS)


def test_greedy_matches_hf_generate_with_a_stop_token(model):
    free_run = greedy(model, PROMPTS, 24, stop_token_id=None).tokens
    stop = free_run[0][5]  # a token the first prompt does produce, so at least one row stops early
    ours = greedy(model, PROMPTS, 24, stop_token_id=stop)
    assert ours.tokens == hf_greedy(model, PROMPTS, 24, stop_token_id=stop)
    assert ours.stopped[0] and len(ours.tokens[0]) <= 6


def test_greedy_matches_hf_generate_under_eager_attention(model):
    """The prefill runs on the model's own attention kernel, whose mask format differs between sdpa and eager."""
    model.set_attn_implementation("eager")
    try:
        assert greedy(model, PROMPTS, 12, None).tokens == hf_greedy(model, PROMPTS, 12, None)
    finally:
        model.set_attn_implementation("sdpa")


def test_uses_no_deprecated_transformers_api(model):
    """A deprecation warning today is a TypeError at the version named in it (`past_key_values` goes in 5.40)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        ours = greedy(model, PROMPTS, 8, stop_token_id=None)
    assert ours.tokens == hf_greedy(model, PROMPTS, 8, stop_token_id=None)


def test_stop_cuts_right_after_the_stop_token(model):
    free_run = greedy(model, PROMPTS, 24, stop_token_id=None).tokens
    stop = free_run[0][5]
    rollouts = greedy(model, PROMPTS, 24, stop_token_id=stop)
    for free, cut, stopped in zip(free_run, rollouts.tokens, rollouts.stopped):
        if stopped:
            first = free.index(stop)
            assert cut == free[: first + 1]
        else:
            assert stop not in cut and cut == free


def test_batch_stops_as_soon_as_every_row_has_stopped(model):
    prompt = PROMPTS[0]
    first_token = greedy(model, [prompt], 24, stop_token_id=None).tokens[0][0]
    forward_calls = []
    handle = model.model.register_forward_pre_hook(lambda module, args: forward_calls.append(1))
    try:
        rollouts = greedy(model, [prompt], 24, stop_token_id=first_token, k=3)
    finally:
        handle.remove()
    assert rollouts.tokens == [[first_token]] * 3 and rollouts.stopped == [True] * 3
    assert len(forward_calls) == 1  # the prefill; no decode step was needed


def test_greedy_samples_of_a_prompt_agree_and_are_prompt_major(model):
    single = greedy(model, PROMPTS, 10, None).tokens
    fanned_out = greedy(model, PROMPTS, 10, None, k=3)
    assert fanned_out.k == 3
    assert fanned_out.tokens == [completion for completion in single for _ in range(3)]


def test_seeded_generator_reproduces_the_draws(model):
    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return sample(model, PROMPTS, 4, 16, 1.0, None, PAD, generator, return_logprobs=True)

    first, again, other = draw(7), draw(7), draw(8)
    assert first.tokens == again.tokens and first.logprob_sums == again.logprob_sums
    assert first.tokens != other.tokens


def test_each_prompt_is_prefilled_once_not_k_times(model):
    calls = []

    def record(module, args, kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))

    handle = model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        sample(model, PROMPTS, 8, 5, 1.0, None, PAD, torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    width = max(len(p) for p in PROMPTS)
    assert calls[0] == (len(PROMPTS), width)  # the prompts, once each
    assert calls[1:] == [(len(PROMPTS) * 8, 1)] * 4  # then one token per sample per step


def test_logprob_sums_match_a_full_forward_pass(model):
    generator = torch.Generator().manual_seed(3)
    rollouts = sample(model, PROMPTS, 2, 12, 1.0, None, PAD, generator, return_logprobs=True)
    for row, completion in enumerate(rollouts.tokens):
        prompt = PROMPTS[row // 2]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + completion])).logits[0]
        log_probs = logits[len(prompt) - 1 : -1].log_softmax(-1)
        expected = log_probs.gather(-1, torch.tensor(completion)[:, None]).sum().item()
        assert rollouts.logprob_sums[row] == pytest.approx(expected, abs=1e-3)


def test_draws_follow_the_model_distribution(model):
    prompt = PROMPTS[0]
    with torch.no_grad():
        probs = model(torch.tensor([prompt])).logits[0, -1].softmax(-1)
    draws = 20_000
    rollouts = sample(model, [prompt], draws, 1, 1.0, None, PAD, torch.Generator().manual_seed(0))
    counts = torch.bincount(torch.tensor(rollouts.tokens).flatten(), minlength=probs.numel())
    total_variation = 0.5 * (counts / draws - probs).abs().sum().item()
    assert total_variation < 0.03


def test_top_p_only_draws_from_the_nucleus(model):
    prompt = PROMPTS[1]
    with torch.no_grad():
        probs = model(torch.tensor([prompt])).logits[0, -1].softmax(-1)
    sorted_probs, order = probs.sort(descending=True)
    mass_before = sorted_probs.cumsum(0) - sorted_probs
    nucleus = set(order[mass_before < 0.5].tolist())
    assert 1 < len(nucleus) < 10  # the test model's five likeliest tokens, each with probability >= 0.05
    rollouts = sample(model, [prompt], 2000, 1, 1.0, None, PAD, torch.Generator().manual_seed(0), top_p=0.5)
    assert {completion[0] for completion in rollouts.tokens} == nucleus
