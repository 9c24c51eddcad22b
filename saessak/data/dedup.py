"""Exact and near-duplicate removal: datatrove's dedup stages with the Korean parts that are ours.

datatrove does the work at scale (signatures written per task, sorted buckets merged per bucket,
union-find clusters, a filter per task; saessak/data/pipeline.py wires the stages and holds the datatrove step classes). What is ours:

- the exact key: documents equal up to whitespace are one document (`exact_content`);
- the MinHash shingles: character 5-grams (spaces included) of the text after datatrove's
  simplification (lower case, no punctuation, numbers as 0) but *without* its diacritics step,
  which decomposes every Hangul syllable into jamo (NFD) and would make a 5-gram span two
  syllables. The n-grams are hashed with numpy in one pass per document (datatrove's default
  joins and hashes each n-gram in Python, ~20x slower on Korean text where every character is a
  "word"), and the signature is computed in blocks so a 200,000-character document does not need
  a 200,000 x 128 matrix at once.

Settings (`MINHASH`, recorded in the data card): 12 buckets of 12 hashes, so a pair with Jaccard
similarity s is caught with probability 1 - (1 - s**12)**12: 0.9999 at s = 0.95 (a copy with 0.5 %
of its characters changed), 0.98 at 0.9, 0.58 at 0.8, 0.09 at 0.6. datatrove removes every pair an
LSH bucket joins (no similarity check after it), so the buckets are narrower than the previous
home-made MinHash's 16 x 8 with a 0.8 check: docs/DATA_CARD.md has the measured difference.
"""

from __future__ import annotations

import re

import numpy as np

_WS = re.compile(r"\s+")

MINHASH = {"n_grams": 5, "unit": "character", "num_buckets": 12, "hashes_per_bucket": 12, "hash_bits": 64}


def exact_content(doc) -> bytes:
    """What exact dedup hashes: the text with whitespace runs collapsed (a datatrove Document), as
    UTF-8 bytes (xxhash 4 hashes bytes only)."""
    return _WS.sub(" ", doc.text).strip().encode("utf-8")


def char_shingles(text: str, n: int) -> np.ndarray:
    """64-bit hashes of the character n-grams of `text` (a short text is padded to one n-gram), as
    a (count, 1) uint64 column, the shape datatrove's signature code takes."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(cps) == 0:
        return np.zeros((0, 1), dtype=np.uint64)
    if len(cps) < n:
        cps = np.concatenate([cps, np.zeros(n - len(cps), dtype=np.uint64)])
    count = len(cps) - n + 1
    h = np.zeros(count, dtype=np.uint64)
    mult = np.uint64(0x100000001B3)  # FNV prime: odd, spreads code points over 64 bits
    with np.errstate(over="ignore"):
        for i in range(n):
            h = h * mult + cps[i : i + count]
        h ^= h >> np.uint64(33)  # avalanche so nearby n-grams do not give nearby hashes
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
    return np.unique(h).reshape(-1, 1)
