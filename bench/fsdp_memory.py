"""Peak memory per rank: DDP vs FSDP2 at 2 ranks, side by side, on one model shape.

Each side is a `torchrun --nproc_per_node=2` job (gloo on CPU, NCCL on CUDA) that does what the
pretraining stage does: build and initialise the model (`training.parallel.build_model`: under
FSDP on the meta device, then only this rank's shards), apply DDP (`training.distributed.wrap_ddp`)
or FSDP2, build fused AdamW, and take a few optimizer steps with `training.optim.train_step`. Every rank then reports its peak: resident set size on CPU
(`getrusage` ru_maxrss: the whole process, Python and torch included) or peak allocated on CUDA.
DDP holds the whole model, its gradients, its gradient buckets and both AdamW moments on every
rank; FSDP holds 1/N of each plus one block gathered at a time.

On CPU, FSDP fixes glibc's mmap threshold (`training.parallel`: its per-block buffers would
otherwise fragment the heap); DDP is measured as it runs and, to be fair, with the same setting
(`MALLOC_MMAP_THRESHOLD_`), and the ratio is taken against the better of the two.

The last stdout line is one JSON object: ddp_peak_mb, ddp_fixed_mmap_peak_mb and fsdp_peak_mb (per
rank), ratio (FSDP's largest rank over the better DDP's largest), params, shape.

    .venv/bin/python bench/fsdp_memory.py            # ~120 M parameters (needs ~6 GB free), 3 steps
    .venv/bin/python bench/fsdp_memory.py --smoke    # a tiny shape, one step: the code paths only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)

# GPT-2-small-like depth and width (~120 M parameters, ~2.6 GB per DDP rank): FSDP's transient
# buffers are a few gathered blocks at a time, so the saving shows once a block is a small share of
# the model, as in every real one.
SHAPE = dict(vocab_size=8192, hidden_size=768, intermediate_size=2048, num_hidden_layers=16, num_attention_heads=12,
             num_key_value_heads=12, max_position_embeddings=128)
SMOKE_SHAPE = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=4, max_position_embeddings=32)


def worker(mode: str, shape: dict, steps: int, batch: int, seq: int) -> None:
    """One rank of one side (run under torchrun)."""
    import torch

    from saessak.model.llama import Llama, ModelConfig
    from saessak.training.distributed import gather_objects, init_distributed, wrap_ddp
    from saessak.training.optim import build_optimizer, train_step
    from saessak.ledger import peak_memory_bytes
    from saessak.training.parallel import Parallel, build_model

    info = init_distributed(None)
    cfg = ModelConfig(**shape)
    torch.manual_seed(0)
    model = build_model(lambda: Llama(cfg), lambda m: m.init_weights(0), info, Parallel(fsdp=mode == "fsdp"), "fp32")
    train_model = wrap_ddp(model, info)
    opt = build_optimizer(model, 1e-4)
    gen = torch.Generator().manual_seed(info.rank)
    for _ in range(steps):
        x = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=gen).to(info.device)
        train_step(train_model, opt, [(x[:, :-1].contiguous(), x[:, 1:].contiguous())], lambda m, b: m(b[0], targets=b[1]),
                   device=info.device, dtype="fp32")
    peaks = gather_objects(peak_memory_bytes(info.device), info)
    if info.is_main:
        print("RESULT " + json.dumps({"peaks": peaks, "params": cfg.num_parameters(), "device": info.device}),
              flush=True)
    import torch.distributed as dist

    dist.destroy_process_group()


def run_side(side: str, shape: dict, steps: int, batch: int, seq: int) -> dict:
    mode = "fsdp" if side == "fsdp" else "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", os.path.abspath(__file__),
           "--worker", mode, "--shape", json.dumps(shape), "--steps", str(steps), "--batch", str(batch),
           "--seq", str(seq)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if side == "ddp_fixed_mmap":  # DDP with the allocator setting FSDP uses on CPU (training.parallel)
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{mode} side failed:\n{r.stderr[-3000:]}")
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    kind = "peak allocated (CUDA)" if str(r.get("device", "cpu")).startswith("cuda") else "peak RSS (whole process)"
    names = {"ddp": "DDP", "ddp_fixed_mmap": "DDP, glibc mmap threshold fixed at 1 MiB",
             "fsdp": "FSDP2 (fixes that threshold itself on CPU)"}
    rows = [[names[side], *(f"{mb:,.0f} MB" for mb in r[f"{side}_peak_mb"])] for side in names
            if f"{side}_peak_mb" in r]
    rows.append(["FSDP / the better DDP (largest rank)", f"{r['ratio']:.2f}x", ""])
    shape = r["shape"]
    head = (f"{r['params'] / 1e6:.0f} M parameters (hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers, "
            f"vocab {shape['vocab_size']}), fp32, AdamW, {r['steps']} steps of batch {r['batch']} x {r['seq']} "
            f"per rank, 2 ranks; {kind}.\n\n")
    return head + md_table([f"{kind}", "rank 0", "rank 1"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny shape, one step")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--worker", choices=("ddp", "fsdp"), help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    add_record_args(ap)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.shape), args.steps, args.batch, args.seq)
        return
    shape = SMOKE_SHAPE if args.smoke else SHAPE
    steps, batch, seq = (1, 1, 16) if args.smoke else (args.steps, args.batch, args.seq)
    # --smoke leaves out the second DDP side: the same code as the first, with an environment variable.
    names = ("ddp", "fsdp") if args.smoke else ("ddp", "ddp_fixed_mmap", "fsdp")
    sides = {side: run_side(side, shape, steps, batch, seq) for side in names}
    mb = {f"{side}_peak_mb": [round(p / 2**20, 1) for p in s["peaks"]] for side, s in sides.items()}
    # The ratio is against DDP's better setting.
    ddp_best = min(max(v) for k, v in mb.items() if k.startswith("ddp"))
    result = {**mb, "ratio": round(max(mb["fsdp_peak_mb"]) / ddp_best, 3),
              "params": sides["ddp"]["params"], "device": sides["ddp"]["device"], "shape": shape, "steps": steps,
              "batch": batch, "seq": seq, "smoke": args.smoke}
    emit("fsdp_memory", result, args)


if __name__ == "__main__":
    main()
