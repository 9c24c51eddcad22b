"""`saessak pretrain --run RUN --preset NAME [--max-steps N] [--resume] [--force] ...`.

The same command runs under `torchrun --nproc_per_node=N -m saessak pretrain --run-dir RUN ...` (DDP;
torchrun's parser takes `--run` for an abbreviation of its own --run-path, hence the alias).
See docs/TRAINING.md.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pretrain the base model (RUN/base/) from the tokenizer and text splits")
    # --run-dir is the same option: torchrun's own parser rejects `--run` as an ambiguous prefix of
    # its --run-path, so under torchrun write `--run-dir RUN`.
    p.add_argument("--run", "--run-dir", dest="run", required=True, help="run folder (--run-dir under torchrun)")
    p.add_argument("--preset", required=True, help="model/training preset: micro, cpu-tiny, cpu-small, d12, d20, ...")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: the preset's)")
    p.add_argument("--resume", action="store_true",
                   help="require a checkpoint to continue from (checkpoints are resumed automatically anyway)")
    p.add_argument("--force", action="store_true", help="start over: drop checkpoints, shards, metrics and final model")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default=None,
                   help="autocast dtype; auto = bf16 on CUDA and AMX CPUs, else fp32 (default: the preset's)")
    p.add_argument("--compile", dest="compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="do not torch.compile the model")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per micro-batch per process")
    p.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimizer step")
    p.add_argument("--val-every", type=int, default=None, help="steps between validations (0: only at the end)")
    p.add_argument("--ckpt-every", type=int, default=None, help="steps between checkpoints (0: none)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the weights and the data order")
    p.add_argument("--no-samples", dest="samples", action="store_false", help="skip the sample generations")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saessak.pretrain import PretrainOptions, run_pretrain

    opts = PretrainOptions(run=args.run, preset=args.preset, max_steps=args.max_steps, resume=args.resume,
                           force=args.force, device=args.device, dtype=args.dtype, compile=args.compile,
                           seed=args.seed, batch_size=args.batch_size, grad_accum=args.grad_accum,
                           val_every=args.val_every, ckpt_every=args.ckpt_every, samples=args.samples,
                           quiet=args.quiet)
    summary = run_pretrain(opts)
    if summary.get("skipped"):
        print(f"pretrain: {args.run}/base is complete (done.json); use --force to train again")
    return 0
