"""Korean PII detection and masking: `find_pii(text)` and `mask_pii(text)` (see docs/PII.md)."""

from saessak.pii.detectors import PII_TYPES, Entity, find_pii
from saessak.pii.masking import PLACEHOLDERS, apply_mask, mask_pii

__all__ = ["PII_TYPES", "PLACEHOLDERS", "Entity", "apply_mask", "find_pii", "mask_pii"]
