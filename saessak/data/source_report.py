"""Per-source bookkeeping for the data card: every count is measured while the corpus is built."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawDoc:
    id: str  # stable within the source, e.g. "text/shared/find_toolbar.html"
    text: str
    # characters extracted before any source-level filter (HTML prose before the Hangul paragraph
    # filter); None: len(text)
    chars_in: int | None = None


@dataclass
class SourceReport:
    name: str
    kind: str  # "debian", "wheel", "local", "hf"
    origin: dict[str, Any] = field(default_factory=dict)  # package+version / path / dataset id
    licence: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)  # {"path", "bytes", "sha256"}
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    bytes_in: int = 0
    documents_in: int = 0
    characters_in: int = 0
    documents_out: int = 0
    characters_out: int = 0
    hangul_syllables_out: int = 0
    lines_dropped: Counter = field(default_factory=Counter)
    documents_dropped: Counter = field(default_factory=Counter)
    dedup_removed: Counter = field(default_factory=Counter)
    pii_masked: Counter = field(default_factory=Counter)
    pii_kept: Counter = field(default_factory=Counter)  # found but not masked (--keep-pii)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "origin": self.origin,
            "licence": self.licence,
            "files": self.files,
            "skipped_files": self.skipped,
            "bytes_in": self.bytes_in,
            "documents_in": self.documents_in,
            "characters_in": self.characters_in,
            "documents_out": self.documents_out,
            "characters_out": self.characters_out,
            "hangul_syllables_out": self.hangul_syllables_out,
            "lines_dropped": dict(sorted(self.lines_dropped.items())),
            "documents_dropped": dict(sorted(self.documents_dropped.items())),
            "dedup_removed": {"exact": self.dedup_removed["exact"], "near": self.dedup_removed["near"]},
            "pii_masked": dict(sorted(self.pii_masked.items())),
            "pii_kept": dict(sorted(self.pii_kept.items())),
        }
