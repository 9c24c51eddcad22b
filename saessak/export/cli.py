"""`saessak export hf|gguf`: a run's model as a Hugging Face folder or a GGUF file (docs/EXPORT.md)."""

from __future__ import annotations

def register(subparsers) -> None:
    from saessak.runfolder import LEGACY_NAMES, MODEL_STAGES

    stages = [*reversed(MODEL_STAGES), *LEGACY_NAMES]
    p = subparsers.add_parser("export", help="export a run's model: Hugging Face folder or GGUF file",
                              description=__doc__)
    sub = p.add_subparsers(dest="export_format", metavar="FORMAT")

    hf = sub.add_parser("hf", help="Hugging Face folder (LlamaForCausalLM or DeepseekV3ForCausalLM, tokenizer, "
                                      "chat template, model card)")
    hf.add_argument("--run", required=True, help="run folder")
    hf.add_argument("--stage", choices=stages, default=None,
                    help="model stage (default: the latest finished; base: the old name of pretrain)")
    hf.add_argument("--out", required=True, help="output folder (replaced atomically if it holds an earlier export)")
    hf.add_argument("--prices", default=None, help="price table for the model card's cost section")
    hf.add_argument("--force", action="store_true", help="accepted for the speedrun; the export is always rewritten")
    hf.add_argument("--adapter-only", action="store_true",
                    help="write the LoRA adapter alone (adapter_config.json + adapter_model.safetensors) instead "
                         "of the merged model; the stage must have been trained with --lora-r")
    hf.set_defaults(func=run_hf)

    gg = sub.add_parser("gguf", help="GGUF file for llama.cpp / Ollama (llama architecture; deepseek2 for a "
                                        "DeepSeek model)")
    gg.add_argument("--run", required=True, help="run folder")
    gg.add_argument("--stage", choices=stages, default=None,
                    help="model stage (default: the latest finished; base: the old name of pretrain)")
    gg.add_argument("--out", required=True, help="output .gguf file (written atomically)")
    gg.add_argument("--outtype", choices=["f32", "f16"], default="f32",
                    help="weight type of the matrices (norms stay f32); default f32")
    gg.add_argument("--force", action="store_true", help="accepted for the speedrun; the export is always rewritten")
    gg.set_defaults(func=run_gguf)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_hf(args) -> int:
    from saessak.export.hf import export_hf

    out = export_hf(args.run, args.out, stage=args.stage, prices=args.prices, adapter_only=args.adapter_only)
    print(f"export hf: {out}")
    return 0


def run_gguf(args) -> int:
    from saessak.export.gguf_export import export_gguf

    out = export_gguf(args.run, args.out, stage=args.stage, outtype=args.outtype)
    print(f"export gguf: {out}")
    return 0
