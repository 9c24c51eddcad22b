"""`saessak rl`: GRPO on the checkable Korean tasks (stage.py, docs/RL.md).

Option names follow Hugging Face TRL's GRPOConfig (config.py); an option not given takes the
preset's recipe value.
"""

from __future__ import annotations


def register(subparsers) -> None:
    from saessak.cli import add_config_options, add_stage_options
    from saessak.rl.config import GRPOConfig
    from saessak.training.parallel import add_parallel_options

    p = subparsers.add_parser("rl", help="GRPO reinforcement learning on verifiable Korean tasks",
                              description="Improve RUN/sft/final with GRPO on the task suite; writes RUN/rl/.")
    add_stage_options(p, "rl", needs="sft/")
    p.add_argument("--batch-size", type=int, help="completions per step (TRL style): prompts-per-step x G")
    add_parallel_options(p)
    add_config_options(p, GRPOConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from saessak import recipes
    from saessak.cli import config_overrides
    from saessak.rl.config import GRPOConfig, validate_batch
    from saessak.rl.stage import run_rl
    from saessak.runfolder import RunFolder
    from saessak.training.parallel import parallel_from_args

    overrides = config_overrides(args, GRPOConfig)
    if args.batch_size is not None:
        G = args.num_generations or recipes.stage_config(GRPOConfig, RunFolder(args.run).preset(args.preset),
                                                         "rl").num_generations
        validate_batch(args.batch_size, G)
        overrides["prompts_per_step"] = args.batch_size // G
    run_rl(args.run, preset=args.preset, resume=args.resume, force=args.force, parallel=parallel_from_args(args),
           **overrides)
    return 0
