"""Packed next-token batches streamed from a corpus's parquet shards.

Shaped by four requirements:
- *Bounded memory.* Shards are streamed one record batch ("block", `block_rows` rows) at a time; only the
  `n_tokens` column of a whole shard is ever read at once, and that column alone decides the packing.
- *No attention across documents.* Documents (text + eos) are packed whole, in order, into fixed-length rows;
  `position_ids` restart at 0 for every document. Given restarting positions and no 2-D attention mask,
  transformers' masking utilities (`find_packed_sequence_indices`) build a block-diagonal causal mask for
  sdpa/eager/flex, so a packed document sees exactly what it would see alone. The first token of a document is
  never a target, so nothing is predicted across a boundary either. A document longer than a row is truncated.
- *Deterministic and resumable mid-epoch.* Sequence k of the stream is a pure function of (corpus, seed, k):
  the shard order is permuted per epoch and the rows of each block per (epoch, shard, block), all seeded.
  A curriculum corpus (datagen `curriculum` > 0) keeps its shards in the order written, every epoch: its order
  is the point, and shuffling rows within a block (4,096 rows by default) leaves it intact.
  A resumed run starts the stream at `global_step × sequences per step`, so nothing about the data needs
  saving in a checkpoint, and fast-forwarding reads only `n_tokens` columns.
- *Worker-count independent.* With N DataLoader workers, worker w builds batches w, w+N, ... and the DataLoader
  interleaves them round-robin, so the batch sequence is identical for any N (each worker still walks the
  cheap packing plan, but reads text and tokenizes only its own blocks).
- *Split by rank.* With W data-parallel processes, the stream is cut into micro-batches and micro-batch b goes
  to rank b mod W, so sequence k is a function of (step, rank, W), every sequence of a step is trained on by
  exactly one rank, and a global step covers the same sequences as on one process.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from transformers import PreTrainedTokenizerFast

from core.rundir import InputError
from datagen.corpus import CorpusError, read_manifest
from pretrain.config import TrainConfig

IGNORE = -100  # label value cross_entropy skips (HF convention)
SOLUTION_TOKEN = "<solution>"


def pack(lengths: np.ndarray, seq_len: int) -> list[int]:
    """Greedy in-order packing: index of each row's first document, plus len(lengths) as the end.

    A document longer than `seq_len` fills a row on its own (and is truncated when the row is built)."""
    starts, used = [0], 0
    for i, n in enumerate(np.minimum(lengths, seq_len).tolist()):
        if used + n > seq_len:
            starts.append(i)
            used = 0
        used += n
    if len(lengths):
        starts.append(len(lengths))
    return starts


def split_shards(corpus: Path, split: str, manifest: dict | None = None) -> list[Path]:
    manifest = manifest or read_manifest(corpus)
    shards = [corpus / s["file"] for s in manifest["shards"] if s["split"] == split and s["rows"]]
    if not shards:
        raise InputError(f"{corpus}: no rows in split {split!r}")
    return shards


class PackedStream(IterableDataset):
    """Sequences `start`..`stop`-1 of the packed stream of one split (epochs repeat as needed).

    `len()` is this rank's share of `stop`, the whole run, not of `stop - start`: Lightning counts a resumed epoch from where the
    checkpoint left it, so the epoch it sees must keep its full length."""

    def __init__(self, corpus: str | Path, tokenizer: PreTrainedTokenizerFast, *, split: str, seq_len: int,
                 batch_size: int, seed: int, start: int, stop: int, block_rows: int = 4096,
                 rank: int = 0, world: int = 1):
        if start % (batch_size * world):
            raise ValueError(f"start {start} must be a multiple of batch_size x world = {batch_size * world}")
        self.corpus = Path(corpus)
        manifest = read_manifest(self.corpus)
        self.shards = split_shards(self.corpus, split, manifest)
        self.curriculum = manifest["spec"].get("curriculum", 0) > 0
        self.tokenizer = tokenizer
        self.seq_len, self.batch_size, self.seed, self.block_rows = seq_len, batch_size, seed, block_rows
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.pad, self.eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        self.solution = tokenizer.convert_tokens_to_ids(SOLUTION_TOKEN)

    def __len__(self) -> int:
        return self.stop // self.world  # this rank's share

    def _plans(self, epoch: int, shard: int) -> list[tuple[np.ndarray, list[int]]]:
        """(row permutation, packing) of every block of a shard, from its `n_tokens` column alone."""
        batches = pq.ParquetFile(self.shards[shard]).iter_batches(self.block_rows, columns=["n_tokens"])
        plans = []
        for block, batch in enumerate(batches):
            lengths = batch.column(0).to_numpy()
            order = np.random.default_rng([self.seed, epoch, shard, block]).permutation(len(lengths))
            plans.append((order, pack(lengths[order] + 1, self.seq_len)))
        return plans

    def epoch_sequences(self) -> int:
        """Sequences in the first epoch of the whole stream (all ranks); later epochs pack within a few rows of it."""
        return sum(len(starts) - 1 for shard in range(len(self.shards)) for _, starts in self._plans(0, shard))

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        first_batch = self.start // (self.batch_size * self.world)  # in this rank's batches

        def mine(k: int) -> bool:
            batch = k // self.batch_size  # in the whole stream's
            return (self.start <= k < self.stop and batch % self.world == self.rank
                    and (batch // self.world - first_batch) % workers == worker)

        k = 0  # stream index of the current block's first sequence
        for epoch in itertools.count():
            shards = range(len(self.shards)) if self.curriculum else \
                np.random.default_rng([self.seed, epoch]).permutation(len(self.shards)).tolist()
            for shard in shards:
                plans = self._plans(epoch, shard)
                n = sum(len(starts) - 1 for _, starts in plans)
                if any(mine(j) for j in range(max(k, self.start), min(k + n, self.stop))):
                    yield from self._shard(shard, plans, k, mine)
                k += n
                if k >= self.stop:
                    return

    def _shard(self, shard: int, plans, k: int, mine):
        batches = pq.ParquetFile(self.shards[shard]).iter_batches(self.block_rows, columns=["text", "n_tokens"])
        for (order, starts), batch in zip(plans, batches):
            rows = [r for r in range(len(starts) - 1) if mine(k + r)]
            if rows:
                texts = batch.column("text").to_pylist()
                n_tokens = batch.column("n_tokens").to_pylist()
                docs = [int(i) for r in rows for i in order[starts[r]:starts[r + 1]]]
                ids = dict(zip(docs, self.tokenizer([texts[i] for i in docs], add_special_tokens=False)["input_ids"]))
                for i in docs:
                    if len(ids[i]) != n_tokens[i]:
                        raise CorpusError(f"{self.shards[shard]}: a row tokenizes to {len(ids[i])} tokens, the "
                                          f"shard says {n_tokens[i]} (tokenizer does not match the corpus)")
                for r in rows:
                    yield self.row([ids[int(i)] for i in order[starts[r]:starts[r + 1]]])
            k += len(starts) - 1

    def row(self, docs: list[list[int]]) -> dict[str, torch.Tensor]:
        """One packed row: input_ids, position_ids, labels (unshifted, HF style) and the solution-token mask."""
        size = self.seq_len
        input_ids = np.full(size, self.pad, dtype=np.int64)
        position_ids = np.zeros(size, dtype=np.int64)
        labels = np.full(size, IGNORE, dtype=np.int64)
        solution = np.zeros(size, dtype=bool)
        at = 0
        for doc in docs:
            doc = (doc + [self.eos])[:size]
            n = len(doc)
            input_ids[at:at + n] = doc
            position_ids[at:at + n] = np.arange(n)
            labels[at + 1:at + n] = doc[1:]
            if self.solution in doc:
                solution[at + doc.index(self.solution) + 1:at + n] = True
            at += n
        position_ids[at:] = np.arange(size - at)  # padding: one more document, never a target
        return {"input_ids": torch.from_numpy(input_ids), "position_ids": torch.from_numpy(position_ids),
                "labels": torch.from_numpy(labels), "solution": torch.from_numpy(solution)}


def length_stats(corpus: str | Path, split: str, seq_len: int) -> dict:
    """Document count, tokens and how many documents a row of `seq_len` truncates (reads `n_tokens` only)."""
    lengths = np.concatenate([pq.read_table(p, columns=["n_tokens"]).column(0).to_numpy()
                              for p in split_shards(Path(corpus), split)]) + 1
    return {"documents": int(len(lengths)), "tokens": int(lengths.sum()), "longest": int(lengths.max()),
            "truncated": int((lengths > seq_len).sum())}


class PackedData(L.LightningDataModule):
    """The training stream for a run; where it starts follows from the trainer's (restored) global step."""

    def __init__(self, corpus: str | Path, tokenizer: PreTrainedTokenizerFast, cfg: TrainConfig):
        super().__init__()
        self.corpus, self.tokenizer, self.cfg = Path(corpus), tokenizer, cfg

    def stream(self, start_step: int, rank: int = 0) -> PackedStream:
        per_step = self.cfg.batch_size * self.cfg.accumulate
        micro, _ = self.cfg.rank_batch()
        return PackedStream(self.corpus, self.tokenizer, split=self.cfg.split, seq_len=self.cfg.seq_len,
                            batch_size=micro, seed=self.cfg.seed, block_rows=self.cfg.block_rows,
                            start=start_step * per_step, stop=self.cfg.steps * per_step,
                            rank=rank, world=self.cfg.world_size)

    def train_dataloader(self) -> DataLoader:
        # Lightning restores the checkpoint before asking for the dataloader, so global_step is the resume point.
        start, rank = (self.trainer.global_step, self.trainer.global_rank) if self.trainer is not None else (0, 0)
        stream = self.stream(start, rank)
        return DataLoader(stream, batch_size=stream.batch_size, num_workers=self.cfg.num_workers,
                          pin_memory=torch.cuda.is_available())
