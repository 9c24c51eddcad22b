"""`saessak sft`: supervised fine-tuning of the pretrained model into a chat model (stage.py).

Every setting of the preset's recipe (sft/config.py) can be overridden by name.
"""

from __future__ import annotations


def register(subparsers) -> None:
    from saessak.cli import add_config_options, add_stage_options
    from saessak.data.ingest import add_keep_pii_option
    from saessak.sft.config import SFTConfig
    from saessak.training.parallel import add_parallel_options

    p = subparsers.add_parser(
        "sft", help="supervised fine-tuning: task worked solutions, identity chats, your chat data",
        description="Fine-tune RUN/pretrain/final into RUN/sft/final on chat data (assistant-only loss).",
    )
    add_stage_options(p, "sft", needs="pretrain/ and tokenizer/")
    p.add_argument("--data", help="extra chat data: JSON Lines, one {\"messages\": [...]} per line")
    p.add_argument("--hf-dataset", help="extra Hugging Face chat dataset id (or json:PATH for local files)")
    add_keep_pii_option(p)
    add_parallel_options(p)
    add_config_options(p, SFTConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from saessak.cli import config_overrides
    from saessak.sft.config import SFTConfig
    from saessak.sft.stage import run_sft
    from saessak.training.parallel import parallel_from_args

    run_sft(args.run, preset=args.preset, data_file=args.data, hf_dataset=args.hf_dataset, resume=args.resume,
            force=args.force, keep_pii=args.keep_pii, parallel=parallel_from_args(args),
            **config_overrides(args, SFTConfig))
    return 0
