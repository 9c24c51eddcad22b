"""Reading the text splits of a run folder (`RUN/data/train.jsonl`, `RUN/data/val.jsonl`).

Each line is `{"id": str, "source": str, "text": str}` (see docs/ARCHITECTURE.md). A malformed line
is the user's mistake (a hand-edited or foreign file), so it raises UserError naming file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from saessak.errors import UserError


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
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                raise UserError(f"{path}:{lineno}: each line must be an object with a string 'text' field")
            yield doc
