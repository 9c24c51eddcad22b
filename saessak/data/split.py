"""The corpus's train/val split: how documents are assigned (by hash) and how a run's split files are read.

Assignment is deterministic by document hash (same text and seed -> same split, in any order).
The files are `RUN/data/train.jsonl` and `RUN/data/val.jsonl`, one `{"id": str, "source": str,
"text": str}` per line (docs/DATA_CARD.md). A malformed line is the user's mistake (a hand-edited
or foreign file), so it raises UserError naming file and line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

from saessak.errors import UserError
from saessak.io import iter_jsonl

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


def split_path(run_root: str | Path, split: str) -> Path:
    return Path(run_root) / "data" / f"{split}.jsonl"


def require_split(run_root: str | Path, split: str, needed_by: str) -> Path:
    """The split's path; UserError if it is missing or has no text."""
    path = split_path(run_root, split)
    if not path.exists():
        raise UserError(f"{path}: not found; '{needed_by}' needs the {split} split "
                        f"(run `saessak data build --out {Path(run_root) / 'data'}` first)")
    if not any(d["text"].strip() for d in iter_docs(path)):
        raise UserError(f"{path}: the {split} split has no text")
    return path


def iter_docs(path: str | Path) -> Iterator[dict]:
    """Documents of one split, validated line by line."""
    for lineno, doc in iter_jsonl(path):
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise UserError(f"{path}:{lineno}: each line must be an object with a string 'text' field")
        yield doc
