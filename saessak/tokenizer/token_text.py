"""Prefix-stable streaming detokenisation for the generation engine.

Re-decoding the whole id list with Hugging Face's decoder at every token does not work for
streaming: that decoder's ByteFallback step turns a run of byte tokens into text as a whole and, if
the run is not valid UTF-8, replaces *every* byte of it with U+FFFD — so a character already shown
can later be rewritten when a bad byte follows, and the stream must then stop emitting. It also
costs O(length) per token.

`TokenTextDecoder` maps each token to its bytes once (byte tokens <0xNN> to that byte, pieces
with "▁" as a space, reserved special tokens to nothing) and runs Python's incremental UTF-8
decoder over them: O(1) per token, a delta never ends inside a UTF-8 sequence, and text once
emitted never changes. For valid UTF-8 the result equals `Tokenizer.decode` (tested); invalid
bytes become U+FFFD per maximal invalid subsequence (Python's rule) instead of one per byte.
"""

from __future__ import annotations

import codecs
import re

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def token_bytes_table(tokenizer) -> list[bytes]:
    """The bytes each token id contributes to decoded text (b"" for special tokens); a tokenizer of
    another kind (byte-level BPE, saessak/tokenizer/imported.py) brings its own table."""
    own = getattr(tokenizer, "token_bytes", None)
    return own() if own is not None else metaspace_bytes_table(tokenizer)


def metaspace_bytes_table(tokenizer) -> list[bytes]:
    """The table of a SentencePiece-style vocabulary: "▁" is a space, <0xNN> is that byte."""
    table = []
    for i in range(tokenizer.vocab_size):
        piece = tokenizer.id_to_token(i)
        if piece is None or i in tokenizer.special_ids:
            table.append(b"")
            continue
        m = _BYTE_TOKEN.fullmatch(piece)
        table.append(bytes([int(m.group(1), 16)]) if m else piece.replace("\u2581", " ").encode("utf-8"))
    return table


class TokenTextDecoder:
    """Push token ids, get text deltas; `emitted` is all text so far."""

    def __init__(self, table: list[bytes], strip_first_space: bool = True):
        self.table = table
        self._strip = strip_first_space
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._started = False
        self.emitted = ""

    def _add(self, text: str) -> str:
        if not self._started and text:
            # a SentencePiece-style decoder strips the one space that starts the whole text
            self._started = True
            if self._strip and text[0] == " ":
                text = text[1:]
        self.emitted += text
        return text

    def push(self, ids) -> str:
        table = self.table
        data = b"".join(table[i] if 0 <= i < len(table) else b"" for i in ids)
        return self._add(self._utf8.decode(data))

    def flush(self) -> str:
        """Release any trailing incomplete UTF-8 sequence (as U+FFFD) at the end of a stream."""
        return self._add(self._utf8.decode(b"", final=True))


def decode_ids(table: list[bytes], ids, strip_first_space: bool = True) -> str:
    d = TokenTextDecoder(table, strip_first_space)
    d.push(ids)
    d.flush()
    return d.emitted
