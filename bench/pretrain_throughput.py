"""Pretraining throughput: ours vs a plain Hugging Face LlamaForCausalLM loop, side by side.

Same model shape, batch and token data for every contender (cpu-tiny by default):
- ours:        saessak.model.Llama + saessak.training.optim.train_step, as the speedrun runs it
               (`dtype auto`: bf16 autocast or fp32, whichever the calibration measures faster on
               this machine, saessak/model/precision.py; torch.compile where the preset says;
               fused AdamW)
- hf_fp32:     transformers LlamaForCausalLM, plain loop (loss.backward, AdamW defaults), fp32
- hf_bf16:     the same loop under bf16 autocast
- ours_eager / ours_eager_bf16 (or _fp32) / ours_compiled_fp32 (or _bf16): our variants, so the
               effect of each choice (torch.compile, dtype) is visible
Plus the measured bf16 and fp32 matmul peak of this machine and MFU against the bf16 peak, at the
cpu-tiny shape and at the cpu-small shape (the MFU target's shape).

Contenders are timed round-robin, one step each per round, and the median step is reported, so
load from other processes on a shared machine hits them alike. The last stdout line is one JSON
object: ours, baseline, ratio, unit, plus the rest.

    .venv/bin/python bench/pretrain_throughput.py [--quick] [--preset cpu-tiny] [--compile]
    .venv/bin/python bench/pretrain_throughput.py --smoke   # micro shape, one step each: the code paths, in seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)

import torch  # noqa: E402

from saessak import training  # noqa: E402
from saessak.model import Llama  # noqa: E402
from saessak import recipes  # noqa: E402
from saessak.model import model_config  # noqa: E402
from saessak.pretrain.config import PretrainConfig  # noqa: E402


def ours_step(cfg, dtype: str, compile_model: bool):
    model = Llama(cfg)
    model.init_weights(0)
    model.train()
    opt = training.build_optimizer(model, 1e-3)
    run_model = torch.compile(model) if compile_model else model

    def loss_fn(m, b):
        return m(b[0], targets=b[1])

    def step(x, y):
        training.train_step(run_model, opt, [(x, y)], loss_fn, device="cpu", dtype=dtype, grad_clip=1.0)

    return step


def hf_step(cfg, bf16: bool):
    import transformers

    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings)
    model = transformers.LlamaForCausalLM(hf_cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)  # what a user writes

    def step(x, y):
        # HF shifts labels itself, so it gets the full window; the same tokens as ours see.
        ids = torch.cat([x, y[:, -1:]], dim=1)
        opt.zero_grad(set_to_none=True)
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
        else:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def time_round_robin(contenders: dict, x, y, warmup: int, steps: int) -> dict[str, float]:
    for fn in contenders.values():
        for _ in range(warmup):
            fn(x, y)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(steps):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn(x, y)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and a smaller cpu-small batch (< 1 min)")
    ap.add_argument("--preset", default="cpu-tiny", help="shape of the side-by-side comparison")
    ap.add_argument("--mfu-preset", default="cpu-small", help="shape of the MFU measurement")
    ap.add_argument("--compile", action="store_true", help="also time ours under torch.compile (slow warm-up)")
    ap.add_argument("--smoke", action="store_true", help="micro shape, one step each: every path in seconds (tests)")
    add_record_args(ap)
    args = ap.parse_args()
    if args.smoke:
        args.quick, args.preset, args.mfu_preset = True, "micro", "micro"
    torch.manual_seed(0)
    warmup, steps = (1, 1) if args.smoke else (1, 3) if args.quick else (2, 8)

    peak_s = 0.05 if args.smoke else 0.3 if args.quick else 1.0
    peak = {d: training.peak_flops("cpu", d, seconds=peak_s) for d in ("bf16", "fp32")}
    p = recipes.stage_config(PretrainConfig, args.preset, "pretrain")
    cfg = model_config(args.preset)
    T = cfg.max_position_embeddings
    # The speedrun's own choice: `dtype auto` measures bf16 against fp32 on this model's matmuls.
    choice = training.choose_dtype("cpu", p.dtype, cfg, rows=p.batch_size * T)
    speedrun_dtype = choice.dtype
    x = torch.randint(0, cfg.vocab_size, (p.batch_size, T))
    y = torch.randint(0, cfg.vocab_size, (p.batch_size, T))
    # A machine whose bf16 matmuls are far slower than fp32 (an AVX2-only EPYC: 0.03x) would spend
    # most of the bench on bf16 steps of about 20 s each; they are left out there and the record says so.
    bf16_speed = choice.facts().get("speedup")
    skip_bf16 = bf16_speed is not None and bf16_speed < 0.1 and speedrun_dtype == "fp32"
    contenders = {
        "ours": ours_step(cfg, speedrun_dtype, p.compile),
        "hf_fp32": hf_step(cfg, bf16=False),
    }
    # Our variants the preset did not choose, so the effect of each choice is visible.
    if p.compile:
        contenders["ours_eager"] = ours_step(cfg, speedrun_dtype, False)
    other_dtype = "bf16" if speedrun_dtype == "fp32" else "fp32"
    if not skip_bf16:  # skipped only where the speedrun chose fp32, so the other dtype is bf16
        contenders["hf_bf16"] = hf_step(cfg, bf16=True)
        contenders[f"ours_eager_{other_dtype}"] = ours_step(cfg, other_dtype, False)
        if p.compile and not args.smoke:
            contenders[f"ours_compiled_{other_dtype}"] = ours_step(cfg, other_dtype, True)
    if args.compile and not p.compile:
        contenders["ours_compiled"] = ours_step(cfg, speedrun_dtype, True)
    # The first call compiles (when the preset compiles): time it apart, it is a one-off cost.
    compile_name = "ours" if p.compile else ("ours_compiled" if "ours_compiled" in contenders else None)
    compile_warmup_s = None
    if compile_name:
        t0 = time.perf_counter()
        contenders[compile_name](x, y)
        compile_warmup_s = time.perf_counter() - t0
        if f"ours_compiled_{other_dtype}" in contenders:
            contenders[f"ours_compiled_{other_dtype}"](x, y)
    tokens = p.batch_size * T
    med = time_round_robin(contenders, x, y, warmup, steps)
    tok_s = {k: tokens / v for k, v in med.items()}
    fpt = cfg.flops_per_token(T)

    # MFU at the bigger shape: ours only.
    ps = recipes.stage_config(PretrainConfig, args.mfu_preset, "pretrain")
    cfg_s = model_config(args.mfu_preset)
    Ts = cfg_s.max_position_embeddings
    bs = 2 if args.quick else ps.batch_size
    xs = torch.randint(0, cfg_s.vocab_size, (bs, Ts))
    ys = torch.randint(0, cfg_s.vocab_size, (bs, Ts))
    small_dtype = training.choose_dtype("cpu", ps.dtype, cfg_s, rows=bs * Ts).dtype
    small_compiled = ps.compile and not args.quick  # --quick skips the compile warm-up here
    med_s = time_round_robin({"ours": ours_step(cfg_s, small_dtype, small_compiled)}, xs, ys,
                             1 if args.quick else 2, 2 if args.quick else 4)
    small_tok_s = bs * Ts / med_s["ours"]
    small_flops = cfg_s.flops_per_token(Ts) * small_tok_s

    # Measure the peaks again after the timed work and keep the best: on a shared machine a peak
    # taken while others ran would understate it and inflate MFU.
    training.peak_flops.cache_clear()
    for d in peak:
        peak[d] = max(peak[d], training.peak_flops("cpu", d, seconds=peak_s))

    result = {
        "ours": round(tok_s["ours"], 1),
        "baseline": round(tok_s["hf_fp32"], 1),
        "ratio": round(tok_s["ours"] / tok_s["hf_fp32"], 3),
        "unit": "tokens/s",
        "shape": args.preset,
        "params": cfg.num_parameters(),
        "batch": [p.batch_size, T],
        "ours_dtype": speedrun_dtype,
        "tok_per_s": {k: round(v, 1) for k, v in tok_s.items()},
        "hf_bf16_ratio": round(tok_s["ours"] / tok_s["hf_bf16"], 3) if "hf_bf16" in tok_s else None,
        "skipped_bf16": (f"bf16 contenders left out: the calibration measured bf16 at {bf16_speed:.2f}x fp32"
                         if skip_bf16 else None),
        "peak_gflops_bf16": round(peak["bf16"] / 1e9, 1),
        "peak_gflops_fp32": round(peak["fp32"] / 1e9, 1),
        "mfu_vs_bf16_peak": round(fpt * tok_s["ours"] / peak["bf16"], 4),
        "mfu_vs_fp32_peak": round(fpt * tok_s["ours"] / peak["fp32"], 4),
        "mfu_shape": args.mfu_preset,
        "mfu_shape_tok_per_s": round(small_tok_s, 1),
        "mfu_shape_dtype": small_dtype,
        "mfu_shape_compiled": small_compiled,
        "mfu_shape_batch": [bs, Ts],
        "mfu_shape_vs_bf16_peak": round(small_flops / peak["bf16"], 4),
        "mfu_shape_vs_fp32_peak": round(small_flops / peak["fp32"], 4),
        "precision": choice.facts(),
        "threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "quick": args.quick,
        "smoke": args.smoke,
    }
    if compile_warmup_s is not None:
        result["compile_first_step_s"] = round(compile_warmup_s, 1)
        result["ours_compiled"] = compile_name == "ours" or "ours_compiled" in contenders
    for k, v in tok_s.items():
        print(f"{k:>14}: {v:9.1f} tok/s  ({med[k] * 1000:.0f} ms/step)")
    print(f"{args.mfu_preset:>14}: {small_tok_s:9.1f} tok/s  MFU {100 * result[f'mfu_shape_vs_{small_dtype}_peak']:.1f}% "
          f"of the {small_dtype} peak it ran at")
    emit("pretrain_throughput", result, args)


LABELS = {"ours": "**ours, as the speedrun runs it**", "hf_fp32": "HF `LlamaForCausalLM`, plain loop, fp32 (baseline)",
          "hf_bf16": "HF `LlamaForCausalLM`, plain loop, bf16 autocast", "ours_eager": "ours eager",
          "ours_eager_bf16": "ours eager, bf16 autocast", "ours_eager_fp32": "ours eager, fp32",
          "ours_compiled": "ours under `torch.compile`", "ours_compiled_fp32": "ours under `torch.compile`, fp32",
          "ours_compiled_bf16": "ours under `torch.compile`, bf16 autocast"}


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    base = r["tok_per_s"]["hf_fp32"]
    how = f"{r['ours_dtype']}" + (", `torch.compile`" if r.get("ours_compiled") else "")
    rows = [[LABELS.get(k, k) + (f" ({how})" if k == "ours" else ""), f"{v:,.0f}", f"{v / base:.2f}x"]
            for k, v in r["tok_per_s"].items()]
    target = "met" if r["ratio"] >= 2.0 else "missed"
    figures = [["measured matmul peak, bf16 / fp32", f"{r['peak_gflops_bf16']:.1f} / {r['peak_gflops_fp32']:.1f} GFLOP/s"],
               [f"ours at {r['shape']}: MFU vs bf16 peak / fp32 peak", f"{100 * r['mfu_vs_bf16_peak']:.1f} % / "
                                                                        f"{100 * r['mfu_vs_fp32_peak']:.1f} %"],
               [f"ours at {r['mfu_shape']} ({r['mfu_shape_dtype']}, batch {r['mfu_shape_batch'][0]} x "
                f"{r['mfu_shape_batch'][1]}{', compiled' if r['mfu_shape_compiled'] else ''}): tokens/s",
                f"{r['mfu_shape_tok_per_s']:,.0f}"],
               [f"ours at {r['mfu_shape']}: MFU vs bf16 peak / fp32 peak",
                f"{100 * r['mfu_shape_vs_bf16_peak']:.1f} % / {100 * r['mfu_shape_vs_fp32_peak']:.1f} %"],
               ]
    prec = r.get("precision") or {}
    if prec.get("speedup") is not None:
        figures.append(["`dtype auto`'s calibration on the model's train matmuls: bf16 / fp32",
                        f"{prec['bf16_gflops']:.0f} / {prec['fp32_gflops']:.0f} GFLOP/s ({prec['speedup']:.2f}x, "
                        f"{prec['source']}) -> **{prec['dtype']}**"])
    elif "amx" in r:  # records from before the calibration
        figures.append(["AMX", "yes" if r["amx"] else "no"])
    if r.get("compile_first_step_s") is not None:
        figures.append(["`torch.compile` first step (one-off)", f"{r['compile_first_step_s']:.1f} s"])
    return "\n".join([f"{r['shape']} shape ({r['params'] / 1e6:.1f} M parameters), batch {r['batch'][0]} x {r['batch'][1]}, "
                      f"{r['threads']} torch threads" + (" (--quick)" if r.get("quick") else "") + ".", "",
                      md_table(["contender", "tokens/s", "vs HF fp32"], rows), "",
                      md_table(["figure", "value"], figures), "",
                      *([f"{r['skipped_bf16']} on this machine.", ""] if r.get("skipped_bf16") else []),
                      f"Target, ours >= 2x the HF fp32 loop: **{target}** ({r['ratio']:.2f}x)."])


if __name__ == "__main__":
    main()
