"""An imported Qwen3-shaped model, saessak against Hugging Face TRL on the same folder: one GRPO
step (full fine-tune and LoRA) and SFT tokens/s, with each side's peak RSS.

The model is a random Qwen3ForCausalLM saved with transformers' `save_pretrained` (about 30 M
parameters at full size; speed does not depend on what the weights know), with a byte-level BPE
tokenizer trained on the task text and a ChatML template. Each side runs in its own process, so
its peak resident memory (ru_maxrss) is its own:
  - saessak GRPO: the model loaded from the folder as `saessak import hf` + `saessak rl` load it,
    one step as the RL stage runs it (rollout through the engine, grading, advantages, update);
    LoRA through peft (`--lora-r`), the base frozen;
  - TRL GRPO: `GRPOTrainer` on the same folder, same prompts, G, completion limit, reward (the
    task suite's graders), loss dapo, beta 0, fp32, same threads; LoRA through the same peft config;
  - SFT: saessak's SFT loop (packed rows, assistant-only loss) against TRL's `SFTTrainer` (packed
    rows of the same length and batch) on the same task conversations; tokens/s = tokens in the
    packed rows per second of optimizer step.
Each side runs six steps (two with --quick) and its best step after the first is kept. `--smoke` runs all six in one process (seconds;
its figures, memory included, mean nothing).

Usage: python bench/import_vs_trl.py [--quick | --smoke] [--no-trl]   (last stdout line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)
from bench._lib.step_timer import step_timer  # noqa: E402

SIDES = ("saessak_grpo_full", "saessak_grpo_lora", "trl_grpo_full", "trl_grpo_lora", "saessak_sft", "trl_sft")
LORA = dict(r=8, alpha=16.0, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


def sizes(smoke: bool, quick: bool) -> dict:
    if smoke:
        return dict(hidden=64, inter=128, layers=2, heads=4, kv=2, head_dim=32, vocab=512, G=2, L=8, prompts=1,
                    steps=2, sft_batch=2, sft_len=64)
    return dict(hidden=512, inter=1536, layers=8, heads=8, kv=4, head_dim=64, vocab=4096, G=8, L=64,
                prompts=2 if quick else 4, steps=2 if quick else 6, sft_batch=8, sft_len=256)


def make_model(folder: Path, s: dict) -> None:
    """The random Qwen3 folder both sides read (tokenizer trained on the task text, ChatML template)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    import saessak.tasks as tasks

    texts = [t for f in tasks.FAMILIES for ex in tasks.sample(f, "train", 100, seed=0)
             for t in (ex["prompt"], tasks.solution(ex))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=s["vocab"], special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    cfg = transformers.Qwen3Config(vocab_size=tok.get_vocab_size(), hidden_size=s["hidden"],
                                   intermediate_size=s["inter"], num_hidden_layers=s["layers"],
                                   num_attention_heads=s["heads"], num_key_value_heads=s["kv"], head_dim=s["head_dim"],
                                   max_position_embeddings=1024, tie_word_embeddings=True,
                                   eos_token_id=tok.token_to_id("<|im_end|>"))
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(cfg).save_pretrained(folder)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    fast.save_pretrained(folder)


def examples(n: int) -> list[dict]:
    import saessak.tasks as tasks

    return [tasks.sample(f, "train", 1, seed=i)[0] for i, f in zip(range(n), tasks.FAMILIES * 4)]


def conversations(n: int) -> list[list[dict]]:
    import saessak.tasks as tasks
    from saessak.sft import data as sft_data

    return sft_data.task_conversations(tasks.FAMILIES, n, 0, {1: 1.0, 2: 1.0}, tasks_api=tasks)


# ---------------------------------------------------------------------------------------------- saessak


def saessak_grpo(folder: Path, s: dict, lora: bool) -> dict:
    import torch

    import saessak.tasks as tasks
    from saessak.model.checkpoint import load_model
    from saessak.model.kernels import choose_linear_kernel, linear_kernel, linear_layers
    from saessak.model.lora import LoraSettings, attach
    from saessak.model.sampler import Sampler
    from saessak.rl.config import GRPOConfig
    from saessak.rl.curriculum import Curriculum
    from saessak.rl.grpo import assign_advantages, local_counts, normaliser, sequences, update
    from saessak.rl.rollouts import collect
    from saessak.tokenizer.imported import ImportedTokenizer
    from saessak.training.optim import build_optimizer

    model = load_model(folder, dtype=torch.float32)
    tok = ImportedTokenizer.from_folder(folder)
    if lora:
        attach(model, LoraSettings(lora_r=LORA["r"], lora_alpha=LORA["alpha"], lora_targets=",".join(LORA["targets"])))
    cfg = GRPOConfig(max_steps=1, prompts_per_step=s["prompts"], num_generations=s["G"], max_completion_length=s["L"],
                     dynamic_sampling=False, mask_truncated_completions=False, micro_batch_size=32, beta=0.0)
    sampler = Sampler(model, tok, max_batch_size=64)
    # the policy update's linear kernel as `saessak rl` picks it (the engine picks its own)
    kernel = choose_linear_kernel(model, "cpu", 32 * (s["L"] + 64), mode="train")
    layers = linear_layers(model)
    cur = Curriculum(tasks.FAMILIES, 1, 5, 0.8, 0.05, 32)
    opt = build_optimizer(model, 1e-4, 0.0)
    times = []
    for step in range(s["steps"]):
        t0 = time.perf_counter()
        model.eval()
        batch = collect(sampler, tok, tasks, cfg, cur, s["prompts"], step, 0, 0)
        model.train()
        assign_advantages(batch.kept, cfg)
        seqs = sequences(batch.kept, False)
        with linear_kernel(model, kernel.kernel, layers):
            update(model, None, opt, seqs, cfg, tok.pad_id, "cpu", normaliser(local_counts(seqs), cfg.loss_type, s["L"]))
        times.append((time.perf_counter() - t0, batch.completion_tokens))
    step_s, toks = min(times[1:] or times)
    return {"step_s": round(step_s, 3), "completion_tokens": toks, "tok_per_s": round(toks / step_s, 1),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "linear_kernel": {"rollouts": sampler.engine.kernel.kernel, "update": kernel.kernel}}


def saessak_sft(folder: Path, s: dict) -> dict:
    import torch

    from saessak.model.checkpoint import load_model
    from saessak.model.kernels import choose_linear_kernel, linear_kernel, linear_layers
    from saessak.sft.pack import block_causal_mask, pack
    from saessak.tokenizer.chat_format import render
    from saessak.tokenizer.imported import ImportedTokenizer
    from saessak.training.optim import build_optimizer

    model = load_model(folder, dtype=torch.float32).train()
    tok = ImportedTokenizer.from_folder(folder)
    # the linear kernel `saessak sft` picks for this model and micro-batch (saessak/model/kernels.py)
    kernel = choose_linear_kernel(model, "cpu", s["sft_batch"] * s["sft_len"], mode="train")
    layers = linear_layers(model)
    convs = conversations(s["sft_batch"] * (s["steps"] + 1))
    rows = pack([(r.ids, r.loss_mask) for r in (render(tok, c) for c in convs)], s["sft_len"], tok.pad_id)
    opt = build_optimizer(model, 1e-4, 0.0)
    times = []
    for step in range(s["steps"]):
        idx = torch.arange(step * s["sft_batch"], (step + 1) * s["sft_batch"]) % len(rows)
        b = rows.batch(idx)
        t0 = time.perf_counter()
        with linear_kernel(model, kernel.kernel, layers):
            loss = model(b.input_ids, position_ids=b.position_ids, attn_mask=block_causal_mask(b.segment_ids),
                         targets=b.targets, loss_reduction="none").sum() / max(1, b.trained_tokens())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    best = min(times[1:] or times)
    return {"step_s": round(best, 3), "tok_per_s": round(s["sft_batch"] * s["sft_len"] / best, 1),
            "linear_kernel": kernel.kernel}


# ---------------------------------------------------------------------------------------------- TRL


def _common(out: Path, steps: int) -> dict:
    return dict(output_dir=str(out), max_steps=steps, learning_rate=1e-4, use_cpu=True, bf16=False, fp16=False,
                report_to="none", save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0,
                disable_tqdm=True, gradient_accumulation_steps=1)


def _peft():
    from peft import LoraConfig

    return LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=list(LORA["targets"]), bias="none")


def trl_grpo(folder: Path, s: dict, lora: bool, out: Path) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import saessak.tasks as tasks
    from saessak.rl.config import GRPOConfig as SaessakGRPO
    from saessak.tasks.registry import prompt_messages

    weights = SaessakGRPO(max_steps=1, prompts_per_step=1).reward_weights

    def reward(completions, example, **_):
        return [tasks.combine_rewards(tasks.grade(json.loads(ex), c[-1]["content"]), weights)
                for c, ex in zip(completions, example)]

    exs = examples(s["prompts"])
    rows = [{"prompt": prompt_messages(ex), "example": json.dumps(ex, ensure_ascii=False)} for ex in exs]
    hf_tok = AutoTokenizer.from_pretrained(folder)
    hf_tok.padding_side = "left"
    args = trl.GRPOConfig(num_generations=s["G"], max_completion_length=s["L"],
                          per_device_train_batch_size=s["prompts"] * s["G"], beta=0.0, loss_type="dapo",
                          scale_rewards="group", epsilon_high=0.28, temperature=1.0, shuffle_dataset=False,
                          **_common(out, s["steps"]))
    timer = step_timer()
    trainer = trl.GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
                              reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows * s["steps"]),
                              processing_class=hf_tok, callbacks=[timer], peft_config=_peft() if lora else None)
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    i = min(range(1, len(timer.times)) or [0], key=lambda j: timer.times[j])
    toks = s["prompts"] * s["G"] * lengths[i]
    return {"trl": trl.__version__, "step_s": round(timer.times[i], 3), "completion_tokens": round(toks, 1),
            "tok_per_s": round(toks / timer.times[i], 1),
            "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}


def trl_sft(folder: Path, s: dict, out: Path) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    convs = conversations(s["sft_batch"] * (s["steps"] + 1))
    args = trl.SFTConfig(max_length=s["sft_len"], packing=True, packing_strategy="wrapped",
                         per_device_train_batch_size=s["sft_batch"], **_common(out, s["steps"]))
    timer = step_timer()
    trainer = trl.SFTTrainer(model=AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), args=args,
                             train_dataset=Dataset.from_list([{"messages": c} for c in convs] * 4),
                             processing_class=AutoTokenizer.from_pretrained(folder), callbacks=[timer])
    trainer.train()
    best = min(timer.times[1:] or timer.times)
    return {"trl": trl.__version__, "step_s": round(best, 3), "tok_per_s": round(s["sft_batch"] * s["sft_len"] / best, 1)}


def run_side(side: str, folder: Path, s: dict) -> dict:
    out = Path(tempfile.mkdtemp())
    fn = {"saessak_grpo_full": lambda: saessak_grpo(folder, s, False),
          "saessak_grpo_lora": lambda: saessak_grpo(folder, s, True),
          "trl_grpo_full": lambda: trl_grpo(folder, s, False, out),
          "trl_grpo_lora": lambda: trl_grpo(folder, s, True, out),
          "saessak_sft": lambda: saessak_sft(folder, s),
          "trl_sft": lambda: trl_sft(folder, s, out)}[side]
    result = fn()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer prompts and steps")
    ap.add_argument("--smoke", action="store_true", help="a tiny model, G=2, 8 tokens, in seconds (tests)")
    ap.add_argument("--no-trl", action="store_true", help="skip TRL's side")
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in a child process
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    add_record_args(ap)
    args = ap.parse_args()
    s = sizes(args.smoke, args.quick)
    if args.side:
        print(json.dumps(run_side(args.side, Path(args.folder), s)))
        return
    import torch

    result = {"smoke": args.smoke, "quick": args.quick, "threads": torch.get_num_threads(),
              **{k: s[k] for k in ("G", "L", "prompts", "sft_batch", "sft_len")}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "qwen3"
        make_model(folder, s)
        from saessak.model.checkpoint import load_config

        result["params"] = load_config(folder).num_parameters()
        for side in SIDES:
            if args.no_trl and side.startswith("trl"):
                continue
            if args.smoke:  # every code path in one process, in seconds (its memory figures mean nothing)
                result[side] = run_side(side, folder, s)
                continue
            cmd = [sys.executable, __file__, "--side", side, "--folder", str(folder)] + (["--quick"] if args.quick else [])
            env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"{side} failed:\n{r.stderr[-3000:]}")
            result[side] = json.loads(r.stdout.strip().splitlines()[-1])
    if not args.no_trl:
        for a, b in (("grpo_full", "tok_per_s"), ("grpo_lora", "tok_per_s"), ("sft", "tok_per_s")):
            result[f"speedup_{a}"] = round(result[f"saessak_{a}"][b] / result[f"trl_{a}"][b], 2)
    emit("import_vs_trl", result, args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    rows = []
    for what, key, unit in (("GRPO step, full fine-tune", "grpo_full", "completion tokens/s of step"),
                            ("GRPO step, LoRA r=8", "grpo_lora", "completion tokens/s of step"),
                            ("SFT", "sft", "packed tokens/s")):
        ours, theirs = r[f"saessak_{key}"], r.get(f"trl_{key}")
        rows.append([what, unit, f"{ours['tok_per_s']:,.0f} ({ours['step_s']:.2f} s)",
                     f"{theirs['tok_per_s']:,.0f} ({theirs['step_s']:.2f} s)" if theirs else "skipped",
                     f"**{r[f'speedup_{key}']:.2f}x**" if theirs else "",
                     f"{ours['peak_rss_mb']:,.0f} / " + (f"{theirs['peak_rss_mb']:,.0f}" if theirs else "-")])
    head = (f"Qwen3-shaped random model, {r['params'] / 1e6:.1f} M parameters; GRPO: {r['prompts']} prompts x G={r['G']}, "
            f"up to {r['L']} completion tokens; SFT: {r['sft_batch']} rows x {r['sft_len']} tokens; "
            f"{r['threads']} torch threads" + (" (--quick)" if r.get("quick") else "") + ".")
    kernels = {key: r[f"saessak_{key}"].get("linear_kernel") for key in ("grpo_full", "grpo_lora", "sft")}
    note = ("saessak's linear kernel, chosen by measurement (saessak/model/kernels.py): "
            + "; ".join(f"{key.replace('_', ' ')}: " + (", ".join(f"{a} {b}" for a, b in k.items()) if isinstance(k, dict)
                                                         else k) for key, k in kernels.items() if k)
            + ".") if any(kernels.values()) else ""
    return "\n".join([head, "", md_table(["", "unit", "saessak (step)", "TRL (step)", "saessak / TRL",
                                          "peak RSS MiB saessak / TRL"], rows)] + (["", note] if note else []))


if __name__ == "__main__":
    main()
