"""`saessak pii scan [FILE|-]` and `saessak pii mask [FILE|-]`.

scan prints JSON Lines, one entity per line: {"type", "start", "end", "text"}, where start/end are
character offsets into the input exactly as read (decoded as UTF-8; line endings untouched).
mask prints the input with each entity replaced by its type's placeholder (docs/PII.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from saessak.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("pii", help="detect and mask Korean personal data (주민등록번호, phone, card, ...)")
    sub = p.add_subparsers(dest="pii_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("scan", "print one JSON line per PII entity: type, start, end, text (character offsets)"),
        ("mask", "print the text with each PII entity replaced by a placeholder such as [PHONE]"),
    ):
        q = sub.add_parser(name, help=helptext, description=helptext)
        q.add_argument("file", nargs="?", default="-", help="input text file (UTF-8); '-' or omitted: stdin")
        q.set_defaults(func=run, pii_action=name)


def read_input(path: str) -> str:
    """The whole input decoded as UTF-8 without newline translation, so offsets match the bytes read."""
    if path == "-":
        data = sys.stdin.buffer.read()
        label = "<stdin>"
    else:
        label = path
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise UserError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory, expected a text file") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{label}: not valid UTF-8 at byte {e.start}") from None


def run(args: argparse.Namespace) -> int:
    from saessak.pii import apply_mask, find_pii

    text = read_input(args.file)
    entities = find_pii(text)
    if args.pii_action == "scan":
        result = "".join(json.dumps(ent.to_json(), ensure_ascii=False) + "\n" for ent in entities)
    else:
        result = apply_mask(text, entities)
    # Bytes, not sys.stdout: the output is UTF-8 whatever the locale, with line endings untouched.
    sys.stdout.flush()
    sys.stdout.buffer.write(result.encode("utf-8"))
    sys.stdout.buffer.flush()
    return 0
