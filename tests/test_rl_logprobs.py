"""The log-probs RL trains on are those of the distribution the sampler drew from, at any temperature and top_p.

PPO's ratio compares new and old probabilities of the sampled tokens under the sampling policy. The sampler's own
per-completion log-prob sums are the independent oracle: `sequence_logprobs` (one full forward pass, right-padded)
must reproduce them, where the untempered model is off by nats.
"""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from core.sampler import sample
from rl.module import sequence_logprobs

PAD, STOP = 0, 7
PROMPTS = [[5, 17, 42, 8, 99, 23, 61], [11, 3], [70, 70, 12, 64, 9]]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False, initializer_range=0.3)
    return Qwen2ForCausalLM(config).eval()


def rollout_and_recompute(model, temperature, top_p):
    k = 4
    rollouts = sample(model, PROMPTS, k, 16, temperature, STOP, PAD, torch.Generator().manual_seed(1), top_p=top_p,
                      return_logprobs=True)
    sequences = [PROMPTS[i // k] + tokens for i, tokens in enumerate(rollouts.tokens)]
    starts = [len(PROMPTS[i // k]) for i in range(len(sequences))]
    with torch.no_grad():
        logp, mask, entropy = sequence_logprobs(model, sequences, starts, PAD, temperature, top_p, with_entropy=True)
    assert mask.sum(1).tolist() == rollouts.lengths  # every completion token, stop token included, and no other
    return torch.tensor(rollouts.logprob_sums), (logp * mask).sum(1), entropy, mask


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.8), (0.7, 0.9), (1.3, 0.6), (0.0, 1.0)])
def test_training_logprobs_equal_the_samplers(model, temperature, top_p):
    sampler, training, entropy, mask = rollout_and_recompute(model, temperature, top_p)
    per_token_gap = (training - sampler).abs() / mask.sum(1)  # float32 sums of ~16 log-probs of a few nats each
    assert per_token_gap.max() < 1e-5
    assert torch.isfinite(entropy[mask.bool()]).all() and (entropy[mask.bool()] >= 0).all()


@pytest.mark.parametrize("temperature, top_p", [(0.7, 1.0), (1.0, 0.8)])
def test_the_untempered_model_is_the_wrong_distribution(model, temperature, top_p):
    """The bug this guards against: scoring the samples under temperature 1 without the nucleus."""
    sampler, _, _, _ = rollout_and_recompute(model, temperature, top_p)
    k = 4
    rollouts = sample(model, PROMPTS, k, 16, temperature, STOP, PAD, torch.Generator().manual_seed(1), top_p=top_p)
    sequences = [PROMPTS[i // k] + tokens for i, tokens in enumerate(rollouts.tokens)]
    starts = [len(PROMPTS[i // k]) for i in range(len(sequences))]
    with torch.no_grad():
        logp, mask, _ = sequence_logprobs(model, sequences, starts, PAD)
    assert ((logp * mask).sum(1) - sampler).abs().max() > 0.1


def test_the_sampled_token_never_leaves_the_nucleus(model):
    """Scored under a nucleus it would not be in (here: a tiny top_p), a sampled token keeps a finite log-prob."""
    sequences, starts = [PROMPTS[0] + [1, 2, 3]], [len(PROMPTS[0])]
    with torch.no_grad():
        logp, mask, _ = sequence_logprobs(model, sequences, starts, PAD, temperature=1.0, top_p=1e-6)
    assert torch.isfinite(logp[mask.bool()]).all() and (logp[mask.bool()] <= 0).all()
