"""`saessak rl`: GRPO on the checkable Korean tasks (see saessak/rl.py, docs/RL.md).

Option names follow Hugging Face TRL's GRPOConfig; unset options take the preset's default
(saessak/rl_config.py).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from saessak.curriculum import CURRICULA

    p = subparsers.add_parser("rl", help="GRPO reinforcement learning on verifiable Korean tasks",
                              description="Improve RUN/sft/final with GRPO on the task suite; writes RUN/rl/.")
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run folder (needs sft/); --run-dir is the spelling torchrun lets through")
    p.add_argument("--preset", help="hyperparameter preset (default: the one in RUN/base/final/meta.json)")
    p.add_argument("--tasks", help="comma-separated task families, or all (default: the preset's; "
                   "cpu-tiny: josa,spacing, docs/RL.md#which-families; other presets: all)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--prompts-per-step", type=int, help="prompts (groups) per step over all processes")
    p.add_argument("--batch-size", type=int, help="completions per step (TRL style): prompts-per-step x G")
    p.add_argument("--num-generations", "-G", type=int, help="completions per prompt (G >= 2)")
    p.add_argument("--max-completion-length", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--beta", type=float, help="KL weight to the frozen SFT model (0 = no reference)")
    p.add_argument("--epsilon", type=float, help="lower clipping range")
    p.add_argument("--epsilon-high", type=float, help="upper clipping range (clip-higher)")
    p.add_argument("--num-iterations", type=int, help="policy updates per generated batch (mu)")
    p.add_argument("--loss-type", choices=["grpo", "dr_grpo", "dapo"])
    p.add_argument("--scale-rewards", choices=["group", "batch", "none"])
    p.add_argument("--reward-weights", help="e.g. correctness=1,format=0.1,korean_consistency=0.05")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--max-grad-norm", type=float)
    p.add_argument("--mask-truncated-completions", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--dynamic-sampling", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--curriculum", choices=list(CURRICULA),
                   help="how prompts' task levels are chosen (docs/RL.md#curriculum)")
    p.add_argument("--start-level", type=int)
    p.add_argument("--max-level", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--time-budget", type=float, help="stop after the step that passes this many wall seconds")
    p.add_argument("--threads", type=int, help="torch CPU threads for a single process on CPU (default: "
                   "torch's, one per core); a --time-budget then costs threads x budget CPU-seconds")
    p.add_argument("--resume", action="store_true", help="continue from the latest RUN/rl/ckpt/ step")
    p.add_argument("--force", action="store_true", help="redo the stage even if RUN/rl/done.json exists")
    p.set_defaults(func=run)


def parse_weights(text: str | None) -> dict | None:
    from saessak.errors import UserError

    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--reward-weights {part!r}: expected NAME=NUMBER") from None
    return out


def run(args) -> int:
    from saessak.errors import UserError
    from saessak.rl import run_rl
    from saessak.rl_config import validate_batch

    prompts = args.prompts_per_step
    if args.batch_size is not None:
        from saessak.rl_config import config_for
        from saessak.runfolder import RunFolder
        from saessak.stage_model import preset_of

        G = args.num_generations or config_for(preset_of(RunFolder(args.run), args.preset)).num_generations
        validate_batch(args.batch_size, G)
        prompts = args.batch_size // G
    tasks = None  # the preset's
    if args.tasks is not None and args.tasks.strip().lower() == "all":
        tasks = ()  # every family
    elif args.tasks is not None:
        tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
        if not tasks:
            raise UserError(f"--tasks {args.tasks!r}: names no family (give e.g. josa,spacing, or all)")
    run_rl(args.run, preset=args.preset, resume=args.resume, force=args.force, time_budget_s=args.time_budget,
           max_steps=args.max_steps, prompts_per_step=prompts, num_generations=args.num_generations,
           max_completion_length=args.max_completion_length, temperature=args.temperature, top_p=args.top_p,
           top_k=args.top_k, beta=args.beta, epsilon=args.epsilon, epsilon_high=args.epsilon_high,
           num_iterations=args.num_iterations, loss_type=args.loss_type, scale_rewards=args.scale_rewards,
           reward_weights=parse_weights(args.reward_weights), learning_rate=args.learning_rate,
           max_grad_norm=args.max_grad_norm, mask_truncated_completions=args.mask_truncated_completions,
           dynamic_sampling=args.dynamic_sampling, curriculum=args.curriculum, start_level=args.start_level,
           max_level=args.max_level, seed=args.seed, tasks=tasks, threads=args.threads)
    return 0
