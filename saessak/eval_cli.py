"""`saessak eval`: task accuracy of a model stage (`eval tasks`) and lm-evaluation-harness (`eval lm-eval`)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate: Korean task accuracy per stage, or lm-evaluation-harness",
                              description="Evaluate a model stage on the task suite's held-out test split.")
    sub = p.add_subparsers(dest="eval_command", metavar="KIND")

    t = sub.add_parser("tasks", help="greedy pass@1 and pass@k on the held-out test split of each family")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--stage", required=True, choices=["base", "sft", "rl"], help="which model to evaluate")
    t.add_argument("--n", type=int, default=200,
                   help="items per family, at most: each distinct question counts once, so a level with fewer "
                        "held-out questions than its share gives all it has (default 200)")
    t.add_argument("--k", type=int, default=4, help="samples per item for pass@k (0 = greedy only; default 4)")
    t.add_argument("--seed", type=int, help="test-item seed (default: the project's fixed eval seed)")
    t.add_argument("--tasks", help="comma-separated families (default: all)")
    t.add_argument("--temperature", type=float, default=0.8, help="sampling temperature for pass@k")
    t.add_argument("--max-tokens", type=int, help="completion limit (default: the RL preset's)")
    t.add_argument("--levels", help="task levels, e.g. 1-3 or all (default: the levels the run's preset "
                                    "trains on, docs/RL.md#levels); items are split evenly over them")
    t.add_argument("--split", choices=["test", "val", "train"], default="test",
                   help="test (default: the held-out split the report uses); val: the held-out split for "
                        "choosing settings (to eval/results_val.json); train: items training draws from")
    t.add_argument("--force", action="store_true", help="redo even if results.json has this stage")
    t.set_defaults(func=run_tasks)

    lm = sub.add_parser("lm-eval", help="run EleutherAI lm-evaluation-harness on an exported HF folder")
    lm.add_argument("--model", required=True, help="exported Hugging Face folder (saessak export hf)")
    lm.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    lm.add_argument("--limit", type=int, help="items per task")
    lm.add_argument("--output", help="write the results JSON here")
    lm.set_defaults(func=run_lm_eval)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_tasks(args) -> int:
    from saessak.evaluate import DEFAULT_SEED, run_eval_tasks

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    run_eval_tasks(args.run, args.stage, n=args.n, k=args.k,
                   seed=DEFAULT_SEED if args.seed is None else args.seed, tasks=tasks,
                   temperature=args.temperature, max_tokens=args.max_tokens, force=args.force, split=args.split,
                   levels=args.levels)
    return 0


def run_lm_eval(args) -> int:
    # Written by the export side (issue 7); imported only when this subcommand runs.
    from saessak import lm_eval_runner

    return int(lm_eval_runner.run(args))
