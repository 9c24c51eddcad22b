"""`saessak sft`: supervised fine-tuning of the base model into a chat model (see saessak/sft.py)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sft", help="supervised fine-tuning: task worked solutions, identity chats, your chat data",
        description="Fine-tune RUN/base/final into RUN/sft/final on chat data (assistant-only loss).",
    )
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run folder (needs base/ and tokenizer/); --run-dir is the spelling torchrun lets through")
    p.add_argument("--preset", help="hyperparameter preset (default: the one in RUN/base/final/meta.json)")
    p.add_argument("--data", help="extra chat data: JSON Lines, one {\"messages\": [...]} per line")
    p.add_argument("--hf-dataset", help="extra Hugging Face chat dataset id (or json:PATH for local files)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (default: the preset's)")
    p.add_argument("--resume", action="store_true", help="continue from the latest RUN/sft/ckpt/ step")
    p.add_argument("--force", action="store_true", help="redo the stage even if RUN/sft/done.json exists")
    p.set_defaults(func=run)


def run(args) -> int:
    from saessak.sft import run_sft

    run_sft(args.run, preset=args.preset, data_file=args.data, hf_dataset=args.hf_dataset,
            max_steps=args.max_steps, resume=args.resume, force=args.force)
    return 0
