"""A closed-vocabulary word tokenizer, saved as an HF `PreTrainedTokenizerFast`.

The problems come from a closed vocabulary (context names, template words, digits), so every word is a
token: sequences stay short, and quantity names in the compact rendering are single tokens, which tiny CPU
models need to learn copying at all. The vocabulary is built from *every* available context (in the corpus's
rendering), not from one corpus, so corpora of different context mixes share a tokenizer: a model pre-trained on zoo alone can be
RL-trained on zoo + teachers. Numbers are split into single digits so any value tokenizes sensibly.
Each piece carries its own leading space and decoding only concatenates, so encode→decode is exact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from datagen.contexts import available_contexts, context_vocabulary, load_context
from datagen.render import STYLES

FORMAT_TOKENS = ("<question>", "</question>", "<solution>", "</solution>", "<answer>", "</answer>")
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
# A word, a single digit, or a single other symbol, each with at most one leading space; other runs of
# whitespace stand alone.
PIECE = r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]|\s+"


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(PIECE), behavior="isolated")


def _pieces(text: str) -> list[str]:
    return [piece for piece, _ in _pre_tokenizer().pre_tokenize_str(text)]


def vocabulary(contexts: list[str] | None = None, styles: tuple[str, ...] = STYLES) -> list[str]:
    """Sorted vocabulary (without special tokens) covering every string the renderer can emit in `styles`."""
    pieces: set[str] = {" "}
    pieces.update(d for digit in "0123456789" for d in (digit, " " + digit))
    for name in contexts or available_contexts():
        ctx = load_context(name)
        for style in styles:
            for text in context_vocabulary(ctx, style):
                for piece in _pieces(text):
                    # Rendered text is single-spaced and every segment after a format tag starts with a
                    # space, so words only ever occur with their leading space.
                    bare = piece.lstrip(" ")
                    if bare and not bare.isspace():
                        pieces.add(" " + bare)
    return sorted(pieces)


def build_tokenizer(contexts: list[str] | None = None, styles: tuple[str, ...] = STYLES) -> PreTrainedTokenizerFast:
    """One tokenizer per rendering is enough (a model never sees both); a compact-only vocabulary is ~4x
    smaller, which matters when the output layer is a large share of a tiny model's compute."""
    specials = [PAD, EOS, UNK, *FORMAT_TOKENS]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for piece in vocabulary(contexts, styles):
        vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = _pre_tokenizer()
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=list(FORMAT_TOKENS),
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def vocab_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of the token→id map: two tokenizers with equal fingerprints encode identically."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), separators=(",", ":"))
    return hashlib.sha256(vocab.encode()).hexdigest()


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    path = Path(path)
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"{path}: no tokenizer.json (expected an HF tokenizer directory)")
    return PreTrainedTokenizerFast.from_pretrained(str(path))
