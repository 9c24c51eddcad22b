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


def _key_value(value: str) -> tuple[str, object]:
    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: expected KEY=VALUE")
    for cast in (int, float):
        try:
            return key.strip(), cast(raw)
        except ValueError:
            pass
    return key.strip(), raw


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

    b = sub.add_parser("build", help="build RUN/data: train/val .jsonl (or .parquet), data_card.json/.md",
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
    b.add_argument("--force", action="store_true", help="rebuild even if OUT/done.json exists (and start the "
                                                         "work in RUN/work/data over)")
    b.add_argument("--workers", type=_positive_int, help="tasks run at once by the local executor (default: the "
                                                         "machine's cores)")
    b.add_argument("--tasks", type=_positive_int, help="tasks the input is cut into (default: one per 32 MB of "
                                                       "input, at least one per worker for a larger input)")
    b.add_argument("--executor", choices=("local", "slurm", "ray"), default="local",
                   help="datatrove executor: local processes (default), Slurm job arrays (submits and returns; run "
                        "the same command again when the jobs finish), or Ray (the cluster RAY_ADDRESS names, else a "
                        "new instance on this machine; pip install 'saessak[scale]')")
    b.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", dest="output_format",
                   help="train/val files: JSONL (default) or Parquet (string columns id, source, text); every "
                        "later stage reads either")
    b.add_argument("--executor-option", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                   help="passed to datatrove's Slurm/Ray executor as it is, e.g. partition=cpu, time=12:00:00, "
                        "cpus_per_task=2, mem_per_cpu_gb=4, qos=low (repeatable)")
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
    for flag in ("workers", "tasks"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", str(getattr(args, flag))]
    if args.output_format != "jsonl":
        parts += ["--format", args.output_format]
    if args.executor != "local":
        parts += ["--executor", args.executor]
    for key, value in args.executor_option:
        parts += ["--executor-option", f"{key}={value}"]
    if args.keep_pii:
        parts.append("--keep-pii")
    return shlex.join(parts)


def run_build(args: argparse.Namespace) -> int:
    from saessak.data.build import build_corpus

    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources is not None else None
    summary = build_corpus(
        args.out, sources=sources, inputs=args.input, hf_dataset=args.hf_dataset, text_field=args.text_field,
        max_docs=args.max_docs, seed=args.seed, force=args.force, keep_pii=args.keep_pii,
        command=command_line(args), workers=args.workers, tasks=args.tasks, executor=args.executor,
        executor_options=dict(args.executor_option), output_format=args.output_format,
    )
    if summary.get("submitted"):
        print(f"data: Slurm jobs submitted (work in {summary['work']}); run the same command again when they finish")
        return 0
    print(f"data: train {summary['train']['documents']} docs, val {summary['val']['documents']} docs -> {args.out}")
    return 0
