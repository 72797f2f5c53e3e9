"""Batched autoregressive sampling for RL rollouts and evaluation.

GRPO draws K completions per prompt, and evaluation draws up to 128. `model.generate(num_return_sequences=K)`
repeats every prompt K times *before* the prefill, so each prompt is encoded K times and its keys/values are stored
and re-read K times at every decode step. Here each distinct prompt is prefilled once and its keys/values are kept
once ("shared prefix"); only the generated suffix is per sample. A decode step attends to both with a custom
attention function that reads each prompt's keys once for all of its K samples. On a small model decoding is bound by
memory traffic and per-call overhead rather than arithmetic, so this, a preallocated suffix cache and a single
uniform draw per row are where the speed comes from (see benchmarks/bench_sampler.py).

Needs a transformers causal LM with `.model` and `.lm_head` whose attention dispatches through `AttentionInterface`
(the Qwen2/Llama family) and no sliding window. The cache is passed as `cache=` (transformers 5.x renamed it from
`past_key_values`, which goes in 5.40); the custom cache layer and attention hook rest on transformers internals, so
setup.cfg bounds transformers to the versions tests/test_sampler.py (the sampler against `generate`) has passed on. Rows of the result are prompt-major (row i belongs to prompt i // k),
the layout `rl.losses.group_advantages` expects.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin


@dataclass(frozen=True)
class Rollouts:
    """Completions for every (prompt, sample) pair, prompt-major."""

    k: int
    tokens: list[list[int]]  # generated ids; the stop token is kept when it was produced
    stopped: list[bool]  # whether the stop token was produced within the budget
    logprob_sums: list[float] | None  # sum of log p(token) under the sampling distribution, if requested

    @property
    def lengths(self) -> list[int]:
        return [len(completion) for completion in self.tokens]


def sample(
    model,
    prompt_ids: list[list[int]],
    k: int,
    max_new_tokens: int,
    temperature: float,
    stop_token_id: int | None,
    pad_token_id: int,
    generator: torch.Generator | None = None,
    top_p: float = 1.0,
    return_logprobs: bool = False,
) -> Rollouts:
    """Draw `k` completions for each prompt.

    temperature 0 decodes greedily (then all k samples of a prompt are identical, and `logprob_sums` are taken under
    the untempered model). `stop_token_id=None` disables stopping, so every row gets exactly `max_new_tokens`.
    """
    if k < 1 or max_new_tokens < 1:
        raise ValueError(f"need k >= 1 and max_new_tokens >= 1, got k={k}, max_new_tokens={max_new_tokens}")
    if getattr(model.config, "use_sliding_window", False):
        raise ValueError("the sampler builds full-attention masks only; sliding-window models are not supported")
    with torch.inference_mode():
        prompts = _left_pad(prompt_ids, pad_token_id, model.device)
        prefix, logits = _prefill(model, prompts)
        sampling = _Sampling(temperature, top_p, generator, return_logprobs)
        generated, finished, logprob_sums = _decode(
            model, prefix, prompts, logits, k, max_new_tokens, sampling, stop_token_id, pad_token_id
        )
    return _collect(generated, finished, logprob_sums, stop_token_id, k)


@dataclass(frozen=True)
class _Prompts:
    ids: torch.Tensor  # [P, L], left-padded so every prompt's last token is in the last column
    valid: torch.Tensor  # [P, L] bool, False on padding


@dataclass(frozen=True)
class _SharedPrefix:
    """Every prompt's keys/values once, per layer [P, kv_heads, L, head_dim], and which positions are padding."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    padding: torch.Tensor


@dataclass(frozen=True)
class _Sampling:
    temperature: float
    top_p: float
    generator: torch.Generator | None
    return_logprobs: bool


def _left_pad(prompt_ids: list[list[int]], pad_token_id: int, device) -> _Prompts:
    if not prompt_ids or any(len(prompt) == 0 for prompt in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    width = max(len(prompt) for prompt in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    valid = torch.zeros(len(prompt_ids), width, dtype=torch.bool)
    for row, prompt in enumerate(prompt_ids):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        valid[row, width - len(prompt) :] = True
    return _Prompts(ids.to(device), valid.to(device))


def _prefill(model, prompts: _Prompts) -> tuple[_SharedPrefix, torch.Tensor]:
    """Encode the distinct prompts once; returns their keys/values and next-token logits [P, V]."""
    cache = DynamicCache(config=model.config)
    hidden = model.model(
        input_ids=prompts.ids,
        attention_mask=prompts.valid.long(),  # transformers builds the mask in the form its attention kernel wants
        position_ids=(prompts.valid.long().cumsum(-1) - 1).clamp(min=0),
        cache=cache,
        use_cache=True,
    ).last_hidden_state[:, -1]
    padding = ~prompts.valid
    # Padding rows attend to nothing, and some attention kernels return NaN for them. Their keys are masked later, but
    # their values are multiplied by a zero weight, and 0 * NaN would poison every sample of the prompt.
    prefix = _SharedPrefix(
        keys=[layer.keys for layer in cache.layers],
        values=[layer.values.masked_fill(padding[:, None, :, None], 0.0) for layer in cache.layers],
        padding=padding,
    )
    return prefix, model.lm_head(hidden).float()


def _decode(model, prefix, prompts, logits, k, max_new_tokens, sampling, stop_token_id, pad_token_id):
    """Sample token by token until every row has stopped or the budget is spent.

    Finished rows keep being computed (their tokens are overwritten with padding): the shared-prefix attention relies
    on the batch being exactly K rows per prompt, in prompt order.
    """
    device = logits.device
    logits = logits.repeat_interleave(k, dim=0)
    batch = logits.shape[0]
    next_position = prompts.valid.sum(-1).repeat_interleave(k)[:, None]
    suffix_cache = Cache(layers=[_GrowInPlaceLayer(max_new_tokens) for _ in range(model.config.num_hidden_layers)])
    generated = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    logprob_sums = torch.zeros(batch, device=device) if sampling.return_logprobs else None

    with _attention_implementation(model, _SHARED_PREFIX_ATTENTION):
        step = 0
        while True:
            token, log_probs = _choose(logits, sampling)
            token = token.masked_fill(finished, pad_token_id)
            generated[:, step] = token
            if logprob_sums is not None:
                logprob_sums += log_probs.gather(-1, token[:, None]).squeeze(-1).masked_fill(finished, 0.0)
            if stop_token_id is not None:
                finished |= token == stop_token_id
            step += 1
            if step == max_new_tokens or (stop_token_id is not None and bool(finished.all())):
                break
            hidden = model.model(
                input_ids=token[:, None],
                attention_mask={"full_attention": None},  # the prefix mask travels in shared_prefix
                position_ids=next_position + (step - 1),
                cache=suffix_cache,
                use_cache=True,
                shared_prefix=prefix,
            ).last_hidden_state[:, -1]
            logits = model.lm_head(hidden).float()
    return generated[:, :step], finished, logprob_sums


class _GrowInPlaceLayer(CacheLayerMixin):
    """One layer's generated keys/values, in buffers sized for the whole budget.

    A decode step writes one column in place, where transformers' DynamicLayer re-copies the whole cache with
    torch.cat, and attention reads only the filled part, where StaticLayer hands back the empty tail as well.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.filled = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, _ = key_states.shape
        self.keys = key_states.new_empty(batch, heads, self.capacity, key_states.shape[-1])
        self.values = value_states.new_empty(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.filled + key_states.shape[-2]
        self.keys[:, :, self.filled : end] = key_states
        self.values[:, :, self.filled : end] = value_states
        self.filled = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.filled + query_length, 0

    def get_seq_length(self) -> int:
        return self.filled

    def get_max_length(self) -> int:
        return self.capacity


_SHARED_PREFIX_ATTENTION = "rl_sampler_shared_prefix"


def _shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, shared_prefix=None, **kwargs):
    """One decode step's attention over [shared prompt prefix | this row's generated suffix].

    query [P*K, H, 1, D]; key/value [P*K, G, t, D] are the suffix (all real tokens, so unmasked). Query heads are
    grouped by prompt and key/value head, so a prompt's prefix keys are read once for all K samples and all heads in
    the group: two matmuls per part instead of K, and no `repeat_kv` copies. One softmax spans both parts.
    """
    prefix_keys = shared_prefix.keys[module.layer_idx]
    prefix_values = shared_prefix.values[module.layer_idx]
    batch, heads, _, dim = query.shape
    prompts, groups, prefix_len, _ = prefix_keys.shape
    samples, per_group, suffix_len = batch // prompts, heads // groups, key.shape[2]
    query = query.view(prompts, samples, groups, per_group, dim) * (scaling if scaling is not None else dim**-0.5)

    by_prompt = query.transpose(1, 2).reshape(prompts, groups, samples * per_group, dim)
    prefix_scores = torch.matmul(by_prompt, prefix_keys.transpose(-1, -2))  # [P, G, K*R, Lp]
    prefix_scores = prefix_scores.masked_fill(shared_prefix.padding[:, None, None, :], float("-inf"))
    by_row = query.view(batch, groups, per_group, dim)
    suffix_scores = torch.matmul(by_row, key.transpose(-1, -2))  # [P*K, G, R, t]
    suffix_scores = suffix_scores.view(prompts, samples, groups, per_group, suffix_len).transpose(1, 2)

    weights = torch.cat([prefix_scores, suffix_scores.reshape(prompts, groups, samples * per_group, suffix_len)], -1)
    weights = weights.float().softmax(-1).to(value.dtype)
    prefix_out = torch.matmul(weights[..., :prefix_len], prefix_values)  # [P, G, K*R, D]
    suffix_weights = weights[..., prefix_len:].reshape(prompts, groups, samples, per_group, suffix_len)
    suffix_weights = suffix_weights.transpose(1, 2).reshape(batch, groups, per_group, suffix_len)
    suffix_out = torch.matmul(suffix_weights, value)  # [P*K, G, R, D]
    prefix_out = prefix_out.view(prompts, groups, samples, per_group, dim).transpose(1, 2)
    output = prefix_out.reshape(batch, groups, per_group, dim) + suffix_out
    return output.reshape(batch, 1, heads, dim), None


AttentionInterface.register(_SHARED_PREFIX_ATTENTION, _shared_prefix_attention)


@contextmanager
def _attention_implementation(model, name: str) -> Iterator[None]:
    """Switch the model's attention for the decode loop only; the prefill keeps the model's own implementation."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def _choose(logits: torch.Tensor, sampling: _Sampling) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Next token per row and, if requested, the log-probs of the distribution it was drawn from."""
    logits = sampling_logits(logits, sampling.temperature, sampling.top_p)
    if sampling.temperature == 0:
        token = logits.argmax(-1)
    else:
        token = _inverse_cdf_draw(torch.softmax(logits, -1), sampling.generator)
    return token, (torch.log_softmax(logits, -1) if sampling.return_logprobs else None)


def sampling_logits(logits: torch.Tensor, temperature: float, top_p: float = 1.0,
                    keep: torch.Tensor | None = None) -> torch.Tensor:
    """The logits of the distribution `sample` draws from: divided by the temperature, tokens outside the top_p
    nucleus at -inf. Temperature 0 (greedy) leaves them as they are. RL computes its ratio with this same function,
    so the log-probs it trains on are those of the distribution the rollouts came from.

    `keep` [..., V] (bool) marks tokens never cut by the nucleus: training passes the sampled token, which the
    sampler's nucleus held, so a last-bit rounding difference between a decode step and a full forward pass at the
    nucleus boundary cannot turn its log-prob into -inf.
    """
    if temperature == 0:
        return logits
    logits = logits / temperature
    if top_p < 1.0:
        logits = _nucleus_filter(logits, top_p, keep)
    return logits


def _inverse_cdf_draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One uniform number per row, where torch.multinomial draws one exponential per vocabulary entry: with a 2k
    vocabulary its random number generation took a tenth of a decode step."""
    cdf = probs.cumsum(-1)
    # Scaling by the row total absorbs cumsum rounding; right=True never lands on a zero-probability token.
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def _nucleus_filter(logits: torch.Tensor, top_p: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (the top token always survives)."""
    sorted_logits, order = logits.sort(-1, descending=True)
    sorted_probs = sorted_logits.softmax(-1)
    drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    if keep is not None:
        drop &= ~keep
    return logits.masked_fill(drop, float("-inf"))


def _collect(generated, finished, logprob_sums, stop_token_id, k) -> Rollouts:
    rows = generated.tolist()
    if stop_token_id is not None:
        rows = [row[: row.index(stop_token_id) + 1] if stop_token_id in row else row for row in rows]
    return Rollouts(
        k=k,
        tokens=rows,
        stopped=finished.tolist(),
        logprob_sums=None if logprob_sums is None else logprob_sums.tolist(),
    )
