"""Deterministic train/val split by document hash (same text and seed -> same split, any order)."""

from __future__ import annotations

import hashlib

VAL_FRACTION = 0.02
SPLIT_METHOD = "val if int(sha256(f'{seed}:{text}')[:16], 16) / 2**64 < val_fraction; at least one val document"


def split_score(text: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the text and the seed."""
    digest = hashlib.sha256(f"{seed}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(texts: list[str], seed: int = 0, val_fraction: float = VAL_FRACTION) -> list[str]:
    """'train' or 'val' per text. With two or more documents, val is never empty: the document
    with the lowest score goes to val (a tiny corpus still gets a validation set)."""
    scores = [split_score(t, seed) for t in texts]
    splits = ["val" if s < val_fraction else "train" for s in scores]
    if len(texts) >= 2 and "val" not in splits:
        splits[min(range(len(texts)), key=scores.__getitem__)] = "val"
    return splits
