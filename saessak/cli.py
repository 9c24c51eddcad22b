"""The one `saessak` command line: each stage is a subcommand.

Each subcommand lives in its own module, which exposes `register(subparsers)`; the module must
keep heavy imports (torch, tokenizers, fastapi, ...) inside the functions it runs, so that
`saessak --help` stays fast. `register` adds a parser and sets `func=<callable(args) -> int>`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from saessak import __version__
from saessak.errors import UserError

# Subcommand modules, in pipeline order (the order `saessak --help` lists them).
COMMAND_MODULES = [
    "saessak.data.cli",
    "saessak.pii.cli",
    "saessak.tokenizer_cli",
    "saessak.pretrain_cli",
    "saessak.tasks.cli",
    "saessak.sft_cli",
    "saessak.rl_cli",
    "saessak.eval_cli",
    "saessak.serve_cli",
    "saessak.export_cli",
    "saessak.report_cli",
    "saessak.speedrun_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saessak",
        description="saessak (새싹): Korean-first LLM stack — corpus, tokenizer, pretrain, SFT, RL, eval, serve, export.",
    )
    parser.add_argument("--version", action="version", version=f"saessak {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"saessak: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("saessak: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
