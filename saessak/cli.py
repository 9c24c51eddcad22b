"""The one `saessak` command line: each stage is a subcommand.

Each stage package has a `cli.py` exposing `register(subparsers)`; it keeps heavy imports (torch,
tokenizers, fastapi, ...) inside the functions it runs, so that `saessak --help` stays fast.
`register` adds a parser and sets `func=<callable(args) -> int>`.

A stage's settings are a config dataclass whose fields the recipe (saessak/recipes.py) fills per
preset; `add_config_options` makes one option per field (`--field-name`, typed from the field),
and `config_overrides` gives back the fields the user set, so the option list is written once.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from pathlib import Path
from typing import Any

from saessak import __version__
from saessak.errors import UserError

# Subcommand modules, in pipeline order (the order `saessak --help` lists them).
COMMAND_MODULES = [
    "saessak.data.cli",
    "saessak.pii.cli",
    "saessak.tokenizer.cli",
    "saessak.model.cli",
    "saessak.pretrain.cli",
    "saessak.tasks.cli",
    "saessak.distill.cli",
    "saessak.sft.cli",
    "saessak.rl.cli",
    "saessak.evals.cli",
    "saessak.serve.cli",
    "saessak.export.cli",
    "saessak.report.cli",
    "saessak.speedrun",
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
    from saessak.ledger import Terminated, count_from_process_start

    if argv is None:  # the process's entry point: its first stage attempt counts from the process start
        count_from_process_start()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        tagged = _apply_tag(args)
        try:
            return int(args.func(args) or 0)
        finally:
            if not tagged:
                _apply_tag(args)  # the command made the run folder
    except UserError as e:
        print(f"saessak: error: {e}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        print("saessak: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("saessak: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


# ----------------------------------------------------------------------------- config options


def add_tag_option(parser: argparse.ArgumentParser, run_of=None) -> None:
    """`--tag experiment|final|ablation`: what the run is for, kept in RUN/tag.json (the bill groups
    by it). `run_of(args)` gives the run folder when it is not `args.run`."""
    from saessak.runfolder import TAGS

    parser.add_argument("--tag", choices=TAGS, default=None,
                        help="what the run is for, kept in RUN/tag.json; `saessak bill` groups runs by it")
    if run_of is not None:
        parser.set_defaults(tag_run=run_of)


def _apply_tag(args: argparse.Namespace) -> bool:
    """Write `--tag` into the run folder if one was given and the folder exists; True when done or
    nothing to do."""
    tag = getattr(args, "tag", None)
    if not tag:
        return True
    run_of = getattr(args, "tag_run", None)
    run = run_of(args) if callable(run_of) else getattr(args, "run", None)
    if not run or not Path(run).is_dir():
        return False
    from saessak.runfolder import RunFolder

    RunFolder(run).set_tag(tag)
    return True


def add_stage_options(parser: argparse.ArgumentParser, stage: str, needs: str, preset_required: bool = False) -> None:
    """What every training stage takes: the run folder, the preset, --resume and --force (the stage
    life-cycle, saessak/training/lifecycle.py), and --tag (what the run is for, for the bill)."""
    # --run-dir is the same option: torchrun's own parser rejects `--run` as an ambiguous prefix of
    # its --run-path, so under torchrun write `--run-dir RUN`.
    parser.add_argument("--run", "--run-dir", dest="run", required=True,
                        help=f"run folder (needs {needs}); --run-dir is the spelling torchrun lets through")
    parser.add_argument("--preset", required=preset_required,
                        help="recipe: micro, cpu-tiny, cpu-small, d12, d20, ..." if preset_required
                        else "recipe (default: the one the run was pretrained with)")
    parser.add_argument("--resume", action="store_true",
                        help="require a checkpoint to continue from (a stage with checkpoints resumes anyway)")
    parser.add_argument("--force", action="store_true",
                        help=f"start over: empty RUN/{stage}/ first, even if the stage is complete")
    add_tag_option(parser)


def _plain_type(hint: Any) -> Any:
    """`int | None` -> int; other hints as they are."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else str
    return typing.get_origin(hint) or hint


def add_config_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the config dataclass `cls` (`--field-name`, or the field's `flag`),
    default None: the recipe's value stands unless the user gives one. A field's metadata (see
    `saessak.recipes.setting`) carries its help, choices, extra spellings and text parser."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or meta.get("cli") is False:
            continue
        kind = _plain_type(hints[f.name])
        flags = [meta.get("flag") or "--" + f.name.replace("_", "-"), *meta.get("aliases", ())]
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": _help_with_default(f)}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if meta.get("parse") is None and kind not in (int, float, str):
                continue  # a structured field with no text form: recipe only
            # Text with a parser stays text here: `config_overrides` parses it, so a bad value is a
            # UserError ("saessak: error: --flag ...") like every other mistake in a stage's input.
            kwargs["type"] = str if meta.get("parse") else kind
            for key in ("choices", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
        parser.add_argument(*flags, **kwargs)
    parser.epilog = ("Settings not given take the preset's recipe value (saessak/recipes.py), else the "
                     "default shown.")


def _help_with_default(f: dataclasses.Field) -> str | None:
    text = f.metadata.get("help")
    if text is None or "default" in text:
        return text
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return text
    if isinstance(default, dict):
        default = ",".join(f"{k}={v}" for k, v in default.items())
    elif isinstance(default, tuple):
        default = ",".join(map(str, default)) or "all"
    return f"{text} (default: {default})".replace("%", "%%")


def config_overrides(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The fields of `cls` the user set on the command line (everything else comes from the recipe),
    text parsed by the field's parser (a bad value is a UserError naming the option)."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            parse = f.metadata.get("parse")
            out[f.name] = parse(value) if parse and isinstance(value, str) else value
    return out


if __name__ == "__main__":
    raise SystemExit(main())
