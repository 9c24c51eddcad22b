"""Named corpus sources: Korean documentation from Debian packages, and the constitution in konlpy.

Default sources (used with no --sources) have permissive or file-level licences and can be
trained on and redistributed with notice; copyleft or unclear ones are opt-in by name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from saessak.data import cache
from saessak.data.clean import hangul_share, normalize
from saessak.data.htmltext import html_paragraphs
from saessak.data.licence import licence_from_copyright
from saessak.data.source_report import RawDoc, SourceReport
from saessak.errors import UserError


@dataclass(frozen=True)
class DebianDocs:
    """HTML documentation under `doc_dir` of one Debian package."""

    name: str
    package: str
    doc_dir: str  # relative to the unpacked root
    pattern: str
    default: bool
    note: str
    min_paragraph_hangul_share: float = 0.3

    def report(self) -> SourceReport:
        return SourceReport(self.name, "debian")

    def _root(self) -> Path:
        return cache.fetch_deb(self.package).root / self.doc_dir  # a cache hit costs one stat

    def _describe(self, report: SourceReport) -> None:
        deb = cache.fetch_deb(self.package)
        copyright_file = deb.root / "usr/share/doc" / self.package / "copyright"
        copyright_text = copyright_file.read_text(encoding="utf-8", errors="replace")
        report.origin = {"package": deb.package, "version": deb.version, "deb_file": deb.deb_file,
                         "deb_sha256": deb.deb_sha256, "doc_dir": self.doc_dir}
        report.licence = {"name": licence_from_copyright(copyright_text), "default_source": self.default,
                          "note": self.note, "copyright_file_sha256": hashlib.sha256(copyright_file.read_bytes()).hexdigest()}

    def units(self, max_docs: int | None) -> list[tuple[str, int]]:
        """(file, bytes) per HTML page, in order: the pieces a parallel build hands out to its tasks."""
        root = self._root()
        files = sorted(root.glob(self.pattern))[:max_docs]
        return [(str(p.relative_to(root)), p.stat().st_size) for p in files]

    def read(self, unit: str, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        """The document of one page (`unit` from `units`)."""
        if not report.origin:
            self._describe(report)
        path = self._root() / unit
        data = path.read_bytes()
        report.files.append({"path": unit, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        report.bytes_in += len(data)
        try:
            html = data.decode("utf-8")
        except UnicodeDecodeError as e:
            report.skip(unit, f"invalid UTF-8 at byte {e.start}")
            return
        paragraphs = html_paragraphs(html)
        kept = []
        for para in paragraphs:
            if hangul_share(para) >= self.min_paragraph_hangul_share:
                kept.append(para)
            else:
                report.lines_dropped["low_hangul_paragraph"] += 1
        extracted = sum(len(p) for p in paragraphs) + max(0, len(paragraphs) - 1)  # joined by newlines
        yield RawDoc(unit, "\n".join(kept), chars_in=extracted)

    def documents(self, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        self._describe(report)
        for unit, _ in self.units(max_docs):
            yield from self.read(unit, report, max_docs)


_CHAPTER = re.compile(r"^\s*(제\d+장\s.*|부칙.*)$", re.M)


@dataclass(frozen=True)
class KolawConstitution:
    """대한민국헌법 from the konlpy wheel, one document per chapter (제N장) plus preamble and 부칙."""

    name: str = "kolaw"
    member: str = "konlpy/data/corpus/kolaw/constitution.txt"
    default: bool = True

    def report(self) -> SourceReport:
        return SourceReport(self.name, "wheel")

    def _read(self, report: SourceReport) -> bytes:
        spec = importlib.util.find_spec("konlpy")  # locates the package without importing it (Java)
        if spec is not None and spec.submodule_search_locations:
            path = Path(list(spec.submodule_search_locations)[0]) / "data/corpus/kolaw/constitution.txt"
            if path.exists():
                report.origin = {"installed_package": str(path.parent.parent.parent.parent), "member": self.member}
                return path.read_bytes()
        wheel = cache.fetch_konlpy_wheel()
        report.origin = {"wheel": wheel.wheel.name, "wheel_sha256": wheel.wheel_sha256, "member": self.member}
        with zipfile.ZipFile(wheel.wheel) as z:
            return z.read(self.member)

    def units(self, max_docs: int | None) -> list[tuple[None, int]]:
        return [(None, 0)]  # one small file: one task reads it

    def read(self, unit: None, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        return self.documents(report, max_docs)

    def documents(self, report: SourceReport, max_docs: int | None) -> Iterator[RawDoc]:
        data = self._read(report)
        report.licence = {
            "name": "LicenseRef-KR-public-domain-statute",
            "default_source": self.default,
            "note": "The Constitution is not a protected work under the Korean Copyright Act (art. 7); "
                    "it ships in konlpy (GPL-3.0-or-later), whose code is not used.",
        }
        report.files.append({"path": self.member, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        report.bytes_in += len(data)
        text = normalize(data.decode("utf-8"))
        starts = [0] + [m.start() for m in _CHAPTER.finditer(text)]
        pieces = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)]) if text[a:b].strip()]
        for i, piece in enumerate(pieces[: max_docs if max_docs is not None else None]):
            yield RawDoc(f"constitution#{i:02d}", piece)


SOURCES = {
    s.name: s
    for s in [
        DebianDocs("debian-ko", "libreoffice-help-ko", "usr/share/libreoffice/help/ko/text", "**/*.html", True,
                   "LibreOffice help, Korean translation: MPL-2.0 (file-level copyleft; redistribution keeps notice)."),
        DebianDocs("debian-install-ko", "installation-guide-amd64", "usr/share/doc/installation-guide-amd64/ko",
                   "*.html", False, "Debian Installation Guide, Korean: GPL-2.0 (copyleft), opt-in."),
        DebianDocs("debian-faq-ko", "debian-faq-ko", "usr/share/doc/debian/FAQ/ko", "*.html", False,
                   "Debian FAQ, Korean: custom verbatim-copying notice, unclear for derived works; opt-in."),
        KolawConstitution(),
    ]
}
DEFAULT_SOURCES = [name for name, s in SOURCES.items() if s.default]


def resolve_sources(names: list[str] | None) -> list:
    if names is None:
        return [SOURCES[n] for n in DEFAULT_SOURCES]
    out = []
    if "all" in names:  # every named source, opt-in ones included
        names = [n for n in names if n != "all"] + list(SOURCES)
    for name in names:
        if name not in SOURCES:
            raise UserError(f"--sources: unknown source '{name}' (known: {', '.join(SOURCES)}, or all)")
        if SOURCES[name] not in out:
            out.append(SOURCES[name])
    return out
