"""GRPO-family RL as a LightningModule with manual optimization.

One Lightning "batch" is one RL step: draw N prompts, sample K completions each with the shared-prefill
sampler, score them with the verifier-based reward, then take `updates × N / mini_batch_prompts` optimizer
steps on the clipped surrogate. Manual optimization because an RL step is several optimizer steps over data
the step itself generated; micro-batches only bound memory (their losses are weighted so the gradient equals
that of the whole mini-batch). Everything random is seeded by (seed, step), and the filter, reward schedule
and compute ledger are saved in the checkpoint, so a resumed run repeats an uninterrupted one.

Data parallel (Lightning DDP): prompt g of a step belongs to rank g mod W, which samples and scores its
rollouts; the ranks then exchange the scored rollouts, so every rank holds the whole step (rewards, advantages,
logs, ledger agree) and each computes the gradient of its own groups' rows. Losses are weighted by the whole
mini-batch's normaliser and by W (DDP averages gradients), so the all-reduced gradient is the one gradient of
the mini-batch. Ranks run the same number of backward passes (a rank short of rows runs a zero-weight one), as
every DDP backward is a collective.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F

from core.sampler import Rollouts, sample, sampling_logits
from rl.budget import ComputeLedger
from rl.config import RLConfig
from rl.data import PromptPool, edge_of_competence, generator_for
from rl.losses import group_advantages, policy_loss, zero_variance_mask
from rl.rewards import RewardSchedule, reward


def sequence_logprobs(model, sequences: list[list[int]], starts: list[int], pad_id: int, temperature: float = 1.0,
                      top_p: float = 1.0, with_entropy: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs [B, T] of each sequence's tokens from position `start` on, their mask, and entropy.

    The log-probs are those of the distribution the sampler drew from at (temperature, top_p), via the sampler's own
    `sampling_logits`: PPO's ratio is new/old probability of the *sampled* tokens under the *sampling* policy, and
    the untempered model at temperature 0.7 is off by nats per token. The sampled token always stays in the nucleus.
    """
    device = next(model.parameters()).device
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
    ids, attention = ids.to(device), attention.to(device)
    logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
    targets = ids[:, 1:]
    sampled = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, targets[..., None], True) if top_p < 1 else None
    logp_all = F.log_softmax(sampling_logits(logits, temperature, top_p, keep=sampled), dim=-1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    positions = torch.arange(1, width, device=device)[None, :]
    mask = (positions >= torch.tensor(starts, device=device)[:, None]) & attention[:, 1:].bool()
    entropy = None
    if with_entropy:  # tokens cut by the nucleus have probability 0 and contribute 0 (not 0 * -inf)
        probs = logp_all.exp()
        entropy = -(probs * logp_all.masked_fill(probs == 0, 0.0)).sum(-1)
    return logp, mask.float(), entropy


class GRPO(L.LightningModule):
    def __init__(self, policy, reference, tokenizer, pool: PromptPool, cfg: RLConfig, out: Path):
        super().__init__()
        self.automatic_optimization = False
        self.policy, self.cfg, self.pool, self.tokenizer, self.out = policy, cfg, pool, tokenizer, out
        self.reference = [reference]  # a list hides the frozen copy from Lightning's checkpoint and device moves
        self.stop_id = tokenizer.convert_tokens_to_ids("</answer>")
        self.rl_step = 0
        self.filter_kept = 0  # prompts at the edge of competence found by the last refresh
        self.dense_history: list[float] = []
        self.schedule = RewardSchedule(dense=cfg.reward.dense or cfg.reward.name, final=cfg.reward.name,
                                       switch_step=cfg.reward.switch_step if cfg.reward.dense else 0,
                                       window=cfg.reward.plateau_window, tolerance=cfg.reward.plateau_tolerance)
        self.ledger = ComputeLedger(params=policy.num_parameters())

    def on_fit_start(self) -> None:
        if self.reference[0] is not None:
            self.reference[0].to(self.device)

    # ---- one RL step ------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        cfg, step = self.cfg, self.rl_step
        if cfg.edge_filter.enabled and step % cfg.edge_filter.refresh_every == 0:
            self._refresh_filter(step)
        prompts = self.pool.select(cfg.seed, step, cfg.prompts_per_step)
        rank, world = self.global_rank, self.trainer.world_size
        mine = prompts[rank::world]
        completions, rollouts = self._rollouts(
            [p.ids for p in mine], cfg.rollouts, cfg.temperature,
            generator_for(cfg.seed, step, 0 if rank == 0 else 100 + rank, self.device), return_logprobs=True)
        verdicts = [self.pool.score(mine[i // cfg.rollouts], text) for i, text in enumerate(completions)]
        if world > 1:
            completions, rollouts, verdicts = _gather_rollouts(completions, rollouts, verdicts, world, cfg.rollouts)
        active = self.schedule.active(step, self.dense_history)
        rewards = torch.tensor([reward(active, v, t, cfg.reward.alpha) for v, t in zip(verdicts, completions)])
        if self.schedule.dense != self.schedule.final:
            self.dense_history.append(sum(reward(self.schedule.dense, v, t, cfg.reward.alpha)
                                          for v, t in zip(verdicts, completions))
                                      / len(verdicts))
        zero_var = zero_variance_mask(rewards, cfg.rollouts)
        advantages = group_advantages(rewards, cfg.rollouts, cfg.normalize_std)

        groups = [g for g in range(len(prompts)) if not (cfg.drop_zero_variance and zero_var.constant[g])]
        sequences = [prompts[i // cfg.rollouts].ids + rollouts.tokens[i] for i in range(len(completions))]
        starts = [len(prompts[i // cfg.rollouts].ids) for i in range(len(completions))]
        update_stats = self._update(groups, sequences, starts, advantages, rollouts.logprob_sums, step) if groups else {}

        self.ledger.record_step(
            prompts=len(prompts), rollouts=cfg.rollouts, prompt_tokens=sum(len(p.ids) for p in prompts),
            generated_tokens=rollouts.lengths, updates=cfg.updates * len(groups) / max(len(prompts), 1),
            with_reference=cfg.kl_coef > 0, with_old_logprobs=True)
        self._log(step, active, rewards, verdicts, zero_var, rollouts, update_stats)
        if cfg.completions_every and step % cfg.completions_every == 0 and self.trainer.is_global_zero:
            self._write_completions(step, prompts, completions, rewards, verdicts)
        self.rl_step += 1
        if self.finished():
            self.trainer.should_stop = True

    def finished(self) -> bool:
        """Out of steps or, in a fixed-compute run, within half a step of the compute budget: the next step would
        overshoot it by more than stopping now falls short (steps priced at their mean, so a resume agrees)."""
        if self.rl_step >= self.cfg.steps:
            return True
        if self.cfg.compute_budget is None or not self.ledger.steps:
            return False
        spent = self.ledger.realised(self.cfg.budget_l_mode)
        return spent + spent / self.ledger.steps / 2 >= self.cfg.compute_budget

    def _rollouts(self, prompt_ids, k, temperature, generator, return_logprobs=False):
        self.policy.eval()
        rollouts = sample(self.policy, prompt_ids, k, self.cfg.max_new_tokens, temperature, self.stop_id,
                          self.tokenizer.pad_token_id, generator, top_p=self.cfg.top_p,
                          return_logprobs=return_logprobs)
        self.policy.train()
        return self.tokenizer.batch_decode(rollouts.tokens), rollouts

    def _update(self, groups, sequences, starts, advantages, sampler_logprobs, step) -> dict:
        cfg, k = self.cfg, self.cfg.rollouts
        rank, world = self.global_rank, self.trainer.world_size
        rows = [g * k + j for g in groups if g % world == rank for j in range(k)]  # this rank's rows
        pad, sampling = self.tokenizer.pad_token_id, {"temperature": cfg.temperature, "top_p": cfg.top_p}
        old, ref = {}, {}
        # The sampler's own log-prob of each completion against the one the ratio starts from: they must agree
        # (up to float rounding), or the update optimises some other distribution than the one sampled.
        logprob_gap = 0.0
        with torch.no_grad():
            for chunk in _chunks(rows, cfg.micro_batch):
                seqs, st = [sequences[r] for r in chunk], [starts[r] for r in chunk]
                logp, mask, _ = sequence_logprobs(self.policy, seqs, st, pad, **sampling)
                old.update(zip(chunk, logp))
                sums = torch.tensor([sampler_logprobs[r] for r in chunk], device=logp.device)
                logprob_gap = max(logprob_gap, float(((logp * mask).sum(1) - sums).abs().max()))
                if cfg.kl_coef > 0:
                    logp_ref, _, _ = sequence_logprobs(self.reference[0], seqs, st, pad, **sampling)
                    ref.update(zip(chunk, logp_ref))
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        per_mini = cfg.mini_batch_prompts
        totals: dict[str, list[float]] = {}
        order_rng = generator_for(cfg.seed, step, 1)
        for _ in range(cfg.updates):
            shuffled = [groups[i] for i in torch.randperm(len(groups), generator=order_rng).tolist()]
            for mini in _chunks(shuffled, per_mini):
                mini_rows = [g * k + j for g in mini for j in range(k)]
                norm = self._normaliser(mini_rows, sequences, starts) / world  # DDP averages over the ranks
                optimizer.zero_grad()
                shares = [[g * k + j for g in mini if g % world == r for j in range(k)] for r in range(world)]
                passes = max(-(-len(share) // cfg.micro_batch) for share in shares)
                chunks = list(_chunks(shares[rank], cfg.micro_batch))
                for _ in range(passes - len(chunks)):  # keep step with the other ranks' backward passes
                    logp, _, _ = sequence_logprobs(self.policy, [sequences[mini_rows[0]]], [starts[mini_rows[0]]], pad)
                    self.manual_backward(logp.sum() * 0.0)
                for chunk in chunks:
                    seqs, st = [sequences[r] for r in chunk], [starts[r] for r in chunk]
                    logp, mask, entropy = sequence_logprobs(self.policy, seqs, st, pad, **sampling,
                                                            with_entropy=True)
                    width = logp.shape[1]
                    loss, stats = policy_loss(
                        logp, _stack([old[r] for r in chunk], width), advantages[chunk].to(logp.device), mask,
                        cfg.clip_low, cfg.clip_high, cfg.aggregation, max_len=cfg.max_new_tokens,
                        kl_coef=cfg.kl_coef, logp_ref=_stack([ref[r] for r in chunk], width) if ref else None)
                    weight = (mask.sum() if cfg.aggregation == "token_mean" else len(chunk)) / norm
                    self.manual_backward(loss * weight)
                    stats["entropy"] = (entropy.detach() * mask).sum() / mask.sum().clamp(min=1)
                    for name, value in stats.items():
                        totals.setdefault(name, []).append(float(value))
                self.clip_gradients(optimizer, gradient_clip_val=cfg.grad_clip or None, gradient_clip_algorithm="norm")
                optimizer.step()
        scheduler.step()
        return {"logprob_gap": logprob_gap, **{name: sum(v) / len(v) for name, v in totals.items()}}

    def _normaliser(self, rows, sequences, starts) -> float:
        if self.cfg.aggregation == "token_mean":
            return float(sum(len(sequences[r]) - starts[r] for r in rows))
        return float(len(rows))

    def _refresh_filter(self, step: int) -> None:
        f = self.cfg.edge_filter
        candidates = self.pool.candidates(self.cfg.seed, step, f.candidates)
        ids = [p.ids for p in candidates]
        greedy, greedy_rollouts = self._rollouts(ids, 1, 0.0, None)
        sampled, sampled_rollouts = self._rollouts(ids, f.k, self.cfg.temperature, generator_for(self.cfg.seed, step, 2, self.device))
        greedy_ok = [self.pool.score(p, t).verified for p, t in zip(candidates, greedy)]
        sampled_ok = [[self.pool.score(p, sampled[i * f.k + j]).verified for j in range(f.k)]
                      for i, p in enumerate(candidates)]
        kept = edge_of_competence(self.pool, candidates, greedy_ok, sampled_ok)
        self.pool.active = kept or list(range(len(self.pool)))  # nothing at the edge: fall back to the pool
        self.filter_kept = len(kept)
        prompt_tokens = sum(map(len, ids))
        self.ledger.record_scoring(prompt_tokens * 2, greedy_rollouts.lengths + sampled_rollouts.lengths)

    # ---- logging --------------------------------------------------------------------------------------------
    def _log(self, step, active, rewards, verdicts, zero_var, rollouts, update_stats) -> None:
        n = len(verdicts)
        metrics = {
            "rl/step": float(step), "rl/reward": float(rewards.mean()),
            "rl/verified": sum(v.verified for v in verdicts) / n,
            "rl/answer_correct": sum(v.answer_correct for v in verdicts) / n,
            "rl/process_acc": sum(v.process_acc for v in verdicts) / n,
            "rl/zero_var_all0": float(zero_var.all_zero.float().mean()),
            "rl/zero_var_all1": float(zero_var.all_one.float().mean()),
            "rl/zero_var": float(zero_var.constant.float().mean()),
            "rl/response_length": sum(rollouts.lengths) / n,
            "rl/stopped": sum(rollouts.stopped) / n,
            "rl/tokens_generated": float(self.ledger.generated_tokens + sum(rollouts.lengths)),
            "rl/dense_reward": float(active != self.schedule.final),
            "rl/lr": self.optimizers().param_groups[0]["lr"],
            **{f"rl/{name}": value for name, value in update_stats.items()},
        }
        if self.cfg.edge_filter.enabled:  # logged every step: Lightning repeats a metric's last value anyway
            metrics.update({"filter/kept": float(self.filter_kept), "filter/active": float(len(self.pool.active))})
        self.log_dict(metrics, prog_bar=False)
        self.log("reward", metrics["rl/reward"], prog_bar=True)

    def _write_completions(self, step, prompts, completions, rewards, verdicts) -> None:
        path = self.out / "completions.jsonl"
        with path.open("a") as f:
            for i in range(0, len(completions), self.cfg.rollouts):  # the first sample of each prompt
                prompt = prompts[i // self.cfg.rollouts]
                f.write(json.dumps({"step": step, "prompt_id": prompt.id, "op": prompt.op, "context": prompt.context,
                                    "completion": completions[i], "reward": float(rewards[i]),
                                    "error": verdicts[i].error}) + "\n")

    # ---- optimizer and resumable state ----------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        warmup = max(self.cfg.warmup_steps, 0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rl_state"] = {"rl_step": self.rl_step, "dense_history": self.dense_history,
                                  "filter_kept": self.filter_kept,
                                  "schedule": self.schedule.state_dict(), "pool": self.pool.state_dict(),
                                  "ledger": self.ledger.summary()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["rl_state"]
        self.rl_step, self.dense_history = state["rl_step"], state["dense_history"]
        self.filter_kept = state["filter_kept"]
        self.schedule.load_state_dict(state["schedule"])
        self.pool.load_state_dict(state["pool"])
        self.ledger = ComputeLedger.from_summary(state["ledger"])


def _gather_rollouts(completions, rollouts, verdicts, world: int, k: int):
    """Every rank's scored rollouts, back in the step's prompt order (rank r sampled prompts r, r + world, ...)."""
    shards = [None] * world
    dist.all_gather_object(shards, (completions, rollouts.tokens, rollouts.stopped, verdicts, rollouts.logprob_sums))
    order = sorted(((g * world + r, r, g) for r, shard in enumerate(shards) for g in range(len(shard[0]) // k)))
    pick = [(r, g * k + j) for _, r, g in order for j in range(k)]
    merged = [[shards[r][part][i] for r, i in pick] for part in range(5)]
    return merged[0], Rollouts(k=k, tokens=merged[1], stopped=merged[2], logprob_sums=merged[4]), merged[3]


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _stack(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Stack per-sequence tensors computed at another padding width, right-padding or cutting to `width`."""
    out = torch.zeros((len(rows), width), dtype=rows[0].dtype, device=rows[0].device)
    for i, row in enumerate(rows):
        n = min(width, row.shape[0])
        out[i, :n] = row[:n]
    return out
