"""`saessak pretrain --run RUN --preset NAME [--max-steps N] [--resume] [--force] ...` (stage.py).

The same command runs under `torchrun --nproc_per_node=N -m saessak pretrain --run-dir RUN ...`
(DDP, or FSDP2 with `--fsdp`; torchrun's parser takes `--run` for an abbreviation of its own
--run-path, hence the alias).
Every setting of the preset's recipe can be overridden by name. See docs/TRAINING.md.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from saessak.cli import add_config_options, add_stage_options
    from saessak.pretrain.config import PretrainConfig
    from saessak.training.parallel import add_parallel_options

    p = subparsers.add_parser("pretrain", help="pretrain the model (RUN/pretrain/) from the tokenizer and text splits")
    add_stage_options(p, "pretrain", needs="data/ and tokenizer/", preset_required=True)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--no-samples", dest="samples", action="store_false", help="skip the sample generations")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_parallel_options(p)
    add_config_options(p, PretrainConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saessak.cli import config_overrides
    from saessak.pretrain.config import PretrainConfig
    from saessak.pretrain.stage import run_pretrain
    from saessak.training.parallel import parallel_from_args

    summary = run_pretrain(args.run, args.preset, resume=args.resume, force=args.force, device=args.device,
                           samples=args.samples, quiet=args.quiet, parallel=parallel_from_args(args),
                           **config_overrides(args, PretrainConfig))
    if summary.get("skipped"):
        print(f"pretrain: {args.run}/pretrain is complete (done.json); use --force to train again")
    return 0
