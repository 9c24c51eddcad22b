"""The tokenizer stage: RUN/data/train.jsonl -> RUN/tokenizer/.

Trains the byte-fallback BPE (bpe.py) and writes RUN/tokenizer/tokenizer.json, stats.json
(measured on the val split, stats.py) and done.json last, plus one ledger record. A finished
stage is skipped unless `force`.
"""

from __future__ import annotations

import time

from saessak.data.split import iter_docs, require_split
from saessak.io import file_sha256, write_json
from saessak.ledger import StageTimer
from saessak.runfolder import RunFolder
from saessak.tokenizer.bpe import train_tokenizer
from saessak.tokenizer.stats import tokenizer_stats


def train_stage(run_root, vocab_size: int, preset: str | None = None, force: bool = False) -> dict:
    """Train, measure and record the tokenizer stage; returns the done.json summary."""
    rf = RunFolder(run_root)
    if rf.is_done("tokenizer") and not force:
        return {**rf.done_summary("tokenizer"), "skipped": True}
    train_path = require_split(rf.root, "train", "tokenizer train")
    val_path = require_split(rf.root, "val", "tokenizer train")

    with StageTimer(rf.root, "tokenizer") as timer:  # in the ledger from here on, even if it fails
        train_bytes = 0
        train_docs = 0

        def texts():
            nonlocal train_bytes, train_docs
            for d in iter_docs(train_path):
                train_bytes += len(d["text"].encode("utf-8"))
                train_docs += 1
                yield d["text"]

        t0 = time.perf_counter()
        tok = train_tokenizer(texts(), vocab_size)
        train_seconds = time.perf_counter() - t0
        stats = tokenizer_stats(tok, iter_docs(val_path))
        stats.update(split="val", preset=preset, train_docs=train_docs, train_bytes=train_bytes)

        # Training succeeded in memory; only now is the old stage replaced. The marker goes first, so a
        # kill between the writes below leaves a stage that reads as unfinished, not a mixed one.
        rf.done_path("tokenizer").unlink(missing_ok=True)
        tok.save(rf.tokenizer_json)
        write_json(rf.tokenizer_dir / "stats.json", stats)
        sha = file_sha256(rf.tokenizer_json)
        summary = {
            "vocab_size": tok.vocab_size,
            "preset": preset,
            "tokenizer_sha256": sha,
            "hangul_chars_per_token": stats["hangul_chars_per_token"],
            "tokens_per_eojeol": stats["tokens_per_eojeol"],
            "byte_fallback_rate": stats["byte_fallback_rate"],
            "train_docs": train_docs,
            "train_bytes": train_bytes,
            "train_seconds": round(train_seconds, 2),
        }
        timer.finish(vocab_size=tok.vocab_size, train_bytes=train_bytes, train_docs=train_docs,
                     hangul_chars_per_token=stats["hangul_chars_per_token"])
        rf.mark_done("tokenizer", summary)
    return summary
