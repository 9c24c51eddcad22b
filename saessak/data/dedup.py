"""Exact and near-duplicate removal.

Near duplicates use MinHash over character 5-gram shingles with LSH banding, written with numpy
(no `datasketch` dependency): shingles are hashed with a vectorised polynomial rolling hash, and
the 128 permutations are multiply-shift hashes (a * x + b mod 2**64, top 32 bits), which numpy
computes for all shingles of a document at once. Documents are processed in a fixed order; one
is dropped when an LSH band collides with an earlier kept document *and* their estimated
Jaccard similarity (share of equal MinHash values) is at least `threshold`.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

_WS = re.compile(r"\s+")


def exact_key(text: str) -> bytes:
    """Documents equal up to whitespace share this key."""
    return hashlib.blake2b(_WS.sub(" ", text).strip().encode("utf-8"), digest_size=16).digest()


class MinHashLSH:
    def __init__(self, num_perm: int = 128, bands: int = 16, shingle: int = 5, threshold: float = 0.8,
                 seed: int = 0):
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.num_perm, self.bands, self.rows = num_perm, bands, num_perm // bands
        self.shingle, self.threshold = shingle, threshold
        rng = np.random.default_rng(seed)
        self._a = (rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1))[:, None]
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)[:, None]
        self._buckets: list[dict[bytes, int]] = [{} for _ in range(bands)]
        self._kept: list[np.ndarray] = []

    def shingles(self, text: str) -> np.ndarray:
        """Unique 64-bit hashes of the character n-grams of `text` (whitespace collapsed)."""
        text = _WS.sub(" ", text).strip()
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        k = self.shingle
        if len(cps) < k:
            cps = np.concatenate([cps, np.zeros(k - len(cps), dtype=np.uint64)])
        n = len(cps) - k + 1
        h = np.zeros(n, dtype=np.uint64)
        mult = np.uint64(0x100000001B3)  # FNV prime: odd, spreads code points over 64 bits
        with np.errstate(over="ignore"):
            for i in range(k):
                h = h * mult + cps[i : i + n]
            # final avalanche so nearby n-grams do not give nearby hashes
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
        return np.unique(h)

    def signature(self, text: str) -> np.ndarray:
        sh = self.shingles(text)
        sig = np.empty(self.num_perm, dtype=np.uint32)
        # chunk the shingles so a huge document never needs num_perm x n memory at once
        step = max(1, 1_000_000 // self.num_perm)
        mins = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for s in range(0, len(sh), step):
                block = (self._a * sh[None, s : s + step] + self._b) >> np.uint64(32)
                np.minimum(mins, block.min(axis=1), out=mins)
        sig[:] = mins.astype(np.uint32)
        return sig

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(a == b))

    def add_if_new(self, text: str) -> bool:
        """True (and remembered) when `text` is not a near duplicate of a document kept before."""
        sig = self.signature(text)
        keys = [sig[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]
        checked: set[int] = set()
        for band, key in enumerate(keys):
            j = self._buckets[band].get(key)
            if j is not None and j not in checked:
                checked.add(j)
                if self.similarity(sig, self._kept[j]) >= self.threshold:
                    return False
        idx = len(self._kept)
        self._kept.append(sig)
        for band, key in enumerate(keys):
            self._buckets[band].setdefault(key, idx)
        return True
