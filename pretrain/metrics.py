"""Append-only metrics log (`RUN_DIR/metrics.jsonl`) and its reader.

Lightning's CSVLogger rewrites its file from in-memory rows, so a resumed run loses everything logged before
the interruption. Here every record is appended and flushed as it is logged and the file is never truncated.
A run killed after its last checkpoint logs some steps twice (once before the kill, again after resuming);
`read_metrics` keeps the last value per step, which is the one on the surviving trajectory. A record torn by
SIGKILL mid-write is closed off with a newline on resume and skipped when reading.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only


class JsonlLogger(Logger):
    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        if self.path.exists() and not self.path.read_bytes().endswith(b"\n"):
            with self.path.open("a") as f:
                f.write("\n")

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> None:
        return None  # one log per run directory

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Nothing to do: the recipe writes the full config to RUN_DIR/config.json itself."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> pd.DataFrame:
    """One row per step (index), one column per metric; repeated steps keep their last logged value."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # empty, or torn by a kill
    if not records:
        return pd.DataFrame()
    return pd.DataFrame.from_records(records).groupby("step").last()
