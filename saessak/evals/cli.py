"""`saessak eval`: task accuracy of a model stage (`eval tasks`) and lm-evaluation-harness (`eval lm-eval`)."""

from __future__ import annotations


def register(subparsers) -> None:
    from saessak.cli import add_config_options, add_tag_option
    from saessak.evals.config import EvalConfig
    from saessak.runfolder import LEGACY_NAMES, MODEL_STAGES

    p = subparsers.add_parser("eval", help="evaluate: Korean task accuracy per stage, or lm-evaluation-harness",
                              description="Evaluate a model stage on the task suite's held-out test split.")
    sub = p.add_subparsers(dest="eval_command", metavar="KIND")

    t = sub.add_parser("tasks", help="greedy pass@1 and pass@k on the held-out test split of each family")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--stage", required=True, choices=[*MODEL_STAGES, *LEGACY_NAMES],
                   help="which model to evaluate (base: the old name of pretrain)")
    t.add_argument("--force", action="store_true", help="redo even if results.json has this stage")
    add_config_options(t, EvalConfig)
    add_tag_option(t)
    t.set_defaults(func=run_tasks)

    lm = sub.add_parser("lm-eval", help="run EleutherAI lm-evaluation-harness on an exported HF folder")
    lm.add_argument("--model", required=True, help="exported Hugging Face folder (saessak export hf)")
    lm.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    lm.add_argument("--limit", type=int, help="items per task")
    lm.add_argument("--output", help="write the results JSON here")
    lm.add_argument("--run", default=None,
                    help="run folder whose ledger records this evaluation's cost (default: the run folder the "
                         "model was exported into, RUN/export/DIR; none: not recorded)")
    add_tag_option(lm, run_of=_lm_eval_run)
    lm.set_defaults(func=run_lm_eval)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _lm_eval_run(args):
    from saessak.evals.lm_eval import ledger_run

    return ledger_run(args.model, args.run)


def run_tasks(args) -> int:
    from saessak.cli import config_overrides
    from saessak.evals.config import EvalConfig
    from saessak.evals.task_eval import run_eval_tasks

    run_eval_tasks(args.run, args.stage, force=args.force, **config_overrides(args, EvalConfig))
    return 0


def run_lm_eval(args) -> int:
    from saessak.evals import lm_eval

    return int(lm_eval.run(args))
