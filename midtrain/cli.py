"""`lab midtrain --preset NAME --data CORPUS --init RUN_DIR --out RUN_DIR2 [--field value ...]`.

Continued pre-training of RUN_DIR/model on another corpus with a fresh optimizer and its own warmup + cosine
schedule over its own token budget. The checkpoint, its tokenizer against the corpus's, and the corpus's shard
checksums are all checked before training starts.
"""

from __future__ import annotations

from midtrain.config import MidtrainConfig
from pretrain.cli import command


def main(argv: list[str]) -> int:
    return command("midtrain", MidtrainConfig, argv, __doc__, needs_init=True)
