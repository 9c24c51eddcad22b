"""MLA's compressed KV cache in the generation engine: cache bytes per token of saessak's DeepSeek
(latent + rope key) against a grouped-query Llama and a multi-head Llama of the same hidden size and
head count, and decode speed at about 1k tokens of context, DeepSeek and the GQA Llama side by side.

Shapes: cpu-tiny's (hidden 256, 4 heads of 64, 4 layers; its Llama has 2 KV heads), every model with
max_position_embeddings 2048; the DeepSeek config is `deepseek_config_for_shape` at that shape
(kv_lora_rank 48, qk_rope_head_dim 16: a quarter of the GQA Llama's 256 numbers) unless
--kv-lora-rank / --rope-dim say otherwise, and beside it the same model with a wider latent
(--wide, default 128 + 32: the shape rule before 2026-12-05; `saessak pretrain --deepseek
kv_lora_rank=128,qk_rope_head_dim=32,qk_nope_head_dim=32` trains it). Bytes are read from the
tensors the engine actually allocated, not from a formula. Decode: B prompts of about P tokens, N
new tokens each, greedy, no end token; the prefill step is timed apart, tokens/s counts the decode
steps only. Random weights.

    .venv/bin/python bench/kv_latent.py           # batch 8, ~1000-token prompts, 64 new tokens
    .venv/bin/python bench/kv_latent.py --smoke   # batch 2, ~24-token prompts, 4 new tokens: the code paths, in seconds (tests)

The last stdout line is one JSON object with the key figures. Target: the latent cache's bytes per
token at most 1/4 of the GQA Llama's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)

MAX_POS = 2048
TARGET_RATIO = 0.25  # latent bytes per token / GQA bytes per token


def models(kv_lora_rank: int | None, rope_dim: int | None, wide: tuple[int, int]):
    from saessak.model import Llama, model_config
    from saessak.model.deepseek import DeepSeek, deepseek_config_for_shape

    c = dataclasses.replace(model_config("cpu-tiny"), max_position_embeddings=MAX_POS)

    def deepseek(rank: int | None, rope: int | None):
        overrides = {k: v for k, v in (("kv_lora_rank", rank), ("qk_rope_head_dim", rope)) if v is not None}
        if rope is not None:  # the query-key width stays a head's
            overrides["qk_nope_head_dim"] = max(1, c.head_dim - rope)
        return deepseek_config_for_shape(c.hidden_size, c.num_hidden_layers, c.vocab_size, MAX_POS, c.head_dim,
                                         tie_word_embeddings=c.tie_word_embeddings, **overrides)

    out = {}
    for name, cfg, cls in (("deepseek_mla", deepseek(kv_lora_rank, rope_dim), DeepSeek),
                           ("deepseek_mla_wide", deepseek(*wide), DeepSeek), ("llama_gqa", c, Llama),
                           ("llama_mha", dataclasses.replace(c, num_key_value_heads=c.num_attention_heads), Llama)):
        m = cls(cfg)
        m.init_weights(0)
        out[name] = m.eval()
    return out


def shape_of(model) -> dict:
    c = model.config
    d = {"layers": c.num_hidden_layers, "hidden": c.hidden_size, "heads": c.num_attention_heads,
         "params": sum(p.numel() for p in model.parameters())}
    if hasattr(c, "kv_lora_rank"):
        d.update(kv_lora_rank=c.kv_lora_rank, qk_rope_head_dim=c.qk_rope_head_dim,
                 active_params=c.num_active_parameters())
    else:
        d.update(kv_heads=c.num_key_value_heads, head_dim=c.head_dim)
    return d


def cache_bytes(engine, layers: int) -> dict:
    """From the tensors the engine allocated: bytes per token, all layers and per layer."""
    caches = engine.cache_tensors()
    per_token = engine.kv_cache_bytes_per_token()
    return {"bytes_per_token": per_token, "bytes_per_token_per_layer": per_token // layers,
            "tensors": {k: list(t.shape) for k, t in caches.items()}, "dtype": str(next(iter(caches.values())).dtype)}


def prompts_for(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[1] + [rng.randrange(8, vocab) for _ in range(length - rng.randrange(0, max(1, length // 25)) - 1)]
            for _ in range(n)]


def bench_decode(model, tok, prompts, new_tokens, dtype) -> tuple[dict, object]:
    from saessak.model.engine import Engine, SamplingParams

    engine = Engine(model, tok, max_batch_size=len(prompts), dtype=dtype)
    engine.generate(prompts[:1], SamplingParams(max_tokens=2, temperature=0))  # warm-up
    sp = SamplingParams(max_tokens=new_tokens, temperature=0)
    for p in prompts:
        engine.add_request(p, sp, stream=False)
    t0 = time.perf_counter()
    engine.step()  # admits every prompt: the prefill (and each row's first token)
    t1 = time.perf_counter()
    tokens = 0
    while engine.has_unfinished():
        tokens += sum(len(o.new_token_ids) for o in engine.step())
    wall = time.perf_counter() - t1
    return {"prefill_s": round(t1 - t0, 3), "decode_tokens": tokens, "decode_wall_s": round(wall, 3),
            "decode_tok_s": round(tokens / wall, 1)}, engine


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="batch 2, ~24-token prompts, 4 new tokens: every path in seconds (tests)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--prompt-tokens", type=int, default=None)
    ap.add_argument("--new-tokens", type=int, default=None)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="the engine's weights and cache")
    ap.add_argument("--kv-lora-rank", type=int, default=None, help="DeepSeek's latent width (default: the shape rule's)")
    ap.add_argument("--rope-dim", type=int, default=None, help="DeepSeek's qk_rope_head_dim (default: the shape rule's)")
    ap.add_argument("--wide", default="128,32", metavar="RANK,ROPE",
                    help="the second DeepSeek model's kv_lora_rank and qk_rope_head_dim (default 128,32: the shape "
                         "rule before 2026-12-05, 0.625x the GQA Llama's cache at this shape)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_record_args(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    B = args.batch or (2 if args.smoke else 8)
    P = args.prompt_tokens or (24 if args.smoke else 1000)
    N = args.new_tokens or (4 if args.smoke else 64)
    if P + N > MAX_POS:
        from saessak.errors import UserError

        raise UserError(f"--prompt-tokens {P} + --new-tokens {N} exceed the models' {MAX_POS} positions")
    dtype = torch.bfloat16 if args.dtype == "bf16" else None

    from bench.engine_generate import toy_tokenizer
    from saessak.model.sampler import NoStop  # no end tokens: every row decodes its full N tokens

    tok = NoStop(toy_tokenizer())
    try:
        wide = tuple(int(x) for x in args.wide.split(","))
        if len(wide) != 2 or min(wide) < 1 or wide[1] % 2:
            raise ValueError
    except ValueError:
        ap.error(f"--wide {args.wide!r}: expected RANK,ROPE, two positive integers (ROPE even), e.g. 128,32")
    ms = models(args.kv_lora_rank, args.rope_dim, wide)
    prompts = prompts_for(B, P, tok.vocab_size)
    torch.manual_seed(0)
    decode, kv = {}, {}
    for name in ("deepseek_mla", "deepseek_mla_wide", "llama_gqa"):
        decode[name], engine = bench_decode(ms[name], tok, prompts, N, dtype)
        kv[name] = cache_bytes(engine, ms[name].config.num_hidden_layers)
        del engine
    from saessak.model.engine import Engine, SamplingParams

    mha = Engine(ms["llama_mha"], tok, max_batch_size=B, dtype=dtype)  # bytes only: allocate and read back
    mha.generate(prompts[:1], SamplingParams(max_tokens=1, temperature=0))
    kv["llama_mha"] = cache_bytes(mha, ms["llama_mha"].config.num_hidden_layers)
    ratio_gqa = kv["deepseek_mla"]["bytes_per_token"] / kv["llama_gqa"]["bytes_per_token"]
    ratio_mha = kv["deepseek_mla"]["bytes_per_token"] / kv["llama_mha"]["bytes_per_token"]
    ratio_wide = kv["deepseek_mla_wide"]["bytes_per_token"] / kv["llama_gqa"]["bytes_per_token"]
    for name, r in kv.items():
        print(f"{name:>20}: {r['bytes_per_token']:>6,} B/token ({r['bytes_per_token_per_layer']:,} per layer, {r['dtype']})")
    for name, r in decode.items():
        print(f"{name:>20}: decode {r['decode_tok_s']:>8.1f} tok/s ({r['decode_tokens']} tokens in "
              f"{r['decode_wall_s']:.2f} s; prefill {r['prefill_s']:.2f} s)")
    print(f"latent / GQA = {ratio_gqa:.3f} (target <= {TARGET_RATIO}); latent / MHA = {ratio_mha:.3f}; "
          f"wide latent / GQA = {ratio_wide:.3f}")
    emit("kv_latent", {
        "bench": "kv_latent", "smoke": args.smoke, "batch": B, "prompt_tokens": P, "new_tokens": N,
        "dtype": args.dtype, "threads": torch.get_num_threads(), "max_position_embeddings": MAX_POS,
        "shapes": {k: shape_of(m) for k, m in ms.items()},
        "kv_bytes_per_token": kv, "ratio_vs_gqa": round(ratio_gqa, 4), "ratio_vs_mha": round(ratio_mha, 4),
        "target_ratio_vs_gqa": TARGET_RATIO, "target_met": ratio_gqa <= TARGET_RATIO,
        "wide_ratio_vs_gqa": round(ratio_wide, 4),
        "decode": decode,
        "decode_speed_mla_vs_gqa": round(decode["deepseek_mla"]["decode_tok_s"] / decode["llama_gqa"]["decode_tok_s"], 3),
        "decode_speed_wide_vs_gqa": round(decode["deepseek_mla_wide"]["decode_tok_s"]
                                             / decode["llama_gqa"]["decode_tok_s"], 3),
    }, args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    s = r["shapes"]
    labels = {
        "deepseek_mla": f"DeepSeek MLA cache (latent {s['deepseek_mla']['kv_lora_rank']} + rope key "
                        f"{s['deepseek_mla']['qk_rope_head_dim']})",
        "deepseek_mla_wide": f"DeepSeek MLA cache, the earlier rule's wider latent ({s['deepseek_mla_wide']['kv_lora_rank']}"
                             f" + rope key {s['deepseek_mla_wide']['qk_rope_head_dim']})",
        "llama_gqa": f"Llama GQA ({s['llama_gqa']['kv_heads']} KV heads x {s['llama_gqa']['head_dim']}, K and V)",
        "llama_mha": f"Llama MHA ({s['llama_mha']['kv_heads']} KV heads x {s['llama_mha']['head_dim']}, K and V)",
    }
    kv = r["kv_bytes_per_token"]
    base = kv["llama_gqa"]["bytes_per_token"]
    rows = [[label, f"{kv[k]['bytes_per_token_per_layer']:,}", f"{kv[k]['bytes_per_token']:,}",
             f"{kv[k]['bytes_per_token'] / base:.3f}"] for k, label in labels.items()]
    dec = r["decode"]
    models = {"deepseek_mla": "DeepSeek (MLA latent cache, MoE)",
              "deepseek_mla_wide": "DeepSeek, wider latent",
              "llama_gqa": "Llama (GQA cache)"}
    drows = [[models[k], f"{s[k]['params']:,}", f"{dec[k]['prefill_s']:.2f}", f"{dec[k]['decode_tokens']:,}",
              f"{dec[k]['decode_wall_s']:.2f}", f"{dec[k]['decode_tok_s']:,.1f}"] for k in models]
    verdict = "**met**" if r["target_met"] else "**missed**"
    return "\n".join([
        f"cpu-tiny shape (hidden {s['llama_gqa']['hidden']}, {s['llama_gqa']['heads']} heads, {s['llama_gqa']['layers']} "
        f"layers), max_position_embeddings {r['max_position_embeddings']}, {r['dtype']} cache, bytes read from the "
        "engine's allocated cache tensors.", "",
        md_table(["KV cache", "bytes/token/layer", "bytes/token", "vs GQA"], rows), "",
        f"Target latent <= {r['target_ratio_vs_gqa']:g} x GQA: {verdict} ({r['ratio_vs_gqa']:.3f} x GQA, "
        f"{r['ratio_vs_mha']:.3f} x MHA); the wider latent: {r['wide_ratio_vs_gqa']:.3f} x GQA.", "",
        f"Decode at ~{r['prompt_tokens']}-token prompts, batch {r['batch']}, {r['new_tokens']} new tokens, greedy, "
        f"{r['threads']} torch thread(s):", "",
        md_table(["model", "params", "prefill s", "decode tokens", "decode s", "decode tokens/s"], drows), "",
        f"DeepSeek (MoE, {s['deepseek_mla']['active_params']:,} active parameters) decodes at "
        f"**{r['decode_speed_mla_vs_gqa']:.2f}x** the GQA Llama's tokens/s, with the wider latent at "
        f"{r['decode_speed_wide_vs_gqa']:.2f}x.",
    ])


if __name__ == "__main__":
    main()
