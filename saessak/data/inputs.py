"""User corpora: local files (--input) and Hugging Face datasets (--hf-dataset).

Local: `.txt` and `.md` (one document per file), `.jsonl` (one document per line, text in a
configurable field), `.parquet` (one document per row, same field), or folders of them. Bad files
(unreadable, binary, invalid UTF-8, empty, no text field) are skipped with the reason recorded;
a path that does not exist is a user error.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from saessak.data.source_report import RawDoc, SourceReport
from saessak.errors import UserError

SUPPORTED_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")


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
            return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [root]

    def documents(self, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        root = Path(self.path)
        produced = 0
        for path in self.files():
            rel = str(path.relative_to(root)) if root.is_dir() else path.name
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                report.skip(rel, f"unsupported file type '{path.suffix}' (use {', '.join(SUPPORTED_SUFFIXES)})")
                continue
            try:
                data = path.read_bytes()
            except OSError as e:
                report.skip(rel, f"unreadable: {e.strerror or e}")
                continue
            report.files.append({"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            report.bytes_in += len(data)
            if not data:
                report.skip(rel, "empty file")
                continue
            if path.suffix.lower() == ".parquet":
                docs = self._parquet(path, rel, report)
            else:
                if _looks_binary(data):
                    report.skip(rel, "binary file (NUL bytes)")
                    continue
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    report.skip(rel, f"invalid UTF-8 at byte {e.start}")
                    continue
                if path.suffix.lower() == ".jsonl":
                    docs = self._jsonl(text, rel, report)
                else:
                    docs = iter([RawDoc(rel, text)])
            for doc in docs:
                if max_docs is not None and produced >= max_docs:
                    return
                produced += 1
                yield doc

    def _jsonl(self, text: str, rel: str, report: SourceReport) -> Iterator[RawDoc]:
        found = False
        bad_lines = missing = 0
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
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
        if bad_lines:
            report.skip(rel, f"{bad_lines} line(s) not valid JSON")
        if not found:
            report.skip(rel, f"no string field '{self.text_field}' in any line")
        elif missing:
            report.skip(rel, f"{missing} line(s) without a string field '{self.text_field}'")

    def _parquet(self, path: Path, rel: str, report: SourceReport) -> Iterator[RawDoc]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            report.skip(rel, f"not a readable parquet file ({type(e).__name__})")
            return
        if self.text_field not in pf.schema_arrow.names:
            report.skip(rel, f"no column '{self.text_field}' (columns: {', '.join(pf.schema_arrow.names)})")
            return
        row = 0
        for batch in pf.iter_batches(columns=[self.text_field], batch_size=1024):
            for value in batch.column(0).to_pylist():
                row += 1
                if isinstance(value, str):
                    yield RawDoc(f"{rel}:{row}", value)


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
