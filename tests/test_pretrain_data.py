"""Packed streaming data: packing, document boundaries, determinism, resumption, worker independence."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from datagen.tokenizer import load_tokenizer
from pretrain.config import ModelConfig
from pretrain.data import IGNORE, PackedStream, pack
from pretrain.model import build_model
from tests.test_pretrain_helpers import corpus


def stream(start=0, stop=24, seed=0, batch_size=4, seq_len=256, block_rows=64):
    return PackedStream(corpus(), load_tokenizer(corpus() / "tokenizer"), split="train", seq_len=seq_len,
                        batch_size=batch_size, seed=seed, start=start, stop=stop, block_rows=block_rows)


def as_array(rows):
    return np.stack([r["input_ids"].numpy() for r in rows])


def test_pack_is_greedy_in_order_and_truncates_long_documents():
    assert pack(np.array([3, 3, 3, 5, 1]), 8) == [0, 2, 4, 5]  # rows [3,3] [3,5] [1]
    assert pack(np.array([20, 2]), 8) == [0, 1, 2]  # a document longer than a row fills one alone
    assert pack(np.array([], dtype=int), 8) == [0]


def test_rows_restart_positions_and_never_target_across_documents():
    ds = stream()
    tok = ds.tokenizer
    row = next(iter(ds))
    ids, pos, labels, sol = (row[k].numpy() for k in ("input_ids", "position_ids", "labels", "solution"))
    starts = np.flatnonzero(pos == 0)
    assert starts[0] == 0 and len(starts) >= 2  # several documents (or one + padding) per row
    for a, b in zip(starts, list(starts[1:]) + [len(ids)]):
        doc = ids[a:b]
        if doc[0] == tok.pad_token_id:  # the padding tail
            assert (labels[a:b] == IGNORE).all() and not sol[a:b].any()
            continue
        assert tok.convert_ids_to_tokens(int(doc[0])) == "<question>" and doc[-1] == tok.eos_token_id
        assert labels[a] == IGNORE and (labels[a + 1:b] == doc[1:]).all()
        s = int(np.flatnonzero(doc == tok.convert_tokens_to_ids("<solution>"))[0])
        assert not sol[a:a + s + 1].any() and sol[a + s + 1:b].all()  # solution = tokens after <solution>
    assert (pos[1:] == 0).sum() + 1 == len(starts)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_document_logits_equal_the_document_alone(attn):
    tok = load_tokenizer(corpus() / "tokenizer")
    model = build_model(ModelConfig(layers=2, hidden=32, ffn=64, heads=2, kv_heads=1, max_len=256), tok, seed=0)
    model.set_attn_implementation(attn)
    model.eval()
    row = next(iter(stream()))
    ids, pos = row["input_ids"][None], row["position_ids"][None]
    starts = torch.nonzero(pos[0] == 0).flatten().tolist() + [ids.shape[1]]
    assert len(starts) >= 3
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        for a, b in zip(starts[:-1], starts[1:]):
            alone = model(input_ids=ids[:, a:b], use_cache=False).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-5, rtol=1e-5)
        # Without restarting positions the second document would attend to the first: logits differ.
        unpacked = model(input_ids=ids, use_cache=False).logits[0]
        assert not torch.allclose(unpacked[starts[1]:starts[2]], packed[starts[1]:starts[2]], atol=1e-3)


def test_order_is_a_function_of_the_seed():
    a, b, c = as_array(stream(seed=0)), as_array(stream(seed=0)), as_array(stream(seed=1))
    assert (a == b).all() and not (a == c).all()


def test_a_resumed_stream_continues_exactly():
    whole = as_array(stream(stop=40))
    assert len(whole) == 40  # more than one epoch of the tiny corpus is fine: epochs repeat, reshuffled
    assert (as_array(stream(start=24, stop=40)) == whole[24:]).all()
    assert len(stream(start=24, stop=40)) == 40  # Lightning sees the whole run's length


def test_epochs_reshuffle():
    per_epoch = stream(stop=10_000).epoch_sequences()
    rows = as_array(stream(stop=2 * per_epoch))
    assert not (rows[:per_epoch] == rows[per_epoch:]).all()


def test_a_curriculum_corpus_is_read_in_the_order_written_every_epoch():
    data = corpus("curriculum")
    tokenizer = load_tokenizer(data / "tokenizer")
    ds = PackedStream(data, tokenizer, split="train", seq_len=256, batch_size=4, seed=0, start=0, stop=1)
    per_epoch = ds.epoch_sequences()
    rows = list(PackedStream(data, tokenizer, split="train", seq_len=256, batch_size=4, seed=0, start=0,
                             stop=2 * per_epoch))
    shard_of = {tuple(ids): i for i, path in enumerate(ds.shards) for ids in tokenizer(
        pq.read_table(path, columns=["text"]).column(0).to_pylist(), add_special_tokens=False)["input_ids"]}

    def shards_in(row):
        ids = row["input_ids"].tolist()
        ends = [i for i, t in enumerate(ids) if t == tokenizer.eos_token_id]
        return {shard_of[tuple(ids[a + 1 if a else 0:b])] for a, b in zip([0] + ends, ends)}

    # A seeded shuffle of 4 shards would start both epochs with shard 0 and end the first with shard 3 1 time in 48.
    assert len(ds.shards) == 4
    assert shards_in(rows[0]) == {0} and shards_in(rows[per_epoch - 1]) == {3} and shards_in(rows[per_epoch]) == {0}


def test_batches_do_not_depend_on_the_number_of_workers():
    def batches(workers):
        loader = DataLoader(stream(start=8, stop=40), batch_size=4, num_workers=workers)
        return torch.cat([b["input_ids"] for b in loader])

    assert torch.equal(batches(0), batches(2))


def test_losses_match_hf_loss_on_the_same_labels():
    """`labels` follow the HF convention, so the all-token loss is exactly what the HF model computes itself,
    and the solution loss is the HF loss with non-solution labels masked."""
    from pretrain.module import token_losses

    tok = load_tokenizer(corpus() / "tokenizer")
    model = build_model(ModelConfig(layers=1, hidden=32, ffn=64, heads=2, kv_heads=1, max_len=256), tok, seed=0)
    batch = next(iter(DataLoader(stream(), batch_size=4)))
    loss_all, loss_solution = token_losses(model, batch)
    hf = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
               use_cache=False).loss
    solution_labels = batch["labels"].masked_fill(~batch["solution"], IGNORE)
    hf_solution = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=solution_labels,
                        use_cache=False).loss
    torch.testing.assert_close(loss_all, hf)
    torch.testing.assert_close(loss_solution, hf_solution)
    assert loss_solution != loss_all


@pytest.mark.parametrize("world,batch_size", [(2, 4), (3, 2)])
def test_ranks_split_the_stream_without_overlap_or_loss(world, batch_size):
    """Every sequence of the single-process stream is trained on by exactly one rank, in the same steps."""
    whole = as_array(stream(start=0, stop=48, batch_size=batch_size * world))
    shares = [as_array(PackedStream(corpus(), load_tokenizer(corpus() / "tokenizer"), split="train", seq_len=256,
                                    batch_size=batch_size, seed=0, start=0, stop=48, block_rows=64,
                                    rank=rank, world=world)) for rank in range(world)]
    assert sum(len(s) for s in shares) == len(whole) == 48
    # Micro-batch b of the whole stream is rank (b mod world)'s micro-batch b // world.
    for b in range(48 // batch_size):
        rank, local = b % world, b // world
        assert (shares[rank][local * batch_size:(local + 1) * batch_size]
                == whole[b * batch_size:(b + 1) * batch_size]).all()
    resumed = PackedStream(corpus(), load_tokenizer(corpus() / "tokenizer"), split="train", seq_len=256,
                           batch_size=batch_size, seed=0, start=2 * batch_size * world, stop=48, block_rows=64,
                           rank=1, world=world)
    assert (as_array(resumed) == shares[1][2 * batch_size:]).all()  # a resumed rank continues its own share
