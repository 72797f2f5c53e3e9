"""Rewards as a registry over one verifier verdict, plus the DELTA-style dense→binary schedule.

Every reward is computed from `datagen.verify.verify`, the same function evaluation uses, so "correct
process" means one thing in training and in evaluation (the original code penalised extra nodes in the
training reward but ignored them in evaluation). Rewards never raise: the verifier scores any string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from datagen.verify import Verdict

# A reward sees the verifier's verdict, the completion text and the mixing weight alpha. Register a new one
# by adding it to REWARDS (e.g. a format or length term); configs then name it.
RewardFn = Callable[[Verdict, str, float], float]

REWARDS: dict[str, RewardFn] = {
    "outcome": lambda v, text, alpha: float(v.answer_correct),
    "process": lambda v, text, alpha: float(v.process_acc),
    "mixed": lambda v, text, alpha: alpha * float(v.answer_correct) + (1 - alpha) * float(v.process_acc),
    "strict": lambda v, text, alpha: float(v.answer_correct and v.process_acc == 1.0),
}


def reward(name: str, verdict: Verdict, completion: str = "", alpha: float = 0.5) -> float:
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r} (known: {', '.join(REWARDS)})")
    return REWARDS[name](verdict, completion, alpha)


@dataclass
class RewardSchedule:
    """Dense reward until a switch, then a binary one (DELTA).

    The switch happens at `switch_step` if set, else once the dense reward's mean over the last `window`
    steps has improved by less than `tolerance` over the window before it (a plateau). `switch_step = 0`
    means the binary reward throughout, `dense = final` disables the schedule.
    """

    dense: str = "process"
    final: str = "outcome"
    switch_step: int | None = None
    window: int = 20
    tolerance: float = 0.01
    switched_at: int | None = None

    def active(self, step: int, dense_history: list[float]) -> str:
        if self.switched_at is None and self._should_switch(step, dense_history):
            self.switched_at = step
        return self.dense if self.switched_at is None else self.final

    def _should_switch(self, step: int, history: list[float]) -> bool:
        if self.switch_step is not None:
            return step >= self.switch_step
        if len(history) < 2 * self.window:
            return False
        recent = sum(history[-self.window:]) / self.window
        before = sum(history[-2 * self.window:-self.window]) / self.window
        return recent - before < self.tolerance

    def state_dict(self) -> dict:
        return {"switched_at": self.switched_at}

    def load_state_dict(self, state: dict) -> None:
        self.switched_at = state["switched_at"]
