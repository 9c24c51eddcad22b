"""The Korean corpus pipeline: sources, cleaning, dedup, PII masking, split, data card."""

from saessak.data.build import build_corpus

__all__ = ["build_corpus"]
