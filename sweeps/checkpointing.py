"""Requeue-on-timeout wrapper for stage entry points.

Why it is shaped so: every stage already resumes from its own last on-disk checkpoint when
re-run with the same arguments, so on timeout or preemption there is no in-memory state worth
saving -- requeueing the identical call is the whole recovery. The wrapper therefore holds no
state of its own, and the stage is named by import path ("pkg.module:function") rather than
pickled, so the requeued job imports the code as it is on disk and the pickle stays tiny.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import submitit


def resolve(fn_path: str) -> Callable[..., Any]:
    module_name, sep, attr = fn_path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'pkg.module:function', got {fn_path!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


class CheckpointableStage(submitit.helpers.Checkpointable):
    def __call__(self, fn_path: str, *args: Any) -> Any:
        return resolve(fn_path)(*args)

    # Same as submitit's default, spelled out because it *is* the recovery contract: on
    # USR2 (timeout/preemption) submitit pickles this and requeues the job with it.
    def checkpoint(self, fn_path: str, *args: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, fn_path, *args)
