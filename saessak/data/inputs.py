"""User corpora: local files (--input) and Hugging Face datasets (--hf-dataset).

Local: `.txt` and `.md` (one document per file), `.jsonl` / `.jsonl.gz` (one document per line, text
in a configurable field, streamed), `.parquet` (one document per row, same field, read in batches),
or folders of them. Bad files (unreadable, binary, invalid UTF-8, empty, no text field or column,
a column that is not text) are skipped with the reason recorded; in a JSONL file, bad lines (not
UTF-8, not JSON, no text field) and in a Parquet file, null values are dropped and counted; a path
that does not exist, or a folder without files, is a user error (docs/DATA_CARD.md#bad-input).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from saessak.data.source_report import RawDoc, SourceReport
from saessak.errors import UserError
from saessak.io import file_sha256

SUPPORTED_SUFFIXES = (".txt", ".md", ".jsonl", ".jsonl.gz", ".parquet")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".jsonl.gz" if name.endswith(".jsonl.gz") else path.suffix.lower()


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


@dataclass(frozen=True)
class LocalInput:
    path: str
    text_field: str = "text"

    @property
    def name(self) -> str:
        return f"input:{self.path}"

    def report(self) -> SourceReport:
        return SourceReport(self.name, "local", origin={"path": self.path, "text_field": self.text_field},
                            licence={"name": "unknown (user-supplied)", "default_source": False})

    def files(self) -> list[Path]:
        root = Path(self.path)
        if not root.exists():
            raise UserError(f"--input {self.path}: no such file or folder")
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise UserError(f"--input {self.path}: the folder holds no files")
            return files
        return [root]

    def units(self, max_docs: int | None) -> list[tuple[str | None, int]]:
        """(file, bytes) per file, the pieces a parallel build hands out to its tasks; with `max_docs`
        one piece for the whole input (the first N documents in file order are one task's job)."""
        files = [(str(p), p.stat().st_size if p.exists() else 0) for p in self.files()]
        return files if max_docs is None else [(None, sum(n for _, n in files))]

    def read(self, unit: str | None, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        return self.documents(report, max_docs) if unit is None else self._file(Path(unit), report)

    def documents(self, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        produced = 0
        for path in self.files():
            for doc in self._file(path, report):
                if max_docs is not None and produced >= max_docs:
                    return
                produced += 1
                yield doc

    def _file(self, path: Path, report: SourceReport) -> Iterator[RawDoc]:
        """The documents of one file; a bad file is skipped with its reason (module docstring)."""
        root = Path(self.path)
        rel = str(path.relative_to(root)) if root.is_dir() else path.name
        suffix = _suffix(path)
        if suffix not in SUPPORTED_SUFFIXES:
            report.skip(rel, f"unsupported file type '{path.suffix}' (use {', '.join(SUPPORTED_SUFFIXES)})")
            return
        if suffix in (".jsonl", ".jsonl.gz"):
            yield from self._jsonl(path, rel, report)
            return
        if suffix == ".parquet":  # hashed and read in pieces: memory does not grow with the file
            try:
                size, sha = path.stat().st_size, file_sha256(path)
            except OSError as e:
                report.skip(rel, f"unreadable: {e.strerror or e}")
                return
            report.files.append({"path": rel, "bytes": size, "sha256": sha})
            report.bytes_in += size
            if not size:
                report.skip(rel, "empty file")
                return
            yield from self._parquet(path, rel, report)
            return
        try:
            data = path.read_bytes()
        except OSError as e:
            report.skip(rel, f"unreadable: {e.strerror or e}")
            return
        report.files.append({"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        report.bytes_in += len(data)
        if not data:
            report.skip(rel, "empty file")
            return
        if _looks_binary(data):
            report.skip(rel, "binary file (NUL bytes)")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            report.skip(rel, f"invalid UTF-8 at byte {e.start}")
            return
        yield RawDoc(rel, text)

    def _jsonl(self, path: Path, rel: str, report: SourceReport) -> Iterator[RawDoc]:
        """Streamed line by line (memory does not grow with the file); bad lines are counted, not fatal."""
        found = False
        bad_lines = missing = bad_utf8 = blank = 0
        digest, size, opened = hashlib.sha256(), 0, False
        try:
            with (gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")) as f:
                opened = True
                for n, raw in enumerate(f, 1):
                    digest.update(raw)
                    size += len(raw)
                    if n == 1 and _looks_binary(raw):
                        report.skip(rel, "binary file (NUL bytes)")
                        digest = None  # hash the whole file below, not the part read
                        return
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        bad_utf8 += 1
                        continue
                    if not line.strip():
                        blank += 1
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        bad_lines += 1
                        continue
                    value = obj.get(self.text_field) if isinstance(obj, dict) else None
                    if not isinstance(value, str):
                        missing += 1
                        continue
                    found = True
                    yield RawDoc(f"{rel}:{n}", value)
        except (OSError, EOFError) as e:  # unreadable, or a truncated/corrupt .gz
            report.skip(rel, f"unreadable: {getattr(e, 'strerror', None) or e}")
            return
        finally:
            if digest is None:
                size = path.stat().st_size
            if opened:
                sha = digest.hexdigest() if digest is not None else file_sha256(path)
                report.files.append({"path": rel, "bytes": size, "sha256": sha})
                report.bytes_in += size
        if size == 0:
            report.skip(rel, "empty file")
            return
        if blank == n:
            report.skip(rel, "blank lines only")
            return
        if bad_utf8:
            report.skip(rel, f"{bad_utf8} line(s) not valid UTF-8")
        if bad_lines:
            report.skip(rel, f"{bad_lines} line(s) not valid JSON")
        if not found:
            report.skip(rel, f"no string field '{self.text_field}' in any line")
        elif missing:
            report.skip(rel, f"{missing} line(s) without a string field '{self.text_field}'")

    def _parquet(self, path: Path, rel: str, report: SourceReport) -> Iterator[RawDoc]:
        """Read in batches; a file that is not Parquet, or whose text column is missing or not strings,
        is skipped; null values are dropped and counted; a file that breaks off part way (truncated
        or corrupt pages) keeps the rows read before and is listed with the row it broke at."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            report.skip(rel, f"not a readable parquet file ({type(e).__name__}: {e})")
            return
        schema = pf.schema_arrow
        if self.text_field not in schema.names:
            report.skip(rel, f"no column '{self.text_field}' (columns: {', '.join(schema.names)})")
            return
        kind = schema.field(self.text_field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            report.skip(rel, f"column '{self.text_field}' holds {kind}, not text")
            return
        if pf.metadata.num_rows == 0:
            report.skip(rel, "no rows")
            return
        row = nulls = 0
        try:
            for batch in pf.iter_batches(columns=[self.text_field], batch_size=1024):
                for value in batch.column(0).to_pylist():
                    row += 1
                    if isinstance(value, str):
                        yield RawDoc(f"{rel}:{row}", value)
                    else:
                        nulls += 1
        except (OSError, ValueError, pa.ArrowException) as e:  # ValueError: ArrowInvalid, bad UTF-8
            report.skip(rel, f"unreadable after row {row} ({type(e).__name__}: {e})")
        if nulls:
            report.skip(rel, f"{nulls} row(s) with a null '{self.text_field}'")


@dataclass(frozen=True)
class HFDataset:
    """A Hugging Face dataset, streamed: a hub id (needs a network), or a local folder of data files
    or one written by `Dataset.save_to_disk`. `spec` is ID or ID:CONFIG."""

    spec: str
    text_field: str = "text"
    split: str = "train"

    @property
    def name(self) -> str:
        return f"hf:{self.spec}"

    def _id_config(self) -> tuple[str, str | None]:
        # A local path may contain ':' only in the config part; a hub id never does.
        if ":" in self.spec and not os.path.exists(self.spec):
            ident, config = self.spec.rsplit(":", 1)
            return ident, config or None
        return self.spec, None

    def report(self) -> SourceReport:
        ident, config = self._id_config()
        return SourceReport(self.name, "hf", origin={"dataset": ident, "config": config, "split": self.split,
                                                     "text_field": self.text_field})

    def _open(self):
        import datasets

        ident, config = self._id_config()
        path = Path(ident)
        if ident.startswith((".", "/", "~")) and not path.exists():
            raise UserError(f"--hf-dataset {self.spec}: no such local folder")
        if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if self.split not in ds:
                    raise UserError(f"--hf-dataset {self.spec}: no split '{self.split}' (has {', '.join(ds)})")
                ds = ds[self.split]
            return ds
        try:
            return datasets.load_dataset(ident, config, split=self.split, streaming=True)
        except FileNotFoundError as e:  # includes the hub's DatasetNotFoundError
            raise UserError(f"--hf-dataset {self.spec}: not found ({e})") from None
        except (ValueError, ConnectionError, OSError) as e:  # bad config/split, no network
            raise UserError(f"--hf-dataset {self.spec}: cannot load ({type(e).__name__}: {e})") from None

    def units(self, max_docs: int | None) -> list[tuple[None, int]]:
        return [(None, 0)]  # streamed by one task

    def read(self, unit: None, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        return self.documents(report, max_docs)

    def documents(self, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        ds = self._open()
        fingerprint = getattr(ds, "_fingerprint", None)  # content hash of a local Arrow dataset
        if fingerprint:
            report.origin["fingerprint"] = fingerprint
        info = getattr(ds, "info", None)
        report.licence = {"name": (getattr(info, "license", None) or "unknown (see the dataset card)"),
                          "default_source": False}
        features = getattr(ds, "features", None) or getattr(info, "features", None)
        if features is not None and self.text_field not in features:
            report.skip(self.spec, f"no text field '{self.text_field}' (fields: {', '.join(features)})")
            return
        produced = 0
        for i, row in enumerate(ds):
            if max_docs is not None and produced >= max_docs:
                return
            value = row.get(self.text_field)
            if not isinstance(value, str):
                if i == 0 and self.text_field not in row:
                    report.skip(self.spec, f"no text field '{self.text_field}' (fields: {', '.join(row)})")
                    return
                continue
            data = value.encode("utf-8")
            report.bytes_in += len(data)
            produced += 1
            yield RawDoc(str(i), value)
