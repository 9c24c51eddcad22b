"""The tokenizer stage: RUN/data/train.jsonl -> RUN/tokenizer/.

Trains the byte-fallback BPE (bpe.py) and writes RUN/tokenizer/tokenizer.json, stats.json
(measured on the val split, stats.py) and done.json last, plus one ledger record. A finished
stage is skipped unless `force`.
"""

from __future__ import annotations

import time

from saessak.data.split import iter_docs, require_split
from saessak.errors import UserError
from saessak.io import file_sha256, write_json
from saessak.ledger import StageTimer
from saessak.runfolder import RunFolder
from saessak.tokenizer.bpe import train_tokenizer
from saessak.tokenizer.stats import tokenizer_stats


DEFAULT_MAX_CHARS = 1_000_000_000  # BPE training sample: enough for merges, bounded whatever the corpus size


def sample_texts(path, max_chars: int, total_chars: int | None, seed: int = 0):
    """Documents of a split for training: all of them when the split holds at most `max_chars`
    characters; otherwise each document with probability max_chars / total (seeded), stopping at
    `max_chars`, so the sample is spread over the whole corpus and never larger than the bound."""
    import random

    if total_chars is None:  # not recorded (an older data stage): one streaming pass to count
        total_chars = sum(len(d["text"]) for d in iter_docs(path))
    rate = 1.0 if not total_chars or total_chars <= max_chars else max_chars / total_chars
    rng = random.Random(seed)
    taken = 0
    for d in iter_docs(path):
        if rate < 1.0 and rng.random() >= rate:
            continue
        if taken + len(d["text"]) > max_chars and taken:
            return
        taken += len(d["text"])
        yield d["text"]


def train_stage(run_root, vocab_size: int, preset: str | None = None, force: bool = False,
                max_chars: int = DEFAULT_MAX_CHARS) -> dict:
    """Train, measure and record the tokenizer stage; returns the done.json summary. BPE is trained
    on at most `max_chars` characters sampled from the train split (`sample_texts`)."""
    rf = RunFolder(run_root)
    if rf.is_done("tokenizer") and not force:
        return {**rf.done_summary("tokenizer"), "skipped": True}
    train_path = require_split(rf.root, "train", "tokenizer train")
    val_path = require_split(rf.root, "val", "tokenizer train")

    if max_chars < 1:
        raise UserError(f"--max-chars {max_chars}: must be at least 1")
    data_summary = rf.done_summary("data") if rf.is_done("data") else {}
    total_chars = (data_summary.get("train") or {}).get("characters")
    with StageTimer(rf.root, "tokenizer") as timer:  # in the ledger from here on, even if it fails
        train_bytes = 0
        train_docs = 0

        def texts():
            nonlocal train_bytes, train_docs
            for text in sample_texts(train_path, max_chars, total_chars):
                train_bytes += len(text.encode("utf-8"))
                train_docs += 1
                yield text

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
            "max_chars": max_chars,
            "train_seconds": round(train_seconds, 2),
        }
        timer.finish(vocab_size=tok.vocab_size, train_bytes=train_bytes, train_docs=train_docs,
                     hangul_chars_per_token=stats["hangul_chars_per_token"])
        rf.mark_done("tokenizer", summary)
    return summary
