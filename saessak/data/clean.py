"""Text cleaning and filters: NFC, control characters, whitespace, line and document filters.

NFC only: NFKC would rewrite compatibility jamo (ㅋㅋ -> ᄏᄏ) and full-width forms that Korean
text uses on purpose. Every dropped line and document is counted by reason by the caller.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from saessak import hangul

# C0/C1 controls except tab and newline, plus zero-width and bidi formatting characters that
# carry no text (BOM, ZWSP, ZWNJ/ZWJ are kept out: Korean never needs them).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# Every Unicode space except newline becomes one ASCII space (tabs, NBSP, ideographic space...).
_SPACES = re.compile(r"[^\S\n]+")
_WORD_CHARS = re.compile(r"\w")
# Lines that are page furniture wherever they appear.
_BOILERPLATE = re.compile(
    r"^(?:copyright\b.*|all rights reserved\.?|©.*|이전|다음|위로|처음으로|홈|목차|차례|"
    r"please support us!?|help us, please!?|이 페이지는 .*에 의해 생성되었습니다\.?)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CleanConfig:
    min_line_word_chars: int = 2  # a line needs this many letters/digits to be text
    min_doc_chars: int = 40  # after cleaning
    max_doc_chars: int = 200_000  # longer documents are cut into pieces at line boundaries
    min_doc_hangul_share: float = 0.3  # Hangul letters / all letters, per document
    min_paragraph_hangul_share: float = 0.3  # for HTML documentation paragraphs
    boilerplate_min_docs: int = 5  # a line in at least this many documents of a source...
    boilerplate_min_share: float = 0.01  # ...and in at least this share of them is boilerplate


def normalize(text: str) -> str:
    """NFC, no control characters, one space between words, no trailing spaces, LF line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n"))


def hangul_share(text: str) -> float:
    """Hangul letters as a share of all letters (0.0 for a text with no letters)."""
    return hangul.share(text) or 0.0


def filter_lines(text: str, boilerplate: set[str], cfg: CleanConfig, dropped: Counter) -> str:
    """Drop empty runs, too-short, repeated (within the document) and boilerplate lines."""
    kept: list[str] = []
    seen: set[str] = set()
    blank = False
    for line in text.split("\n"):
        if not line:
            blank = bool(kept)  # keep one blank line as a paragraph break, never at the start
            continue
        if len(_WORD_CHARS.findall(line)) < cfg.min_line_word_chars:
            dropped["too_short_line"] += 1
        elif line in seen:
            dropped["repeated_line"] += 1
        elif line in boilerplate or _BOILERPLATE.match(line):
            dropped["boilerplate_line"] += 1
        else:
            if blank:
                kept.append("")
            kept.append(line)
            seen.add(line)
            blank = False  # a paragraph break survives dropped lines between paragraphs
    return "\n".join(kept)


def frequent_lines(docs: list[str], cfg: CleanConfig) -> set[str]:
    """Lines that recur across many documents of one source: navigation, footers, notices."""
    if not docs:
        return set()
    counts: Counter = Counter()
    for doc in docs:
        counts.update(set(line for line in doc.split("\n") if line))
    threshold = max(cfg.boilerplate_min_docs, cfg.boilerplate_min_share * len(docs))
    return {line for line, n in counts.items() if n >= threshold}


def document_drop_reason(text: str, cfg: CleanConfig) -> str | None:
    """Why a cleaned document is dropped, or None to keep it."""
    if not text.strip():
        return "empty"
    if len(text) < cfg.min_doc_chars:
        return "too_short"
    if hangul_share(text) < cfg.min_doc_hangul_share:
        return "low_hangul"
    return None


def split_long(text: str, max_chars: int) -> list[str]:
    """Cut a document longer than `max_chars` at line boundaries (a single longer line is cut hard)."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    buf: list[str] = []
    size = 0
    for line in text.split("\n"):
        while len(line) > max_chars:
            if buf:
                pieces.append("\n".join(buf))
                buf, size = [], 0
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        if size + len(line) + 1 > max_chars and buf:
            pieces.append("\n".join(buf))
            buf, size = [], 0
        buf.append(line)
        size += len(line) + 1
    if buf:
        pieces.append("\n".join(buf))
    return [p.strip("\n") for p in pieces if p.strip()]
