"""What both GGUF writers share (saessak's own model, saessak/export/gguf_export.py; an imported one,
saessak/export/gguf_imported.py): llama.cpp's q/k row order and the SentencePiece-style vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saessak.tokenizer import special_tokens as st


def interleave_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of each head reordered from [half0 | half1] to [h0[0], h1[0], h0[1], h1[1], ...]."""
    out_dim = w.shape[0]
    head_dim = out_dim // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def vocab_for_gguf(tokenizer_json: Path, vocab_size: int | None = None) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types of the SentencePiece-style vocabulary, indexed by id.

    `vocab_size` (the model's) may exceed the tokenizer's when the embedding was padded; the
    extra ids become unused placeholder tokens, as llama.cpp expects one entry per row.
    """
    from gguf import TokenType

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(spec["model"]["vocab"])
    for t in spec.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
    size = max(max(vocab.values()) + 1, vocab_size or 0)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(TokenType.UNUSED)] * size
    for text, i in vocab.items():
        tokens[i] = text
    # Rank = order of creation: merges are learnt in order and each new token gets the next id,
    # so -id is a faithful merge priority; single characters and fixed tokens score 0.
    scores = [0.0] * size
    specials = set(st.SPECIAL_TOKENS)
    for text, i in vocab.items():
        if text == st.UNK:
            types[i] = int(TokenType.UNKNOWN)
        elif text in specials:
            types[i] = int(TokenType.CONTROL)
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            types[i] = int(TokenType.BYTE)
        else:
            types[i] = int(TokenType.NORMAL)
            scores[i] = -float(i)
    return tokens, scores, types
