"""`saessak import hf PATH --run RUN [--preset P] [--force]`: start a run from an open model
(saessak/model/hf_import.py)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from saessak.cli import add_tag_option

    p = subparsers.add_parser("import", help="start a run from a local Hugging Face checkpoint (Llama, Qwen2, Qwen3, Mistral)")
    sub = p.add_subparsers(dest="import_command", metavar="FORMAT")
    h = sub.add_parser("hf", help="import a Hugging Face folder (config.json, *.safetensors, tokenizer.json, "
                                  "chat template) as RUN's base model; nothing is downloaded")
    h.add_argument("path", help="the local Hugging Face model folder (read only)")
    h.add_argument("--run", required=True, help="run folder to make (its pretrain stage becomes this model)")
    h.add_argument("--preset", default="cpu-tiny",
                   help="recipe the later stages take their settings from unless given theirs (default cpu-tiny)")
    h.add_argument("--force", action="store_true", help="replace a base model or tokenizer RUN already has")
    add_tag_option(h)
    h.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from saessak import recipes
    from saessak.model.hf_import import import_hf

    import_hf(args.path, args.run, preset=recipes.get(args.preset).name, force=args.force)
    return 0
