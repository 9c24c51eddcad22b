"""PII over inputs of any size: text read in chunks cut at line ends, each chunk scanned with the
text before it as context, so memory stays bounded and the result is the one a whole-text scan gives.

No identifier contains a line break, so a cut after "\\n" never splits one. What a candidate's type
may depend on (its label, a list of identifiers of the same type before it; detectors.py) lies in
the characters before it: each chunk is scanned with up to `MARGIN` characters of the text before
it and only the entities that start inside the chunk are kept. The only difference from a whole-
text scan would be a list of identifiers under one label longer than `MARGIN` characters, a list
whose first item lies further back than that.
"""

from __future__ import annotations

import codecs
from typing import BinaryIO, Callable, Iterator

from saessak.errors import UserError
from saessak.pii.detectors import Entity, find_pii
from saessak.pii.masking import apply_mask

CHUNK_CHARS = 1 << 20
MARGIN = 4096
_READ = 1 << 20


def _chunks(f: BinaryIO, label: str, chunk_chars: int) -> Iterator[str]:
    """The decoded text in pieces of about `chunk_chars` characters, each ending at a line end
    (except the last, or a single line longer than the bound, which waits for its end)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buf, offset = "", 0
    while True:
        block = f.read(_READ)
        pending = len(decoder.getstate()[0])  # bytes of a character the last block cut off
        try:
            buf += decoder.decode(block, final=not block)
        except UnicodeDecodeError as e:
            raise UserError(f"{label}: not valid UTF-8 at byte {offset - pending + e.start}") from None
        offset += len(block)
        while len(buf) >= chunk_chars:
            cut = buf.rfind("\n", 0, chunk_chars) + 1 or buf.find("\n", chunk_chars) + 1
            if not cut:
                break  # one long line: read on
            yield buf[:cut]
            buf = buf[cut:]
        if not block:
            if buf:
                yield buf
            return


def scan_stream(f: BinaryIO, label: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[tuple[str, list[Entity]]]:
    """(chunk, its entities with offsets into the whole input) for each chunk of `f`."""
    tail, done = "", 0
    for piece in _chunks(f, label, chunk_chars):
        text = tail + piece
        skip = len(tail)
        ents = [Entity(e.type, e.start - skip + done, e.end - skip + done, e.text, e.confidence)
                for e in find_pii(text) if e.start >= skip]
        yield piece, ents
        done += len(piece)
        tail = text[-MARGIN:]
        if "\n" in tail[:-1]:
            tail = tail[tail.index("\n") + 1:]  # start the context at a line start, not inside a number


def mask_stream(f: BinaryIO, write: Callable[[str], object], label: str, chunk_chars: int = CHUNK_CHARS) -> dict:
    """Writes `f` masked through `write`; returns the entity counts per type."""
    counts: dict[str, int] = {}
    done = 0
    for piece, ents in scan_stream(f, label, chunk_chars):
        write(apply_mask(piece, [Entity(e.type, e.start - done, e.end - done, e.text) for e in ents]))
        for e in ents:
            counts[e.type] = counts.get(e.type, 0) + 1
        done += len(piece)
    return counts
