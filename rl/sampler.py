"""Batched autoregressive sampling for RL rollouts and evaluation.

GRPO draws K completions per prompt, and evaluation draws up to 128. `model.generate(num_return_sequences=K)`
repeats every prompt K times *before* the prefill, so the prompt (often longer than the answer) is encoded K times,
and each decode step pays for generate's logits processors, stopping criteria and mask rebuilding. Here each distinct
prompt is prefilled once, its key/value cache is then repeated to its K samples, and decoding runs on a preallocated
static cache with an attention mask that is updated in place, so a decode step is one model call and a handful of
tensor ops.

Rows of the result are prompt-major (row i belongs to prompt i // k), the layout `rl.losses.group_advantages`
expects.
"""

from dataclasses import dataclass

import torch
from transformers import StaticCache


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


@torch.inference_mode()
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
    device = model.device
    input_ids, prompt_valid = _left_pad(prompt_ids, pad_token_id, device)
    num_prompts, prompt_len = input_ids.shape
    total_len = prompt_len + max_new_tokens

    # A key position is attendable once it holds a real token; generated positions are switched on as they fill.
    key_valid = torch.zeros(num_prompts, total_len, dtype=torch.bool, device=device)
    key_valid[:, :prompt_len] = prompt_valid
    cache = StaticCache(config=model.config, max_cache_len=total_len)

    prefill_hidden = model.model(
        input_ids=input_ids,
        attention_mask={"full_attention": _prefill_mask(key_valid, prompt_len)},
        position_ids=(prompt_valid.long().cumsum(-1) - 1).clamp(min=0),
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state[:, -1]

    # Fan each prompt out to its k samples only now, so the prompt is encoded once, not k times.
    rows = torch.arange(num_prompts, device=device).repeat_interleave(k)
    cache.reorder_cache(rows)
    key_valid = key_valid[rows]
    next_position = prompt_valid.sum(-1)[rows].unsqueeze(-1)
    logits = model.lm_head(prefill_hidden)[rows].float()

    batch = num_prompts * k
    generated = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    logprob_sums = torch.zeros(batch, device=device) if return_logprobs else None
    decode_mask = key_valid[:, None, None, :]  # a view: in-place updates of key_valid show through
    steps_taken = 0
    for step in range(max_new_tokens):
        token, log_probs = _choose(logits, temperature, top_p, generator, return_logprobs)
        token = token.masked_fill(finished, pad_token_id)
        generated[:, step] = token
        steps_taken = step + 1
        if logprob_sums is not None:
            logprob_sums += log_probs.gather(-1, token[:, None]).squeeze(-1).masked_fill(finished, 0.0)
        if stop_token_id is not None:
            finished |= token == stop_token_id
            if bool(finished.all()):
                break
        if step == max_new_tokens - 1:
            break
        key_valid[:, prompt_len + step] = True
        hidden = model.model(
            input_ids=token[:, None],
            attention_mask={"full_attention": decode_mask},
            position_ids=next_position + step,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state[:, -1]
        logits = model.lm_head(hidden).float()

    return _collect(generated[:, :steps_taken], finished, logprob_sums, stop_token_id, k)


def _left_pad(prompt_ids: list[list[int]], pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding keeps every prompt's last token in the final column, where decoding continues from."""
    if not prompt_ids or any(len(prompt) == 0 for prompt in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    width = max(len(prompt) for prompt in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    valid = torch.zeros(len(prompt_ids), width, dtype=torch.bool)
    for row, prompt in enumerate(prompt_ids):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        valid[row, width - len(prompt) :] = True
    return input_ids.to(device), valid.to(device)


def _prefill_mask(key_valid: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Causal mask over real tokens, [P, 1, prompt_len, total_len].

    A padding query would otherwise see no key at all, and a fully masked softmax row yields NaN, which would then be
    stored in the cache; letting it see itself keeps its (ignored) output finite.
    """
    total_len = key_valid.shape[1]
    query_pos = torch.arange(prompt_len, device=key_valid.device)[:, None]
    key_pos = torch.arange(total_len, device=key_valid.device)[None, :]
    mask = (key_pos <= query_pos) & key_valid[:, None, :]
    mask |= key_pos == query_pos
    return mask[:, None]


def _choose(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None, want_log_probs: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if temperature == 0:
        token = logits.argmax(-1)
        return token, (torch.log_softmax(logits, -1) if want_log_probs else None)
    logits = logits / temperature
    if top_p < 1.0:
        logits = _nucleus_filter(logits, top_p)
    probs = torch.softmax(logits, -1)
    token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return token, (torch.log_softmax(logits, -1) if want_log_probs else None)


def _nucleus_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (the top token always survives)."""
    sorted_logits, order = logits.sort(-1, descending=True)
    sorted_probs = sorted_logits.softmax(-1)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _collect(
    generated: torch.Tensor,
    finished: torch.Tensor,
    logprob_sums: torch.Tensor | None,
    stop_token_id: int | None,
    k: int,
) -> Rollouts:
    rows = generated.tolist()
    if stop_token_id is not None:
        rows = [row[: row.index(stop_token_id) + 1] if stop_token_id in row else row for row in rows]
    return Rollouts(
        k=k,
        tokens=rows,
        stopped=finished.tolist(),
        logprob_sums=None if logprob_sums is None else logprob_sums.tolist(),
    )
