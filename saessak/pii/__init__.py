"""Korean PII detection and masking: `find_pii(text)` and `mask_pii(text)` (see docs/PII.md).

- validators.py  the official check-digit and date rules (주민등록번호, cards, business numbers, ...)
- detectors.py   finding entities in text, bounded by digit look-arounds
- masking.py     replacing them with typed placeholders, counted per type
- cli.py         `saessak pii scan|mask`
"""

from saessak.pii.detectors import PII_TYPES, Entity, find_pii
from saessak.pii.masking import PLACEHOLDERS, apply_mask, mask_pii

__all__ = ["PII_TYPES", "PLACEHOLDERS", "Entity", "apply_mask", "find_pii", "mask_pii"]
