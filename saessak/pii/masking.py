"""Replace PII entities with placeholders that name their type (documented in docs/PII.md)."""

from __future__ import annotations

from collections import Counter

from saessak.pii.detectors import PII_TYPES, Entity, find_pii

# One placeholder per type. Square brackets + upper case: readable in the corpus, never produced
# by the detectors themselves (so masking twice changes nothing), and short for the tokenizer.
PLACEHOLDERS = {t: f"[{t.upper()}]" for t in PII_TYPES}


def apply_mask(text: str, entities: list[Entity]) -> str:
    """`text` with each (non-overlapping, sorted) entity replaced by its type's placeholder."""
    if not entities:
        return text
    parts = []
    pos = 0
    for ent in entities:
        parts.append(text[pos:ent.start])
        parts.append(PLACEHOLDERS[ent.type])
        pos = ent.end
    parts.append(text[pos:])
    return "".join(parts)


def mask_pii(text: str) -> tuple[str, dict[str, int]]:
    """(masked text, number of entities masked per type)."""
    entities = find_pii(text)
    return apply_mask(text, entities), dict(Counter(e.type for e in entities))
