"""Hangul, defined once: which code points are Hangul, and syllable arithmetic (받침).

Every stage that asks "is this Korean?" uses these ranges: the corpus filters (data), the
tokenizer's compression figures, the task suite's graders and its language-consistency reward.

- Syllables: U+AC00..U+D7A3 (가..힣), 19 initials x 21 medials x 28 final slots.
- Hangul letters: syllables plus the conjoining jamo (U+1100..U+11FF), compatibility jamo
  (U+3130..U+318F, as in ㅋㅋ) and the extended jamo blocks A (U+A960..U+A97F) and B (U+D7B0..U+D7FF).
"""

from __future__ import annotations

import re

SYLLABLE_FIRST, SYLLABLE_LAST = 0xAC00, 0xD7A3
_SYLLABLE_CLASS = "\uac00-\ud7a3"
_LETTER_CLASS = _SYLLABLE_CLASS + "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\ud7b0-\ud7ff"
SYLLABLE = re.compile(f"[{_SYLLABLE_CLASS}]")
LETTER = re.compile(f"[{_LETTER_CLASS}]")
RIEUL_FINAL = 8  # index of ㄹ among the 28 final-consonant slots (0 = none)


def is_syllable(ch: str) -> bool:
    return len(ch) == 1 and SYLLABLE_FIRST <= ord(ch) <= SYLLABLE_LAST


def final_index(ch: str) -> int:
    """0 when the syllable has no final consonant, else its 1..27 slot (8 is ㄹ)."""
    if not is_syllable(ch):
        raise ValueError(f"not a Hangul syllable: {ch!r}")
    return (ord(ch) - SYLLABLE_FIRST) % 28


def syllables(text: str) -> int:
    """How many Hangul syllables `text` holds."""
    return len(SYLLABLE.findall(text))


def share(text: str) -> float | None:
    """Hangul letters as a share of all letters (str.isalpha, i.e. Unicode category L*); None
    when the text has no letters at all."""
    n = sum(1 for c in text if c.isalpha())
    return len(LETTER.findall(text)) / n if n else None
