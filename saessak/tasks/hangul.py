"""Hangul syllable arithmetic: the final consonant (받침) decides particle forms."""

from __future__ import annotations

_BASE = 0xAC00
_LAST = 0xD7A3
RIEUL_FINAL = 8  # index of ㄹ among the 28 final-consonant slots (0 = none)


def is_syllable(ch: str) -> bool:
    return len(ch) == 1 and _BASE <= ord(ch) <= _LAST


def final_index(ch: str) -> int:
    """0 when the syllable has no final consonant, else its 1..27 slot (8 is ㄹ)."""
    if not is_syllable(ch):
        raise ValueError(f"not a Hangul syllable: {ch!r}")
    return (ord(ch) - _BASE) % 28


def has_final(ch: str) -> bool:
    return final_index(ch) != 0
