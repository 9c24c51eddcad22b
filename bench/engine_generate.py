"""Generation engine throughput on an RL-rollout workload, side by side with Hugging Face
transformers `generate` (batched, left-padded, num_return_sequences=G) on the same weights.

Workload: P prompts x G completions (RL's num_generations), N new tokens, temperature 1.0, at the
cpu-tiny model shape with random weights. Reports generated tokens/s.

    .venv/bin/python bench/engine_generate.py            # 16 prompts x 8, 96 tokens
    .venv/bin/python bench/engine_generate.py --quick    # 4 prompts x 8, 32 tokens
    .venv/bin/python bench/engine_generate.py --smoke    # 2 prompts x 2, 4 tokens: the code paths, in seconds (tests)

The last stdout line is one JSON object with the key figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)


def cpu_tiny_model():
    from saessak.model import Llama, model_config

    model = Llama(model_config("cpu-tiny", 4096))
    model.init_weights(0)
    return model.eval()


def toy_tokenizer():
    from saessak.tokenizer import train_tokenizer

    text = ["사과 3개와 배 2개를 샀습니다. 모두 몇 개입니까? 정답: 5개", "내일은 화요일입니다. 오늘은 무슨 요일?"] * 50
    return train_tokenizer(text, 400)


def prompts_for(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[1] + [rng.randrange(8, vocab) for _ in range(rng.randrange(24, 64))] for _ in range(n)]


def bench_ours(model, tok, prompts, G, new_tokens, dtype) -> dict:
    from saessak.model.engine import Engine, SamplingParams

    engine = Engine(model, tok, max_batch_size=len(prompts) * G, dtype=dtype)
    batch = [p for p in prompts for _ in range(G)]
    engine.generate(batch[:G], SamplingParams(max_tokens=4))  # warm-up
    t0 = time.perf_counter()
    outs = engine.generate(batch, SamplingParams(max_tokens=new_tokens, temperature=1.0, seed=None, logprobs=True))
    wall = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for c in outs)
    return {"tokens": tokens, "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 1)}


def bench_hf(model, prompts, G, new_tokens) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
        rope_theta=c.rope_theta, rms_norm_eps=c.rms_norm_eps, tie_word_embeddings=c.tie_word_embeddings,
        head_dim=c.head_dim)).eval()
    hf.load_state_dict(model.state_dict(), strict=False)
    T = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), T, dtype=torch.long)
    mask = torch.zeros(len(prompts), T, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding, as decoder-only batched generation needs
        ids[i, T - len(p):] = torch.tensor(p)
        mask[i, T - len(p):] = 1
    kw = dict(attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=G,
              pad_token_id=3, eos_token_id=None)
    with torch.no_grad():
        hf.generate(ids[:1], max_new_tokens=4, **{**kw, "attention_mask": mask[:1]})  # warm-up
        t0 = time.perf_counter()
        out = hf.generate(ids, max_new_tokens=new_tokens, **kw)
        wall = time.perf_counter() - t0
    tokens = (out.shape[1] - T) * out.shape[0]
    return {"tokens": tokens, "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 1)}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="2 prompts x 2, 4 tokens: every path in seconds (tests)")
    ap.add_argument("--prompts", type=int, default=None)
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_record_args(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.G = 2
    P = args.prompts or (2 if args.smoke else 4 if args.quick else 16)
    N = args.new_tokens or (4 if args.smoke else 32 if args.quick else 96)
    model, tok = cpu_tiny_model(), toy_tokenizer()
    prompts = prompts_for(P, tok.vocab_size)
    torch.manual_seed(0)
    results = {
        "ours_fp32": bench_ours(model, tok, prompts, args.G, N, None),
        "ours_bf16": bench_ours(model, tok, prompts, args.G, N, torch.bfloat16),
        "hf_generate_fp32": bench_hf(model, prompts, args.G, N),
    }
    for name, r in results.items():
        print(f"{name:>18}: {r['tok_s']:>9.1f} tok/s  ({r['tokens']} tokens in {r['wall_s']:.2f} s)")
    emit("engine_generate", {"bench": "engine_generate", "quick": args.quick, "smoke": args.smoke, "prompts": P, "G": args.G,
                             "new_tokens": N, "threads": torch.get_num_threads(), **results,
                             "speedup_vs_hf": round(results["ours_fp32"]["tok_s"] / results["hf_generate_fp32"]["tok_s"], 2)},
         args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    names = {"ours_fp32": "saessak engine, fp32", "ours_bf16": "saessak engine, bf16 weights copy",
             "hf_generate_fp32": "transformers `generate`, fp32, batched"}
    base = r["hf_generate_fp32"]["tok_s"]
    rows = [[label, f"{r[k]['tokens']:,}", f"{r[k]['wall_s']:.2f}", f"{r[k]['tok_s']:,.1f}", f"{r[k]['tok_s'] / base:.2f}x"]
            for k, label in names.items()]
    return "\n".join([f"{r['prompts']} prompts x G={r['G']}, {r['new_tokens']} new tokens, {r['threads']} torch thread(s)"
                      + (" (--quick)" if r.get("quick") else "") + ".", "",
                      md_table(["", "tokens", "wall s", "tokens/s", "vs transformers"], rows), "",
                      f"saessak's engine: **{r['speedup_vs_hf']:.2f}x** transformers `generate` (fp32 against fp32)."])


if __name__ == "__main__":
    main()
