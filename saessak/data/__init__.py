"""The data stage: the Korean corpus pipeline (RUN/data/).

- sources.py        the named default sources (Debian Korean docs, the constitution); cache.py fetches them
- inputs.py         the user's local files and Hugging Face datasets
- htmltext.py       prose out of HTML help pages; licence.py reads Debian copyright files
- clean.py          NFC, control characters, line and document filters
- ingest.py         the door into training: every outside text (corpus, SFT chat data, ...) is PII-masked and counted there
- dedup.py          the Korean parts of dedup: the exact key, character shingles, the MinHash settings
- pipeline.py       the datatrove steps and stages (read, boilerplate, filter + PII, exact and MinHash dedup, write)
- split.py          the train/val split by document hash, and writing and reading a run's split files (JSONL, Parquet)
- source_report.py  per-source counts, measured while the corpus is built
- card.py           data_card.json / data_card.md, and the summary the report and model card carry
- executors.py      the datatrove executors the stages run on (local, Slurm, Ray)
- build.py          `build_corpus`: runs the stages on an executor, sums the task counts into the card
- cli.py            `saessak data fetch|build`

`build_corpus` is imported on first use, so `saessak --help` (which imports `saessak.data.cli`)
does not pay for numpy and the rest of the pipeline.
"""

__all__ = ["build_corpus"]


def __getattr__(name: str):
    if name == "build_corpus":
        from saessak.data.build import build_corpus

        return build_corpus
    raise AttributeError(f"module 'saessak.data' has no attribute {name!r}")
