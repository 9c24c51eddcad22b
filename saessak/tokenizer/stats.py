"""How well a tokenizer compresses Korean: the figures in `RUN/tokenizer/stats.json`.

Definitions (all on the val split; per source and overall):
- `hangul_chars_per_token`: Hangul syllables (U+AC00..U+D7A3) divided by the tokens that cover at
  least one of them (a token's character span comes from the encoder's offsets; a syllable that
  falls back to three byte tokens counts three tokens). Spaces, digits, Latin and punctuation are
  left out on both sides, so the figure measures Korean text only; this is the issue's
  "Hangul-text characters per token" (o200k reaches about 1.6 with a 200k vocabulary).
- `chars_per_token`: all non-whitespace characters divided by all tokens.
- `tokens_per_eojeol`: tokens divided by whitespace-separated words (어절).
- `byte_fallback_rate`: share of tokens that are <0xNN> byte tokens (characters unseen in training).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from saessak.hangul import SYLLABLE
from saessak.tokenizer.bpe import BYTE_TOKENS, Tokenizer


class _Counts:
    __slots__ = ("docs", "tokens", "hangul_chars", "hangul_tokens", "chars", "eojeols", "byte_tokens")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def add(self, other: "_Counts") -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict:
        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "docs": self.docs,
            "tokens": self.tokens,
            "hangul_chars": self.hangul_chars,
            "hangul_chars_per_token": ratio(self.hangul_chars, self.hangul_tokens),
            "chars_per_token": ratio(self.chars, self.tokens),
            "tokens_per_eojeol": ratio(self.tokens, self.eojeols),
            "byte_fallback_rate": ratio(self.byte_tokens, self.tokens),
        }


def _byte_token_ids(tok: Tokenizer) -> frozenset[int]:
    return frozenset(i for t in BYTE_TOKENS if (i := tok.token_to_id(t)) is not None)


def count_text(tok: Tokenizer, text: str, byte_ids: frozenset[int], encoding=None) -> _Counts:
    enc = encoding if encoding is not None else tok.hf.encode(text, add_special_tokens=False)
    c = _Counts()
    c.docs = 1
    c.tokens = len(enc.ids)
    c.byte_tokens = sum(1 for i in enc.ids if i in byte_ids)
    c.hangul_chars = len(SYLLABLE.findall(text))
    c.hangul_tokens = sum(1 for a, b in enc.offsets if b > a and SYLLABLE.search(text, a, b))
    c.chars = sum(1 for ch in text if not ch.isspace())
    c.eojeols = len(text.split())
    return c


def tokenizer_stats(tok: Tokenizer, docs: Iterable[dict], batch_size: int = 256) -> dict:
    """Stats over documents `{"source", "text"}` (normally the val split), overall and per source."""
    import unicodedata

    byte_ids = _byte_token_ids(tok)
    total = _Counts()
    per_source: dict[str, _Counts] = defaultdict(_Counts)
    batch: list[dict] = []

    def flush() -> None:
        # Offsets are into the text as given, so normalise first (the data split is NFC already).
        texts = [unicodedata.normalize("NFC", d["text"]) for d in batch]
        for d, text, enc in zip(batch, texts, tok.hf.encode_batch(texts, add_special_tokens=False)):
            c = count_text(tok, text, byte_ids, enc)
            total.add(c)
            per_source[str(d.get("source", "unknown"))].add(c)
        batch.clear()

    for d in docs:
        batch.append(d)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return {
        "vocab_size": tok.vocab_size,
        **total.summary(),
        "per_source": {s: c.summary() for s, c in sorted(per_source.items())},
    }
