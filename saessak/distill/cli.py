"""`saessak distill`: graded, PII-masked reasoning traces from a teacher endpoint (stage.py)."""

from __future__ import annotations


def register(subparsers) -> None:
    from saessak.cli import add_config_options, add_tag_option
    from saessak.distill.config import DistillConfig

    p = subparsers.add_parser(
        "distill", help="distil a teacher (any OpenAI-compatible endpoint) into a graded chat dataset",
        description="Ask a teacher model for reasoning traces on the task suite's train split (kept only when the "
                    "grader marks them correct) and on your own prompts; prompts are PII-masked before they leave "
                    "the machine, replies before they enter RUN/distill/train.jsonl (for `saessak sft --data`).",
    )
    p.add_argument("--run", required=True, help="run folder: the dataset goes to RUN/distill/")
    p.add_argument("--teacher-url", required=True, metavar="URL",
                   help="the teacher's OpenAI-compatible API base, e.g. http://localhost:8000/v1")
    p.add_argument("--teacher-model", required=True, metavar="NAME", help="the model name the teacher serves")
    p.add_argument("--api-key-env", metavar="VAR",
                   help="environment variable holding the teacher's API key (sent as a Bearer token; never recorded)")
    p.add_argument("--prompts", metavar="FILE.jsonl",
                   help="your prompts, one {\"prompt\": ...} or {\"messages\": [...]} per line; kept ungraded")
    p.add_argument("--allow-pii", action="store_true",
                   help="send prompts WITHOUT masking their personal data (the dataset is masked all the same)")
    p.add_argument("--teacher-price-per-mtok", metavar="IN,OUT",
                   help="USD per million prompt and completion tokens, for the ledger (default: a [teacher.*] row "
                        "of the price table matching the model name)")
    p.add_argument("--force", action="store_true", help="start over: empty RUN/distill/ first")
    add_config_options(p, DistillConfig)
    add_tag_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from saessak.cli import config_overrides
    from saessak.distill.config import DistillConfig
    from saessak.distill.stage import run_distill

    run_distill(args.run, teacher_url=args.teacher_url, teacher_model=args.teacher_model,
                api_key_env=args.api_key_env, prompts_file=args.prompts, allow_pii=args.allow_pii,
                price_per_mtok=args.teacher_price_per_mtok, force=args.force,
                **config_overrides(args, DistillConfig))
    return 0
