"""`saessak pii scan [FILE|-]` and `saessak pii mask [FILE|-] | mask PATH... --out DIR [--workers N]`.

scan prints JSON Lines, one entity per line: {"type", "start", "end", "text"}, where start/end are
character offsets into the input exactly as read (decoded as UTF-8; line endings untouched).
mask prints the input with each entity replaced by its type's placeholder (docs/PII.md); with
--out, every file of the given files and folders is written masked under DIR (same relative
paths), N files at a time. Inputs are read in chunks (saessak/pii/stream.py): memory does not grow
with the input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from saessak.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("pii", help="detect and mask Korean personal data (주민등록번호, phone, card, ...)")
    sub = p.add_subparsers(dest="pii_command", metavar="ACTION", required=True)
    q = sub.add_parser("scan", help="print one JSON line per PII entity: type, start, end, text (character offsets)",
                       description="print one JSON line per PII entity: type, start, end, text (character offsets)")
    q.add_argument("file", nargs="?", default="-", help="input text file (UTF-8); '-' or omitted: stdin")
    q.set_defaults(func=run, pii_action="scan")
    m = sub.add_parser("mask", help="print the text with each PII entity replaced by a placeholder such as [PHONE]",
                       description="print the text with each PII entity replaced by a placeholder such as [PHONE]; "
                                   "with --out, mask files and folders into DIR")
    m.add_argument("file", nargs="*", default=["-"], help="input text files or folders (UTF-8); '-' or none: stdin")
    m.add_argument("--out", metavar="DIR", help="write each input file masked under DIR (needed for several files "
                                                "or a folder)")
    m.add_argument("--workers", type=int, default=None, help="files masked at once with --out (default: cores)")
    m.set_defaults(func=run, pii_action="mask")


def _open(path: str):
    if path == "-":
        return sys.stdin.buffer, "<stdin>"
    try:
        return open(path, "rb"), path
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a text file (mask takes folders with --out DIR)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


def _write(data: str) -> None:
    # Bytes, not sys.stdout: the output is UTF-8 whatever the locale, with line endings untouched.
    sys.stdout.buffer.write(data.encode("utf-8"))


def run(args: argparse.Namespace) -> int:
    from saessak.pii.stream import mask_stream, scan_stream

    if args.pii_action == "mask" and (args.out or len(args.file) > 1):
        return _mask_many(args)
    path = args.file if isinstance(args.file, str) else args.file[0]
    f, label = _open(path)
    sys.stdout.flush()
    try:
        if args.pii_action == "scan":
            for _, ents in scan_stream(f, label):
                _write("".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in ents))
        else:
            mask_stream(f, _write, label)
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    sys.stdout.buffer.flush()
    return 0


def _jobs(inputs: list[str], out: Path) -> list[tuple[str, str]]:
    """(input file, output file) for every file of the inputs; folders keep their relative paths."""
    jobs = []
    for item in inputs:
        p = Path(item)
        if item == "-":
            raise UserError("pii mask --out: '-' (stdin) cannot go to a folder; give files or folders")
        if not p.exists():
            raise UserError(f"{item}: no such file or folder")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            jobs += [(str(f), str(out / p.name / f.relative_to(p))) for f in files]
        else:
            jobs.append((str(p), str(out / p.name)))
    targets = [o for _, o in jobs]
    if len(set(targets)) != len(targets):
        raise UserError("pii mask --out: two inputs have the same name; give them in separate runs")
    return jobs


def _mask_file(job: tuple[str, str]) -> tuple[str, dict | str]:
    from saessak.io import atomic_path
    from saessak.pii.stream import mask_stream

    src, dst = job
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(src, "rb") as f, atomic_path(dst) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
            return src, mask_stream(f, out.write, src)
    except UserError as e:
        return src, str(e)
    except OSError as e:
        return src, f"{src}: cannot read ({e.strerror})"


def _mask_many(args: argparse.Namespace) -> int:
    if not args.out:
        raise UserError("pii mask: several inputs need --out DIR")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    jobs = _jobs(args.file, Path(args.out))
    workers = min(args.workers or os.cpu_count() or 1, max(1, len(jobs)))
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = list(pool.imap(_mask_file, jobs))
    else:
        results = [_mask_file(j) for j in jobs]
    errors = [r for _, r in results if isinstance(r, str)]
    total: dict[str, int] = {}
    for _, r in results:
        if isinstance(r, dict):
            for k, v in r.items():
                total[k] = total.get(k, 0) + v
    masked = ", ".join(f"{k} {v:,}" for k, v in sorted(total.items())) or "none"
    print(f"pii mask: {len(results) - len(errors)} file(s) -> {args.out}; masked {masked}", file=sys.stderr)
    if errors:
        raise UserError(f"{len(errors)} file(s) not masked (nothing written for them): " + "; ".join(errors[:5]))
    return 0
