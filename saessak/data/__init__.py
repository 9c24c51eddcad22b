"""The Korean corpus pipeline: sources, cleaning, dedup, PII masking, split, data card.

`build_corpus` is imported on first use, so `saessak --help` (which imports `saessak.data.cli`)
does not pay for numpy and the rest of the pipeline.
"""

__all__ = ["build_corpus"]


def __getattr__(name: str):
    if name == "build_corpus":
        from saessak.data.build import build_corpus

        return build_corpus
    raise AttributeError(f"module 'saessak.data' has no attribute {name!r}")
