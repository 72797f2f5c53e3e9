"""The closed-vocabulary tokenizer: exact round trip, single-token names, digits, HF save/load."""

import pytest
from transformers import AutoTokenizer

from datagen.corpus import read_split
from datagen.tokenizer import FORMAT_TOKENS, build_tokenizer, vocab_fingerprint


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_round_trip_on_every_sample(tok, corpus_dirs):
    for corpus in corpus_dirs:
        texts = read_split(corpus, "train")["text"].tolist()
        for text, ids in zip(texts, tok(texts)["input_ids"]):
            assert tok.unk_token_id not in ids
            assert tok.decode(ids) == text


def test_numbers_split_into_digits(tok):
    ids = tok(" 1234567890123")["input_ids"]
    assert len(ids) == 13 and tok.decode(ids) == " 1234567890123"


def test_format_tokens_are_single_special_tokens(tok):
    for t in FORMAT_TOKENS:
        ids = tok(t)["input_ids"]
        assert len(ids) == 1 and ids[0] in tok.all_special_ids


def test_compact_quantity_names_are_single_tokens(tok, corpus_dirs):
    from datagen.corpus import load_gold

    df = read_split(corpus_dirs[0], "train")
    for _, row in df.head(20).iterrows():
        _, names = load_gold(row)
        for name in names.values():
            assert len(tok(" " + name)["input_ids"]) == 1, name


def test_save_load_with_auto_tokenizer(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert vocab_fingerprint(loaded) == vocab_fingerprint(tok)
    text = "<question> Swol = 3 ; ? Swol </question> <solution>"
    assert loaded.decode(loaded(text)["input_ids"]) == tok.decode(tok(text)["input_ids"])


def test_deterministic(tok):
    assert vocab_fingerprint(build_tokenizer()) == vocab_fingerprint(tok)
