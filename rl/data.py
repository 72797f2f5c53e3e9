"""RL prompt pools and the edge-of-competence filter.

A pool is one split of a corpus (the corpus spec already fixes the op range and context mix), tokenized up to
`<solution>`. Which prompts a step uses is a pure function of (seed, step) and of the filter's current
selection, which is saved with the checkpoints, so a resumed run draws the same prompts as an uninterrupted one.

The edge-of-competence filter (recommended by the paper, never tested there) keeps the prompts the current
model gets wrong greedily but right at least once in k samples: the ones with a learning signal that is
neither zero-variance "too hard" nor already solved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datagen.corpus import load_gold, read_split
from datagen.graph import Problem
from datagen.verify import verify


@dataclass(frozen=True)
class Prompt:
    index: int  # row in the pool
    id: str
    op: int
    context: str
    ids: list[int]  # prompt tokens, ending with <solution>
    gold: Problem
    names: dict[int, str]


class PromptPool:
    def __init__(self, corpus: str | Path, split: str, tokenizer, style: str):
        frame = read_split(corpus, split, columns=["id", "op", "context", "text", "graph"])
        prompts = [text[: text.index("<solution>") + len("<solution>")] for text in frame["text"]]
        ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        self.style = style
        self.prompts = []
        for i, (row, prompt_ids) in enumerate(zip(frame.itertuples(index=False), ids)):
            gold, names = load_gold({"graph": row.graph})
            self.prompts.append(Prompt(i, row.id, int(row.op), row.context, prompt_ids, gold, names))
        self.active: list[int] = list(range(len(self.prompts)))  # indices the filter currently keeps

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, seed: int, step: int, n: int) -> list[Prompt]:
        """Step `step`'s prompts: the step's slice of seeded permutations of the active prompts, so a pool of
        steps × n rows gives every step unseen prompts (the paper uses each prompt once); a smaller pool
        starts a fresh permutation when one is used up."""
        size = len(self.active)
        positions = [divmod(position, size) for position in range(step * n, (step + 1) * n)]
        orders = {epoch: np.random.default_rng([seed, epoch, 1]).permutation(size) for epoch, _ in positions}
        picks = [orders[epoch][offset] for epoch, offset in positions]
        return [self.prompts[self.active[i]] for i in picks]

    def candidates(self, seed: int, step: int, n: int) -> list[Prompt]:
        rng = np.random.default_rng([seed, step, 2])
        picks = rng.choice(len(self.prompts), size=min(n, len(self.prompts)), replace=False)
        return [self.prompts[i] for i in sorted(picks)]

    def score(self, prompt: Prompt, completion: str):
        return verify(completion, prompt.gold, prompt.names, self.style)

    def state_dict(self) -> dict:
        return {"active": list(self.active)}

    def load_state_dict(self, state: dict) -> None:
        self.active = list(state["active"])


def edge_of_competence(pool: PromptPool, candidates: list[Prompt], greedy_ok: list[bool],
                       sampled_ok: list[list[bool]]) -> list[int]:
    """Pool indices of candidates failed greedily (pass@1) but solved at least once in k samples (pass@k)."""
    return [p.index for p, g, s in zip(candidates, greedy_ok, sampled_ok) if not g and any(s)]


def generator_for(seed: int, step: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch RNG that depends only on (seed, step, stream), so sampling is reproducible across resumes; on the
    device of the tensors it draws (a CPU generator cannot draw on a GPU)."""
    seed_value = int(np.random.default_rng([seed, step, stream]).integers(2**62))
    return torch.Generator(device).manual_seed(seed_value)
