"""Corpus builder: exact mixtures, disjoint splits, determinism across processes, atomic writes."""

import hashlib
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from core import config
from core.config import ConfigError
from datagen.corpus import (
    SPLIT_BUCKETS,
    CorpusError,
    allocate,
    build_corpus,
    load_gold,
    read_manifest,
    read_split,
    row_plan,
    split_of,
    verify_shards,
)
from datagen.spec import CorpusSpec
from datagen.verify import completion_of, verify


def spec(**kw):
    base = {
        "seed": 3, "rendering": "compact", "splits": {"train": 300, "val": 30, "test": 30},
        "ops": [{"lo": 2, "hi": 5}], "shard_rows": 100, "graph": {"modulus": 23, "distractors": 0.5},
        "contexts": [{"name": "zoo", "share": 0.9}, {"name": "teachers", "share": 0.1, "ops": [{"lo": 2, "hi": 2}]}],
    }
    base.update(kw)
    return config.build(CorpusSpec, base, "datagen")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "corpus"
    build_corpus(spec(), out, progress=False)
    return out


def test_allocate_is_exact_largest_remainder():
    assert allocate({"a": 0.999, "b": 0.001}, 100_000) == {"a": 99_900, "b": 100}
    assert allocate({"a": 0.5, "b": 0.25, "c": 0.25}, 3) == {"a": 1, "b": 1, "c": 1}  # remainders .5 < .75 = .75
    assert allocate({"a": 0.6, "b": 0.3, "c": 0.1}, 3) == {"a": 2, "b": 1, "c": 0}
    counts = allocate({i: 1 / 7 for i in range(7)}, 100)
    assert sum(counts.values()) == 100 and set(counts.values()) <= {14, 15}


@pytest.mark.parametrize("share", [0.0, 0.001, 0.01, 0.1])
def test_context_ratios_are_honoured_exactly(share):
    s = spec(contexts=[{"name": "zoo", "share": 1 - share}, {"name": "teachers", "share": share, "ops": [{"lo": 2, "hi": 2}]}])
    plan = row_plan(s, "train", 10_000)
    teachers = [op for ctx, op in plan if ctx == "teachers"]
    assert len(teachers) == round(10_000 * share)
    assert set(teachers) <= {2}


def test_a_curriculum_orders_rows_easiest_op_first_and_keeps_the_mixture():
    shuffled, ordered = list(row_plan(spec(), "train", 10_000)), list(row_plan(spec(curriculum=1.0), "train", 10_000))
    assert Counter(shuffled) == Counter(ordered)
    ops = np.array([op for _, op in ordered])
    # Ops 2-5 enter at 0, 1/4, 1/2 and 3/4 of the keys: ~810 op-2 rows come before any other, and op 5 waits for
    # the ~5,060 rows keyed below 3/4.
    assert set(ops[:700]) == {2} and np.argmax(ops == 5) > 4500
    assert ops[-1000:].mean() > ops[:1000].mean() + 1.5  # 3.95 against 2.08; shuffled, within ~0.1


def test_curriculum_joins_the_identity_only_when_set():
    assert "curriculum" not in spec().identity()  # corpora built before it existed keep their identity
    assert spec(curriculum=0.5).identity()["curriculum"] == 0.5


def test_operation_tilt_joins_the_identity_only_when_set():
    assert "operation_tilt" not in spec().identity()["graph"]  # corpora built before it existed keep their identity
    tilted = spec(graph={"modulus": 23, "distractors": 0.5, "operation_tilt": 3.0})
    assert tilted.identity()["graph"]["operation_tilt"] == 3.0


def test_op_weights_normalised_per_range():
    s = spec(ops=[{"lo": 2, "hi": 4, "weight": 0.2}, {"lo": 5, "hi": 7, "weight": 0.3}, {"lo": 8, "hi": 10, "weight": 0.5}],
             contexts=[{"name": "zoo", "share": 1.0}])
    w = s.op_weights(s.contexts[0])
    assert w[2] == pytest.approx(0.2 / 3) and w[10] == pytest.approx(0.5 / 3)
    assert sum(w.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("bad, field", [
    ({"contexts": [{"name": "mars", "share": 1.0}]}, r"contexts\[0\]\.name"),
    ({"contexts": [{"name": "zoo", "share": 1.5}]}, r"contexts\[0\]\.share"),
    ({"contexts": [{"name": "zoo", "share": 0.5}]}, r"datagen\.contexts: shares must sum to 1"),
    ({"contexts": []}, r"datagen\.contexts: empty"),
    ({"ops": [{"lo": 0, "hi": 3}]}, r"ops\[0\]\.lo"),
    ({"ops": [{"lo": 2, "hi": 3, "weight": -1}]}, r"ops\[0\]\.weight"),
    ({"ops": []}, r"datagen\.ops: empty"),
    ({"splits": {"trian": 5}}, r"splits\.trian"),
    ({"colour": "blue"}, r"datagen\.colour: unknown key"),
    ({"curriculum": 1.5}, r"datagen\.curriculum: must be in \[0, 1\]"),
])
def test_bad_spec_names_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        spec(**bad)


def test_manifest_counts_and_checksums(corpus):
    m = read_manifest(corpus)
    # Mod 23 at op 3: no reasoning graph hashes into val, so those rows are left out rather than leaked.
    left_out = {split: sum(ops.values()) for split, ops in m["left_out"].items()}
    assert left_out == {"val": sum(m["left_out"]["val"].values())} and set(m["left_out"]["val"]) == {"3"}
    assert {s: m["rows"][s] + left_out.get(s, 0) for s in m["rows"]} == {"train": 300, "val": 30, "test": 30}
    assert m["counts"]["train"]["teachers"] == {"2": 30}
    assert sum(m["counts"]["train"]["zoo"].values()) == 270
    assert all(v == 0 for v in m["split_overlap"].values())
    train = read_split(corpus, "train")
    assert m["arith_ops_per_op"]["train"] == {
        str(op): round(mean, 3) for op, mean in train.groupby("op")["arith_ops"].mean().items()}
    assert m["arith_ops_per_op"]["train"]["2"] == 0  # op 2 is a number and a copy or total of it
    for shard in m["shards"]:
        assert hashlib.sha256((corpus / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]
    verify_shards(corpus)
    assert (corpus / "tokenizer" / "tokenizer.json").exists()


def test_rows_are_consistent_and_verifiable(corpus):
    df = read_split(corpus, "train")
    assert list(df.columns)[:9] == ["id", "split", "op", "arith_ops", "context", "problem", "question", "solution",
                                    "answer"]
    assert df["id"].is_unique
    assert (df["split"] == "train").all()
    for _, row in df.head(50).iterrows():
        problem, names = load_gold(row)
        assert problem.op == row["op"] and problem.arith_ops == row["arith_ops"]
        assert str(problem.evaluate()) == row["answer"]
        assert row["graph_hash"] == problem.canonical_hash()
        assert split_of(row["reasoning_hash"]) == "train" == split_of(problem.reasoning_hash())
        assert row["text"].startswith("<question> ") and row["text"].endswith(" </answer>")
        assert verify(completion_of(row["text"]), problem, names, "compact").verified


def test_splits_disjoint_by_reasoning_hash(corpus):
    hashes = {s: set(read_split(corpus, s)["reasoning_hash"]) for s in ("train", "val", "test")}
    assert not hashes["train"] & hashes["test"] and not hashes["train"] & hashes["val"]
    for split, h in hashes.items():
        lo, hi = SPLIT_BUCKETS[split]
        assert all(lo <= int(x[:12], 16) / 16**12 < hi for x in h)


def test_no_test_reasoning_graph_in_any_corpus_train_split(tmp_path, corpus):
    """Two corpora, other seeds and contexts: no test or val necessary graph of either is trained on by either."""
    other = tmp_path / "other"
    build_corpus(spec(seed=11, contexts=[{"name": "movies", "share": 1.0}], rendering="natural",
                      splits={"train": 400, "val": 40, "test": 60}), other, progress=False)
    reasoning = {(c, s): set(read_split(c, s)["reasoning_hash"]) for c in (corpus, other) for s in ("train", "val", "test")}
    for held_out in ("val", "test"):
        for a in (corpus, other):
            for b in (corpus, other):
                assert not reasoning[a, held_out] & reasoning[b, "train"]
    # Distractors and surface are not part of it: the same reasoning recurs within train at small ops.
    train = read_split(other, "train")
    assert train["reasoning_hash"].nunique() < train["graph_hash"].nunique()
    m = read_manifest(other)
    per_op = m["distinct_graphs_per_op"]
    assert sum(per_op["train"].values()) == m["distinct_graphs"]["train"] == train["reasoning_hash"].nunique()


def test_cells_without_reasoning_graphs_are_left_out_with_a_warning(tmp_path, caplog):
    # Unbounded arithmetic: all eight op-2 reasoning graphs hash into the train bucket, so val has none.
    s = spec(graph={"modulus": None}, contexts=[{"name": "zoo", "share": 1.0}], ops=[{"lo": 2, "hi": 4}],
             splits={"train": 60, "val": 30})
    m = build_corpus(s, tmp_path / "c", progress=False)
    assert m["left_out"] == {"val": {"2": 10}} and m["rows"] == {"train": 60, "val": 20}
    assert "2" not in m["distinct_graphs_per_op"]["val"] and m["distinct_graphs_per_op"]["train"]["2"] <= 8
    assert "val split, op 2: 10 rows left out" in caplog.text
    assert "train split repeats reasoning graphs (op 2: 20 rows / " in caplog.text


def test_parallel_build_is_byte_identical(tmp_path, corpus):
    out = tmp_path / "par"
    build_corpus(spec(workers=2), out, progress=False)
    one = {s["file"]: s["sha256"] for s in read_manifest(corpus)["shards"]}
    two = {s["file"]: s["sha256"] for s in read_manifest(out)["shards"]}
    assert one == two and len(one) == 5


def test_token_budget_sets_train_rows(tmp_path):
    out = tmp_path / "tok"
    m = build_corpus(spec(splits={"train": 1}, train_tokens=20_000), out, progress=False)
    assert 0.8 * 20_000 < m["tokens"]["train"] < 1.2 * 20_000


def test_corrupt_shard_is_named(tmp_path, corpus):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    shard = sorted(copy.glob("train-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CorpusError, match=shard.name):
        verify_shards(copy)


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    import datagen.corpus as corpus_mod

    def boom(*a, **k):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(corpus_mod, "_manifest", boom)
    with pytest.raises(RuntimeError):
        build_corpus(spec(), tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


def _lab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_builds_then_is_idempotent(tmp_path):
    out = tmp_path / "c"
    first = _lab("datagen", "--preset", "smoke", "--out", str(out), "--quiet", "--seed", "5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "train" in first.stdout and (out / "manifest.json").exists()
    assert json.loads((out / "manifest.json").read_text())["spec"]["seed"] == 5
    again = _lab("datagen", "--preset", "smoke", "--out", str(out), "--quiet", "--seed", "5", cwd=tmp_path)
    assert again.returncode == 0 and "already built" in again.stdout
    other = _lab("datagen", "--preset", "smoke", "--out", str(out), "--quiet", "--seed", "6", cwd=tmp_path)
    assert other.returncode != 0 and "different spec" in other.stderr


@pytest.mark.parametrize("args, field", [
    (["--contexts", "[{name: mars, share: 1.0}]"], "contexts[0].name"),
    (["--splits", "{train: 10}", "--contexts", "[{name: zoo, share: 2}]"], "contexts[0].share"),
    (["--ops", "[{lo: 0, hi: 2}]"], "ops[0].lo"),
    (["--frobnicate", "1"], "frobnicate"),
])
def test_cli_bad_spec_exits_nonzero_and_writes_nothing(tmp_path, args, field):
    out = tmp_path / "bad"
    result = _lab("datagen", "--preset", "smoke", "--out", str(out), "--quiet", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert field in result.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_shard_written_in_chunks_is_byte_identical_to_one_written_whole(tmp_path):
    """Shards are assembled from CHUNK_ROWS-row Arrow batches to bound memory; with left-out rows shifting the
    batch boundaries, the bytes must still be those of the whole shard converted and written at once."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from datagen.corpus import CHUNK_ROWS, SCHEMA, corpus_tokenizer, make_sample

    rows = 3 * CHUNK_ROWS
    s = spec(splits={"val": rows}, shard_rows=rows)
    m = build_corpus(s, tmp_path / "c", progress=False)
    assert m["left_out"]["val"] and m["rows"]["val"] > 2 * CHUNK_ROWS
    kept = [r for i, (ctx, op) in enumerate(row_plan(s, "val", rows)) if (r := make_sample(s, "val", i, ctx, op))]
    for row, ids in zip(kept, corpus_tokenizer(tmp_path / "c")([r["text"] for r in kept])["input_ids"]):
        row["n_tokens"] = len(ids)
    whole = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(kept, schema=SCHEMA), whole, compression="zstd", write_statistics=False)
    assert hashlib.sha256(whole.getvalue()).hexdigest() == m["shards"][0]["sha256"]
    # Distinct reasoning graphs, merged from per-shard hash files by bucket, against a direct count.
    val = read_split(tmp_path / "c", "val")
    assert m["distinct_graphs_per_op"]["val"] == {
        str(op): n for op, n in val.groupby("op")["reasoning_hash"].nunique().items()}
    assert not (tmp_path / "c" / ".shard-stats").exists()
