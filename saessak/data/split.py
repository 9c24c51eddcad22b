"""The corpus's train/val split: how documents are assigned (by hash), and how a run's split files
are written and read.

Assignment is deterministic by document hash (same text and seed -> same split, in any order).
The files are `RUN/data/train.jsonl` and `RUN/data/val.jsonl`, one `{"id": str, "source": str,
"text": str}` per line, or, built with `--format parquet`, `train.parquet` and `val.parquet` with
the same three string columns, one row per document (docs/DATA_CARD.md). Every reader of a run's
corpus goes through `require_split` and `iter_docs` (or `split_ranges` / `range_texts` for a
split read in pieces), so each stage reads either format. A malformed line or row, or a file that
is not Parquet, is the user's mistake (a hand-edited, foreign or truncated file), so it raises
UserError naming file and line or row.
"""

from __future__ import annotations

import hashlib
import json
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


FORMATS = ("jsonl", "parquet")
COLUMNS = ("id", "source", "text")  # the fields of every document, in both formats
ROW_GROUP_CHARS = 16 * 2**20  # characters of text per Parquet row group: the unit a split is read in pieces by


def split_path(run_root: str | Path, split: str) -> Path:
    """RUN/data/<split>.jsonl or <split>.parquet, whichever the build wrote (the .jsonl path when neither
    exists); UserError when both do (a folder a build did not write as it is)."""
    data = Path(run_root) / "data"
    found = [data / f"{split}.{fmt}" for fmt in FORMATS if (data / f"{split}.{fmt}").exists()]
    if len(found) > 1:
        raise UserError(f"{data}: both {found[0].name} and {found[1].name}; a build writes one format, so one "
                        f"of them is not its output: remove it, or rebuild with `saessak data build --force`")
    return found[0] if found else data / f"{split}.jsonl"


def require_split(run_root: str | Path, split: str, needed_by: str) -> Path:
    """The split's path; UserError if it is missing, unreadable or has no text."""
    path = split_path(run_root, split)
    if not path.exists():
        raise UserError(f"{path.with_suffix('')}.jsonl or .parquet: not found; '{needed_by}' needs the {split} "
                        f"split (run `saessak data build --out {Path(run_root) / 'data'}` first)")
    if not any(d["text"].strip() for d in iter_docs(path)):
        raise UserError(f"{path}: the {split} split has no text")
    return path


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".parquet"


def iter_docs(path: str | Path) -> Iterator[dict]:
    """Documents of one split ({"id", "source", "text"}, .jsonl or .parquet), validated as they are read."""
    if is_parquet(path):
        yield from _parquet_docs(path)
        return
    for lineno, doc in iter_jsonl(path):
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise UserError(f"{path}:{lineno}: each line must be an object with a string 'text' field")
        yield doc


# ----------------------------------------------------------------------------- Parquet


def _arrow_errors() -> tuple[type, ...]:
    import pyarrow as pa

    return (OSError, ValueError, pa.ArrowException)  # ValueError: ArrowInvalid, text that is not UTF-8


def open_parquet(path: str | Path):
    """pyarrow's ParquetFile of a split, its 'text' column checked; UserError for a file that is not
    (or no longer, truncated) Parquet, or has no string 'text' column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except _arrow_errors() as e:
        raise UserError(f"{path}: not a readable Parquet file ({e}); truncated or corrupt: rebuild it with "
                        f"`saessak data build --force`") from None
    schema = pf.schema_arrow
    if "text" not in schema.names:
        raise UserError(f"{path}: no column 'text' (columns: {', '.join(schema.names) or 'none'})")
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UserError(f"{path}: column 'text' holds {kind}, not strings")
    return pf


def _parquet_docs(path, groups: range | None = None, columns: list[str] | None = None) -> Iterator[dict]:
    pf = open_parquet(path)
    groups = range(pf.num_row_groups) if groups is None else groups
    row = sum(pf.metadata.row_group(g).num_rows for g in range(groups.start)) if groups else 0
    try:
        for g in groups:
            table = pf.read_row_group(g, columns=columns)
            for doc in table.to_pylist():
                row += 1
                if not isinstance(doc.get("text"), str):
                    raise UserError(f"{path}: row {row}: 'text' is null")
                yield doc
    except _arrow_errors() as e:
        raise UserError(f"{path}: unreadable after row {row} ({e}); truncated or corrupt: rebuild it with "
                        f"`saessak data build --force`") from None


class ParquetSplitWriter:
    """Writes {"id", "source", "text"} documents (as the JSONL lines of the task shards) to one
    Parquet file, a row group per ROW_GROUP_CHARS of text, so memory holds one row group."""

    def __init__(self, path: Path, row_group_chars: int = ROW_GROUP_CHARS):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.schema = pa.schema([(c, pa.string()) for c in COLUMNS])
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.row_group_chars = row_group_chars
        self.rows: dict[str, list[str]] = {c: [] for c in COLUMNS}
        self.chars = 0

    def write_line(self, line: str) -> None:
        doc = json.loads(line)
        for c in COLUMNS:
            self.rows[c].append(doc[c])
        self.chars += len(line)
        if self.chars >= self.row_group_chars:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.rows["text"]:
            self.writer.write_table(pa.table(self.rows, schema=self.schema), row_group_size=len(self.rows["text"]))
        self.rows = {c: [] for c in COLUMNS}
        self.chars = 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


# ----------------------------------------------------------------------------- a split read in pieces


def split_ranges(path: str | Path, range_bytes: int) -> list[tuple[int, int]]:
    """Pieces of a split file of about `range_bytes` each, read one by one with `range_texts`:
    [start, end) byte ranges ending at line ends (.jsonl), or [first, last) row-group ranges (.parquet)."""
    path = Path(path)
    if is_parquet(path):
        meta = open_parquet(path).metadata
        out, start, size = [], 0, 0
        for g in range(meta.num_row_groups):
            size += meta.row_group(g).total_byte_size
            if size >= range_bytes:
                out.append((start, g + 1))
                start, size = g + 1, 0
        if start < meta.num_row_groups:
            out.append((start, meta.num_row_groups))
        return out or [(0, 0)]
    size = path.stat().st_size
    out, start = [], 0
    with open(path, "rb") as f:
        while start < size:
            f.seek(min(start + range_bytes, size))
            if f.tell() < size:
                f.readline()  # on to the end of the line the cut fell in
            end = min(f.tell(), size)
            out.append((start, end))
            start = end
    return out or [(0, 0)]


def range_texts(path: str | Path, a: int, b: int) -> Iterator[str]:
    """The texts of one piece of `split_ranges` (blank ones included), validated."""
    if is_parquet(path):
        for doc in _parquet_docs(path, range(a, b), columns=["text"]):
            yield doc["text"]
        return
    with open(path, "rb") as f:
        f.seek(a)
        while f.tell() < b:
            at = f.tell()
            raw = f.readline()
            if not raw:
                break
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UserError(f"{path}: line at byte {at}: not valid UTF-8") from None
            if not line:
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                doc = None
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                raise UserError(f"{path}: line at byte {at}: each line must be an object with a string 'text' field")
            yield doc["text"]
