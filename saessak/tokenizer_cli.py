"""`saessak tokenizer train --run RUN [--vocab-size N] [--preset P] [--force]`.

Reads RUN/data/train.jsonl, trains the byte-fallback BPE (saessak.tokenizer), and writes
RUN/tokenizer/tokenizer.json, stats.json (measured on the val split, see saessak.tokenizer_stats)
and done.json last, plus one ledger record. A finished stage is skipped unless --force.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("tokenizer", help="train the Korean byte-fallback BPE tokenizer")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    t = sub.add_parser("train", help="train RUN/tokenizer/tokenizer.json on RUN/data/train.jsonl")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--preset", default="cpu-tiny", help="model preset whose vocabulary size to use (default cpu-tiny)")
    t.add_argument("--vocab-size", type=int, default=None, help="vocabulary size (overrides the preset's)")
    t.add_argument("--force", action="store_true", help="retrain even if RUN/tokenizer/done.json exists")
    t.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from saessak.presets import get_preset

    preset = get_preset(args.preset)
    vocab_size = args.vocab_size if args.vocab_size is not None else preset.vocab_size
    summary = train_stage(args.run, vocab_size=vocab_size, preset=preset.name, force=args.force)
    if summary.get("skipped"):
        print(f"tokenizer: {args.run}/tokenizer is complete (done.json); use --force to retrain")
    else:
        print(f"tokenizer: vocab {summary['vocab_size']}, {summary['hangul_chars_per_token']} Hangul chars/token "
              f"on val, byte fallback {summary['byte_fallback_rate']}, {summary['train_seconds']} s")
    return 0


def train_stage(run_root, vocab_size: int, preset: str | None = None, force: bool = False) -> dict:
    """Train, measure and record the tokenizer stage; returns the done.json summary."""
    import hashlib
    import time

    from saessak.corpus_split import iter_docs, require_split
    from saessak.io import write_json
    from saessak.ledger import StageTimer
    from saessak.runfolder import RunFolder
    from saessak.tokenizer import train_tokenizer
    from saessak.tokenizer_stats import tokenizer_stats

    rf = RunFolder(run_root)
    if rf.is_done("tokenizer") and not force:
        return {**rf.done_summary("tokenizer"), "skipped": True}
    train_path = require_split(rf.root, "train", "tokenizer train")
    val_path = require_split(rf.root, "val", "tokenizer train")

    timer = StageTimer(rf.root, "tokenizer")
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
    sha = hashlib.sha256(rf.tokenizer_json.read_bytes()).hexdigest()
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
