"""`saessak data fetch` (cache the default sources) and `saessak data build` (build RUN/data)."""

from __future__ import annotations

import argparse
import shlex
import sys


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def _run_folder(args: argparse.Namespace) -> str:
    """The run folder a build belongs to: the one holding --out (RUN/data)."""
    from pathlib import Path

    return str(Path(args.out).parent)


def register(subparsers) -> None:
    from saessak.cli import add_tag_option
    from saessak.data.ingest import add_keep_pii_option

    p = subparsers.add_parser("data", help="fetch corpus sources and build the cleaned, PII-masked corpus")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    f = sub.add_parser("fetch", help="download the corpus sources into ${SAESSAK_CACHE:-~/.cache/saessak}",
                       description="Download the Debian documentation packages (apt-get download + dpkg-deb -x, "
                                   "no system-wide install) and the konlpy wheel into the cache. Fast when cached.")
    f.add_argument("--force", action="store_true", help="download again even when cached")
    f.set_defaults(func=run_fetch)

    b = sub.add_parser("build", help="build RUN/data: train.jsonl, val.jsonl, data_card.json/.md",
                       description="Build the corpus. With no --sources/--input/--hf-dataset the default sources "
                                   "(debian-ko, kolaw) are used; otherwise exactly the ones given.")
    b.add_argument("--out", required=True, help="output folder, normally RUN/data")
    b.add_argument("--sources", help="comma-separated named sources: debian-ko, kolaw (default), "
                                     "debian-install-ko, debian-faq-ko (opt-in: copyleft or unclear licence), all")
    b.add_argument("--input", action="append", default=[], metavar="PATH",
                   help="local .txt/.md/.jsonl/.parquet file or folder (repeatable)")
    b.add_argument("--hf-dataset", metavar="ID[:CONFIG]", help="Hugging Face dataset (streamed) or a local dataset folder")
    b.add_argument("--text-field", default="text", help="text field of .jsonl/.parquet/dataset rows (default: text)")
    b.add_argument("--max-docs", type=_positive_int, help="read at most N documents from each source (quick builds)")
    b.add_argument("--seed", type=int, default=0, help="salts the train/val split and MinHash (default 0)")
    b.add_argument("--force", action="store_true", help="rebuild even if OUT/done.json exists")
    add_keep_pii_option(b)
    add_tag_option(b, run_of=_run_folder)
    b.set_defaults(func=run_build)


def run_fetch(args: argparse.Namespace) -> int:
    from saessak.data.cache import cache_dir, fetch_all

    fetch_all(force=args.force, log=lambda m: print(f"[data fetch] {m}", file=sys.stderr))
    print(f"[data fetch] cache: {cache_dir()}", file=sys.stderr)
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The build command as a user would retype it (options in a fixed order), for the data card."""
    parts = ["saessak", "data", "build", "--out", args.out]
    if args.sources is not None:
        parts += ["--sources", args.sources]
    for path in args.input:
        parts += ["--input", path]
    if args.hf_dataset:
        parts += ["--hf-dataset", args.hf_dataset]
    if args.text_field != "text":
        parts += ["--text-field", args.text_field]
    if args.max_docs is not None:
        parts += ["--max-docs", str(args.max_docs)]
    if args.seed != 0:
        parts += ["--seed", str(args.seed)]
    if args.force:
        parts.append("--force")
    if args.keep_pii:
        parts.append("--keep-pii")
    return shlex.join(parts)


def run_build(args: argparse.Namespace) -> int:
    from saessak.data.build import build_corpus

    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources is not None else None
    summary = build_corpus(
        args.out, sources=sources, inputs=args.input, hf_dataset=args.hf_dataset, text_field=args.text_field,
        max_docs=args.max_docs, seed=args.seed, force=args.force, keep_pii=args.keep_pii,
        command=command_line(args),
    )
    print(f"data: train {summary['train']['documents']} docs, val {summary['val']['documents']} docs -> {args.out}")
    return 0
