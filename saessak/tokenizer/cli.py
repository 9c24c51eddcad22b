"""`saessak tokenizer train --run RUN [--vocab-size N] [--preset P] [--force]` (saessak/tokenizer/stage.py)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from saessak.cli import add_tag_option

    p = subparsers.add_parser("tokenizer", help="train the Korean byte-fallback BPE tokenizer")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    t = sub.add_parser("train", help="train RUN/tokenizer/tokenizer.json on RUN/data/train.jsonl")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--preset", default="cpu-tiny", help="preset whose vocabulary size to use (default cpu-tiny)")
    t.add_argument("--vocab-size", type=int, default=None, help="vocabulary size (overrides the preset's)")
    t.add_argument("--force", action="store_true", help="retrain even if RUN/tokenizer/done.json exists")
    t.add_argument("--max-chars", type=int, default=None, metavar="N",
                   help="train BPE on at most N characters sampled evenly from the train split "
                        "(default 1,000,000,000; a smaller corpus is used whole)")
    add_tag_option(t)
    t.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from saessak import recipes
    from saessak.tokenizer.stage import train_stage

    recipe = recipes.get(args.preset)
    vocab_size = args.vocab_size if args.vocab_size is not None else recipe.shape.vocab_size
    from saessak.tokenizer.stage import DEFAULT_MAX_CHARS

    summary = train_stage(args.run, vocab_size=vocab_size, preset=recipe.name, force=args.force,
                          max_chars=args.max_chars if args.max_chars is not None else DEFAULT_MAX_CHARS)
    if summary.get("skipped"):
        print(f"tokenizer: {args.run}/tokenizer is complete (done.json); use --force to retrain")
    else:
        print(f"tokenizer: vocab {summary['vocab_size']}, {summary['hangul_chars_per_token']} Hangul chars/token "
              f"on val, byte fallback {summary['byte_fallback_rate']}, {summary['train_seconds']} s")
    return 0
