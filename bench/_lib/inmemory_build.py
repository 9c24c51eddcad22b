"""The corpus build as it was before datatrove (saessak 0.x, data/build.py + data/dedup.py): one process,
every document in memory, a numpy MinHash with LSH banding and a 0.8 similarity check. Kept here as
the side-by-side baseline of bench/data_scale.py and bench/data_throughput.py; the product no longer
uses it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from saessak.data.dedup import char_shingles
from saessak.data.clean import CleanConfig, document_drop_reason, filter_lines, frequent_lines, normalize, split_long
from saessak.data.split import assign_splits
from saessak.pii import mask_pii

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
        return char_shingles(_WS.sub(" ", text).strip(), self.shingle).ravel()

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


def inmemory_build(sources: list, out: Path, seed: int = 0) -> dict:
    """Sources -> clean -> filters -> PII mask -> exact + MinHash dedup -> split, all in memory; writes
    OUT/train.jsonl and OUT/val.jsonl. Returns counts."""
    cfg = CleanConfig()
    candidates = []
    counts: Counter = Counter()
    for src in sources:
        report = src.report()
        docs = []
        for raw in src.documents(report, None):
            pieces = split_long(normalize(raw.text), cfg.max_doc_chars)
            docs.extend((raw.id if len(pieces) == 1 else f"{raw.id}#p{i}", p) for i, p in enumerate(pieces))
        boiler = frequent_lines([t for _, t in docs], cfg)
        for doc_id, text in docs:
            text = filter_lines(text, boiler, cfg, Counter())
            if document_drop_reason(text, cfg):
                counts["dropped"] += 1
                continue
            masked, pii = mask_pii(text)
            counts.update({f"pii_{k}": v for k, v in pii.items()})
            candidates.append((f"{src.name}:{doc_id}", masked, src.name))
    seen: set = set()
    lsh = MinHashLSH(seed=seed)
    kept = []
    for doc_id, text, name in candidates:
        key = exact_key(text)
        if key in seen:
            counts["exact"] += 1
            continue
        seen.add(key)
        if not lsh.add_if_new(text):
            counts["near"] += 1
            continue
        kept.append((doc_id, text, name))
    splits = assign_splits([t for _, t, _ in kept], seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    files = {s: open(out / f"{s}.jsonl", "w", encoding="utf-8") for s in ("train", "val")}
    for (doc_id, text, name), split in zip(kept, splits):
        files[split].write(json.dumps({"id": doc_id, "source": name, "text": text}, ensure_ascii=False) + "\n")
    for f in files.values():
        f.close()
    return {"documents_out": len(kept), **counts}


if __name__ == "__main__":
    import argparse

    from saessak.data.inputs import LocalInput

    ap = argparse.ArgumentParser(description="the pre-datatrove in-memory corpus build (baseline)")
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    print(json.dumps(inmemory_build([LocalInput(a.input)], Path(a.out))))
