"""DeepSeek MoE vs dense Llama at cpu-tiny scale: val bits per byte at equal training FLOPs and at
equal wall-clock, and whether the aux-loss-free bias rule keeps the experts balanced (issue 15, part 5).

Contenders, all on the token shards of one run folder (`--run`, RUN/pretrain/shards), in the same
data order (the pretraining `SequenceSampler`, same seed), with the same tokens per step and the
same LR schedule as the preset's pretraining (cpu-tiny: batch 8 x 256, AdamW, warm-up then cosine),
the same seed for the weights and one precision (`dtype auto` measured on the dense model):
- dense:        saessak.model.Llama at the preset's shape
- moe:          saessak.model.deepseek.DeepSeek (MLA + MoE, noaux_tc routing) from
                `deepseek_config_for_shape`, its expert width tuned so the ACTIVE parameters per
                token match the dense model's as closely as a multiple of 8 allows; the router
                bias moves by bias_update_speed after every optimizer step (`update_router_biases`)
- moe_no_bias:  the same MoE with bias_update_speed 0 (no balancing at all)
- moe_equal_flops: only when `moe` costs more than 3 % more or less FLOPs per token than dense
                (or with --equal-flops): expert width tuned to the dense model's FLOPs per token
Each contender trains for the same FLOPs (default: the dense model's `--steps` steps; a contender
that costs more per token takes fewer steps, its cosine schedule over its own steps). Val bpb
(`evaluate_bpb`, the same val tokens for all) is measured at step 0 and every `--eval-every` dense
steps' worth of FLOPs, with the training wall-clock at that point (evaluation time excluded). For
the MoE contenders the router statistics are read after every step: max/mean tokens per expert per
layer, dead experts over the last 10 % of steps, the final bias range.

All contenders run eager (the MoE's per-expert loop breaks torch.compile's graph), one step each
per round, so load from other processes on a shared machine hits them alike. The first rounds are
timed and the FLOP budget is cut (within the LR warm-up, so the schedule stays exact) when the
estimate exceeds `--max-minutes`; the result says so. The last stdout line is one JSON object.

    .venv/bin/python bench/moe_vs_dense.py [--run runs/cpu-tiny] [--steps 400] [--plot docs/img/moe_balance.png]
    .venv/bin/python bench/moe_vs_dense.py --smoke   # micro shapes on a made-up run folder, in seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._lib import record  # noqa: E402  (first: it notes the load before the work)
from bench._lib.record import add_record_args, emit  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from saessak import recipes, training  # noqa: E402
from saessak.errors import UserError  # noqa: E402
from saessak.model import Llama, model_config  # noqa: E402
from saessak.model.deepseek import (DeepSeek, deepseek_config_for_shape, router_stats,  # noqa: E402
                                    update_router_biases)
from saessak.pretrain import shards  # noqa: E402
from saessak.pretrain.config import PretrainConfig  # noqa: E402
from saessak.pretrain.val import evaluate_bpb  # noqa: E402
from saessak.training.distributed import DistInfo  # noqa: E402

BALANCE_LIMIT = 1.5  # acceptance: max expert load / mean load after warm-up
EQUAL_FLOPS_GAP = 0.03  # run the equal-FLOPs MoE when `moe` differs from dense by more than this
PROBE_ROUNDS = 5  # rounds timed before the budget is fixed (kept inside the LR warm-up)
LABELS = {"dense": "dense Llama", "moe": "DeepSeek MoE, bias rule on (equal active params)",
          "moe_no_bias": "DeepSeek MoE, bias rule off", "moe_equal_flops": "DeepSeek MoE, equal FLOPs/token, bias on"}


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def open_run(run: Path):
    """The run's token shards and tokenizer -> (train sampler args, val shards, token bytes, vocab)."""
    from saessak.io import file_sha256
    from saessak.tokenizer import Tokenizer

    shard_dir = run / "pretrain" / "shards"
    tok_json = run / "tokenizer" / "tokenizer.json"
    if not (shard_dir / "meta.json").exists():
        raise UserError(f"--run {run}: no token shards at {shard_dir} (meta.json missing); run the speedrun first "
                        f"(`saessak speedrun --preset cpu-tiny --run {run}`) or pass --run with a finished run folder")
    if not tok_json.exists():
        raise UserError(f"--run {run}: {tok_json} missing; the token shards need the tokenizer that made them")
    meta = shards.read_meta(shard_dir)
    tok = Tokenizer.load(tok_json)
    shards.check_matches(meta, shard_dir, tok, file_sha256(tok_json))
    train = shards.open_split(shard_dir, meta, "train")
    val = shards.open_split(shard_dir, meta, "val")
    return train, val, torch.from_numpy(shards.token_byte_lengths(tok)), tok.vocab_size, meta


def make_smoke_run(root: Path) -> Path:
    """A tiny run folder: generated Korean text (tests/run_fixtures.py), a 600-token tokenizer trained
    on the fly, its token shards. Seconds."""
    import json

    from saessak.io import file_sha256
    from saessak.tokenizer import train_tokenizer
    from tests.run_fixtures import make_run

    run = make_run(root / "run", n_train=120, n_val=24)
    texts = [json.loads(line)["text"] for line in (run / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    tok = train_tokenizer(texts, 600)
    tok_json = run / "tokenizer" / "tokenizer.json"
    tok_json.parent.mkdir(parents=True, exist_ok=True)
    tok.save(tok_json)
    shards.build_shards(run / "pretrain" / "shards", tok, file_sha256(tok_json),
                        {s: run / "data" / f"{s}.jsonl" for s in ("train", "val")}, seed=1337, workers=1)
    return run


# ---------------------------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------------------------


def moe_config(dense, T: int, target: float, measure, args, **overrides):
    """deepseek_config_for_shape at the dense shape, its moe_intermediate_size (multiple of 8) chosen
    so that measure(cfg) is closest to target."""
    base = deepseek_config_for_shape(dense.hidden_size, dense.num_hidden_layers, dense.vocab_size, T, dense.head_dim,
                                     n_routed_experts=args.experts, num_experts_per_tok=args.topk,
                                     n_shared_experts=args.shared, tie_word_embeddings=dense.tie_word_embeddings,
                                     **overrides)
    widths = range(8, 4 * base.moe_intermediate_size + 8, 8)
    best = min(widths, key=lambda w: abs(measure(dataclasses.replace(base, moe_intermediate_size=w)) - target))
    return dataclasses.replace(base, moe_intermediate_size=best), base.moe_intermediate_size


class Contender:
    """One model under test and what its training left behind. (A plain class, not a dataclass: the
    smoke test loads this file without registering it as a module, which dataclasses need.)"""

    def __init__(self, name: str, cfg, moe: bool, bias_speed: float = 0.0):
        self.name, self.cfg, self.moe, self.bias_speed = name, cfg, moe, bias_speed
        self.model: torch.nn.Module | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.steps = 0
        self.eval_steps: tuple[int, ...] = ()
        self.train_s = 0.0  # optimizer steps only (evaluation and statistics excluded)
        self.round_s: list[float] = []  # everything per step, for the estimate
        self.eval_s = 0.0
        self.curve: list[dict] = []
        self.losses: list[float] = []
        self.ratios: list[list[float]] = []  # per step, per MoE layer: max/mean load
        self.tail_counts: dict[str, np.ndarray] = {}
        self.bias_range: dict[str, list[float]] = {}
        self.diverged: str | None = None

    def fpt(self, T: int) -> float:
        return float(self.cfg.flops_per_token(T))

    def build(self, seed: int, lr: float, weight_decay: float) -> None:
        torch.manual_seed(seed)
        self.model = DeepSeek(self.cfg) if self.moe else Llama(self.cfg)
        self.model.init_weights(seed)
        self.model.train()
        self.opt = training.build_optimizer(self.model, lr, weight_decay)


def build_contenders(dense_cfg, T: int, args) -> tuple[list[Contender], dict]:
    speed = args.bias_speed
    moe_cfg, rule_width = moe_config(dense_cfg, T, dense_cfg.num_parameters(),
                                     lambda c: c.num_active_parameters(), args, bias_update_speed=speed)
    out = [Contender("dense", dense_cfg, False),
           Contender("moe", moe_cfg, True, speed),
           Contender("moe_no_bias", dataclasses.replace(moe_cfg, bias_update_speed=0.0), True, 0.0)]
    dense_fpt = dense_cfg.flops_per_token(T)
    gap = moe_cfg.flops_per_token(T) / dense_fpt - 1
    sizing = {"rule_moe_intermediate_size": rule_width, "moe_intermediate_size": moe_cfg.moe_intermediate_size,
              "moe_flops_gap": round(gap, 4)}
    if args.equal_flops or abs(gap) > EQUAL_FLOPS_GAP:
        eq_cfg, _ = moe_config(dense_cfg, T, dense_fpt, lambda c: c.flops_per_token(T), args, bias_update_speed=speed)
        out.append(Contender("moe_equal_flops", eq_cfg, True, speed))
        sizing["equal_flops_contender"] = f"ran (moe_intermediate_size {eq_cfg.moe_intermediate_size})"
    else:
        sizing["equal_flops_contender"] = (
            f"skipped: `moe` costs {100 * gap:+.1f} % FLOPs/token vs dense, within {100 * EQUAL_FLOPS_GAP:.0f} %; "
            f"every contender trains on the same FLOP budget anyway (--equal-flops runs it)")
    return out, sizing


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def loss_fn(m, batch):
    x, y = batch
    return m(x, targets=y)


def plan_steps(c: Contender, budget_flops: float, tokens_per_step: int, T: int, eval_flops: float) -> None:
    """The contender's steps for the FLOP budget and the steps where val bpb is measured."""
    per_step = c.fpt(T) * tokens_per_step
    c.steps = max(1, round(budget_flops / per_step))
    marks = {round(k * eval_flops / per_step) for k in range(1, int(budget_flops / eval_flops + 1e-9) + 1)}
    c.eval_steps = tuple(sorted(s for s in marks | {c.steps} if 1 <= s <= c.steps))


def evaluate(c: Contender, step: int, val, token_bytes, T: int, p, dtype: str, tokens_per_step: int) -> None:
    info = DistInfo(0, 1, 0, "cpu")
    t0 = time.perf_counter()
    bpb = evaluate_bpb(c.model, val, token_bytes, T, p.val_tokens, info, dtype)
    c.eval_s += time.perf_counter() - t0
    c.curve.append({"step": step, "flops": c.fpt(T) * tokens_per_step * step, "wall_s": round(c.train_s, 3),
                    "val_bpb": round(bpb, 5), "loss": round(c.losses[-1], 4) if c.losses else None})


def one_step(c: Contender, step: int, sampler, p, dtype: str, T: int) -> None:
    t_round = time.perf_counter()
    training.set_lr(c.opt, training.lr_at(step, c.steps, p.lr, p.warmup_steps, p.min_lr_frac))
    B, A = p.batch_size, p.grad_accum
    t0 = time.perf_counter()
    micro = [sampler.batch(step * A * B + a * B, B) for a in range(A)]
    res = training.train_step(c.model, c.opt, micro, loss_fn, device="cpu", dtype=dtype, grad_clip=p.grad_clip)
    if c.moe:
        update_router_biases(c.model, c.bias_speed)  # speed 0: counts reset, bias unchanged
    c.train_s += time.perf_counter() - t0
    c.losses.append(res.loss)
    if not math.isfinite(res.loss):
        c.diverged = f"loss {res.loss} at step {step + 1}"
    if c.moe:
        stats = router_stats(c.model)
        c.ratios.append([round(s.get("max_over_mean", 0.0), 4) for s in stats.values()])
        if step >= c.steps - max(1, math.ceil(0.1 * c.steps)):  # the last 10 % of steps
            for k, s in stats.items():
                counts = np.asarray(s.get("tokens_per_expert", []), dtype=np.int64)
                c.tail_counts[k] = counts if k not in c.tail_counts else c.tail_counts[k] + counts
        c.bias_range = {k: [round(s["bias_min"], 5), round(s["bias_max"], 5)] for k, s in stats.items()}
    c.round_s.append(time.perf_counter() - t_round)


def estimate_s(contenders: list[Contender], done: int, n_evals: int) -> float:
    """Seconds still to run: each contender's median step (first round left out) times its steps left,
    plus its evaluations at the cost of the one at step 0."""
    total = 0.0
    for c in contenders:
        med = statistics.median(c.round_s[1:] or c.round_s)
        total += max(0, c.steps - done) * med + n_evals * c.eval_s
    return total


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def balance(c: Contender) -> dict:
    """The acceptance figures: per step the worst layer's max/mean load; its mean and its worst over the
    last half of the steps (after warm-up); dead experts summed over the last 10 %; the final bias."""
    worst = [max(r) if r else 0.0 for r in c.ratios]
    half = worst[len(worst) // 2:] or worst
    layers = list(c.bias_range)  # the MoE layers, in router_stats order (as the ratios)
    per_layer_half = {k: round(statistics.fmean(r[i] for r in c.ratios[len(c.ratios) // 2:] or c.ratios), 3)
                      for i, k in enumerate(layers)}
    dead = {k: [int(e) for e in np.flatnonzero(v == 0)] for k, v in c.tail_counts.items()}
    mean_half = statistics.fmean(half) if half else 0.0
    n_dead = sum(len(v) for v in dead.values())
    lo = min((b[0] for b in c.bias_range.values()), default=0.0)
    hi = max((b[1] for b in c.bias_range.values()), default=0.0)
    return {"bias_update_speed": c.bias_speed, "mean_max_over_mean_last_half": round(mean_half, 3),
            "worst_step_max_over_mean_last_half": round(max(half), 3) if half else None,
            "per_layer_mean_max_over_mean_last_half": per_layer_half,
            "dead_experts_last_10pct": dead, "dead_expert_count_last_10pct": n_dead,
            "tail_steps": max(1, math.ceil(0.1 * c.steps)),
            "final_bias_range": [round(lo, 5), round(hi, 5)], "final_bias_range_per_layer": c.bias_range,
            "passes": bool(mean_half <= BALANCE_LIMIT and n_dead == 0),
            "worst_step_within_limit": bool(half and max(half) <= BALANCE_LIMIT)}


def interp_bpb(curve: list[dict], wall: float) -> float:
    xs = [pt["wall_s"] for pt in curve]
    ys = [pt["val_bpb"] for pt in curve]
    return float(np.interp(wall, xs, ys))


def plot_balance(contenders: list[Contender], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    colours = {"moe": "tab:blue", "moe_no_bias": "tab:red", "moe_equal_flops": "tab:green"}
    for c in contenders:
        if not c.moe or not c.ratios:
            continue
        steps = np.arange(1, len(c.ratios) + 1)
        per_layer = np.asarray(c.ratios)
        for i in range(per_layer.shape[1]):
            ax.plot(steps, per_layer[:, i], color=colours.get(c.name, "grey"), alpha=0.25, lw=0.6)
        ax.plot(steps, per_layer.max(axis=1), color=colours.get(c.name, "grey"), lw=1.4,
                label=f"{c.name}: bias speed {c.bias_speed:g} (worst layer; thin: each layer)")
    ax.axhline(BALANCE_LIMIT, color="black", ls="--", lw=0.8, label=f"acceptance limit {BALANCE_LIMIT}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("max / mean tokens per expert")
    ax.set_title("MoE load balance over training: aux-loss-free bias rule on vs off")
    ax.set_ylim(bottom=1.0)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def check_args(args) -> None:
    for name in ("steps", "eval_every", "experts", "topk"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')} {v}: must be at least 1")
    if args.topk > args.experts:
        raise UserError(f"--topk {args.topk}: more than --experts {args.experts}")
    if args.shared < 0:
        raise UserError(f"--shared {args.shared}: must be 0 or more")
    if not args.max_minutes > 0:
        raise UserError(f"--max-minutes {args.max_minutes}: must be > 0")
    if args.bias_speed < 0:
        raise UserError(f"--bias-speed {args.bias_speed}: must be >= 0")
    if args.dtype not in ("auto", "bf16", "fp32"):
        raise UserError(f"--dtype {args.dtype!r}: must be auto, bf16 or fp32")


def run_bench(args, run: Path, plot: Path) -> dict:
    t_start = time.time()
    train, val, token_bytes, vocab, meta = open_run(run)
    p = recipes.stage_config(PretrainConfig, args.preset, "pretrain")
    dense_cfg = model_config(args.preset, vocab)
    if getattr(dense_cfg, "architecture", "") != "LlamaForCausalLM":
        raise UserError(f"--preset {args.preset}: not a dense (Llama) recipe; give the dense preset (e.g. cpu-tiny): "
                        f"the bench builds the MoE contenders from its shape (--experts, --topk, --shared)")
    T = dense_cfg.max_position_embeddings
    sampler = shards.SequenceSampler(train, T, p.seed)
    tokens_per_step = p.batch_size * p.grad_accum * T
    choice = training.choose_dtype("cpu", args.dtype, dense_cfg, rows=p.batch_size * T)
    dtype = choice.dtype
    contenders, sizing = build_contenders(dense_cfg, T, args)
    for c in contenders:
        c.build(p.seed, p.lr, p.weight_decay)

    requested = args.steps or p.max_steps
    dense_fpt = dense_cfg.flops_per_token(T)
    eval_every = min(args.eval_every, max(1, requested // 4))

    def plan(dense_steps: int) -> float:
        budget = dense_steps * dense_fpt * tokens_per_step
        for c in contenders:
            plan_steps(c, budget, tokens_per_step, T, eval_every * dense_fpt * tokens_per_step)
        return budget

    budget = plan(requested)
    print(f"moe_vs_dense: {args.preset} shape, {tokens_per_step} tokens/step, {dtype}, "
          f"{requested} dense steps' FLOPs ({budget:.3g}); contenders: "
          + ", ".join(f"{c.name} ({c.steps} steps)" for c in contenders), file=sys.stderr, flush=True)
    for c in contenders:
        evaluate(c, 0, val, token_bytes, T, p, dtype, tokens_per_step)

    def advance(c: Contender, step: int) -> None:
        one_step(c, step, sampler, p, dtype, T)
        if step + 1 in c.eval_steps and not c.diverged:
            evaluate(c, step + 1, val, token_bytes, T, p, dtype, tokens_per_step)

    # Probe: the first rounds (inside the LR warm-up, which does not depend on the step count), then
    # the budget is fixed; a cut keeps the run exact.
    probe = max(1, min(PROBE_ROUNDS, p.warmup_steps, min(c.steps for c in contenders) - 1))
    budget_info = {"dense_steps_requested": requested, "dense_steps": requested, "reduced": False,
                   "max_minutes": args.max_minutes}
    for step in range(probe):
        for c in contenders:
            advance(c, step)
    n_evals = len(contenders[0].eval_steps)
    est = estimate_s(contenders, probe, n_evals) + (time.time() - t_start)
    budget_info["estimate_s"] = round(est, 1)
    limit = args.max_minutes * 60
    if est > limit and not args.smoke:
        per_dense_step = (est - (time.time() - t_start) - sum(n_evals * c.eval_s for c in contenders)) \
            / max(1, requested - probe)
        spare = limit - (time.time() - t_start) - sum(n_evals * c.eval_s for c in contenders)
        steps_fit = max(probe + 1, int(spare / per_dense_step) + probe)
        steps_fit = min(requested, max(probe + 1, steps_fit // 10 * 10 if steps_fit >= 20 else steps_fit))
        eval_every = min(args.eval_every, max(1, steps_fit // 4))
        budget = plan(steps_fit)
        budget_info.update(dense_steps=steps_fit, reduced=True, estimate_s_after_cut=round(
            estimate_s(contenders, probe, len(contenders[0].eval_steps)) + (time.time() - t_start), 1),
            note=f"the FLOP budget of {requested} dense steps was estimated at {est / 60:.1f} min on this machine "
                 f"(over --max-minutes {args.max_minutes:g}); cut to {steps_fit} dense steps' FLOPs")
        print(f"moe_vs_dense: {budget_info['note']}", file=sys.stderr, flush=True)
    budget_info["flops"] = budget

    last_note = time.time()
    for step in range(probe, max(c.steps for c in contenders)):
        for c in contenders:
            if step < c.steps and not c.diverged:
                advance(c, step)
        if time.time() - last_note > 30:
            last_note = time.time()
            print("moe_vs_dense: step " + str(step + 1) + ": " + ", ".join(
                f"{c.name} bpb {c.curve[-1]['val_bpb']:.4f}" for c in contenders), file=sys.stderr, flush=True)

    # ---- the record ----
    out: dict = {}
    for c in contenders:
        total = c.cfg.num_parameters()
        active = c.cfg.num_active_parameters() if c.moe else total
        tokens = len(c.losses) * tokens_per_step
        entry = {
            "label": LABELS[c.name], "arch": c.cfg.architecture, "params_total": total, "params_active": active,
            "flops_per_token": round(c.fpt(T)), "steps": c.steps, "tokens": tokens,
            "flops": c.fpt(T) * tokens, "train_wall_s": round(c.train_s, 2),
            "tok_per_s": round(tokens / c.train_s, 1) if c.train_s else None,
            "eval_wall_s": round(c.eval_s, 2), "final_val_bpb": c.curve[-1]["val_bpb"],
            "final_loss": round(c.losses[-1], 4) if c.losses else None, "curve": c.curve,
            "diverged": c.diverged,
        }
        if c.moe:
            entry["moe_shape"] = {k: getattr(c.cfg, k) for k in (
                "n_routed_experts", "num_experts_per_tok", "n_shared_experts", "moe_intermediate_size",
                "intermediate_size", "first_k_dense_replace", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                "v_head_dim", "bias_update_speed")}
            entry["router"] = {"max_over_mean_per_step": c.ratios, **balance(c)}
        out[c.name] = entry
    finals = {c.name: c.curve[-1]["val_bpb"] for c in contenders if not c.diverged}
    t_eq = min(c.train_s for c in contenders)
    at_wall = {c.name: round(interp_bpb(c.curve, t_eq), 5) for c in contenders if not c.diverged}
    plot_balance(contenders, plot)
    return {
        "contenders": out,
        "equal_flops": {"flops": budget, "val_bpb": finals, "winner": min(finals, key=finals.get) if finals else None},
        "equal_wall": {"wall_s": round(t_eq, 2), "val_bpb": at_wall,
                       "winner": min(at_wall, key=at_wall.get) if at_wall else None},
        "balance": {c.name: {k: v for k, v in out[c.name]["router"].items() if k != "max_over_mean_per_step"}
                    for c in contenders if c.moe},
        "balance_limit": BALANCE_LIMIT,
        "sizing": sizing,
        "budget": budget_info,
        "preset": args.preset,
        "run": str(run) if not args.smoke else "(smoke run folder)",
        "train_tokens": int(sum(len(s) for s in train)),
        "val_tokens": min(p.val_tokens, int(sum(len(s) for s in val))),
        "batch": [p.batch_size, T], "grad_accum": p.grad_accum, "tokens_per_step": tokens_per_step,
        "lr": p.lr, "warmup_steps": p.warmup_steps, "min_lr_frac": p.min_lr_frac, "seed": p.seed,
        "eval_every_dense_steps": eval_every,
        "dtype": dtype, "precision": choice.facts(), "compiled": False,
        "plot": str(plot),
        "threads": torch.get_num_threads(),
        "load_avg_1m": {"start": round(record._LOAD_START, 2), "end": round(os.getloadavg()[0], 2)},
        "bench_wall_s": round(time.time() - t_start, 1),
        "vocab_size": vocab, "shards_tokenizer_sha256": meta.get("tokenizer_sha256", "")[:12],
        "smoke": args.smoke,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/cpu-tiny", help="run folder with RUN/pretrain/shards and RUN/tokenizer (the speedrun's)")
    ap.add_argument("--preset", default="cpu-tiny", help="the dense shape and the pretraining recipe (batch, LR)")
    ap.add_argument("--steps", type=int, default=None,
                    help="FLOP budget in dense optimizer steps (default: the preset's pretraining max_steps)")
    ap.add_argument("--eval-every", type=int, default=50, help="val bpb every this many dense steps' FLOPs")
    ap.add_argument("--max-minutes", type=float, default=12.0,
                    help="cut the FLOP budget when the measured estimate of the whole bench exceeds this")
    ap.add_argument("--experts", type=int, default=8, help="routed experts per MoE layer")
    ap.add_argument("--topk", type=int, default=2, help="routed experts per token")
    ap.add_argument("--shared", type=int, default=1, help="shared experts per MoE layer")
    ap.add_argument("--bias-speed", type=float, default=1e-2,
                    help="router bias step per update (the rule-on MoE; cpu-tiny-deepseek's, docs/RESULTS.md)")
    ap.add_argument("--equal-flops", action="store_true", help="also run the MoE sized to dense FLOPs/token")
    ap.add_argument("--dtype", default="auto", help="auto (measured on the dense model), bf16 or fp32: for all")
    ap.add_argument("--plot", default="docs/img/moe_balance.png", help="the balance plot (PNG)")
    ap.add_argument("--smoke", action="store_true", help="micro shapes, a few steps, a made-up run folder (tests)")
    add_record_args(ap)
    args = ap.parse_args()
    try:
        check_args(args)
        if args.smoke:
            args.preset = "micro"
            args.steps = args.steps or 6
            args.eval_every = min(args.eval_every, 2)
            with tempfile.TemporaryDirectory(prefix="moe_vs_dense_") as tmp:
                result = run_bench(args, make_smoke_run(Path(tmp)), Path(tmp) / "moe_balance.png")
        else:
            if args.preset not in recipes.RECIPES:
                raise UserError(f"--preset {args.preset!r}: unknown; one of {', '.join(recipes.RECIPES)}")
            result = run_bench(args, Path(args.run), Path(args.plot))
    except UserError as e:
        print(f"moe_vs_dense: error: {e}", file=sys.stderr)
        sys.exit(2)
    for name, c in result["contenders"].items():
        print(f"{name:>16}: val bpb {c['final_val_bpb']:.4f} after {c['steps']} steps, {c['tok_per_s'] or 0:,.0f} tok/s, "
              f"{c['params_total'] / 1e6:.2f} M params ({c['params_active'] / 1e6:.2f} M active)", file=sys.stderr)
    emit("moe_vs_dense", result, args)


# ---------------------------------------------------------------------------------------------
# The docs' view
# ---------------------------------------------------------------------------------------------


def _winner_line(what: str, bpb: dict, names=("dense", "moe")) -> str:
    a, b = names
    if a not in bpb or b not in bpb:
        return f"{what}: no verdict (a contender diverged)."
    d = bpb[b] - bpb[a]
    if abs(d) < 5e-4:
        return f"{what}: **a tie** ({LABELS[b]} {bpb[b]:.4f} vs {LABELS[a]} {bpb[a]:.4f} bpb)."
    win, lose = (b, a) if d < 0 else (a, b)
    tail = "."
    if win == a and a == "dense":
        tail = " — a loss for the MoE."
    elif win == a and a == "moe_no_bias":
        tail = " — the bias rule cost quality here."
    return f"{what}: **{LABELS[win]} wins**, {bpb[win]:.4f} vs {bpb[lose]:.4f} bpb ({abs(d):.4f} lower){tail}"


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    cs = r["contenders"]
    rows = []
    for name, c in cs.items():
        rows.append([LABELS.get(name, name) + (f" (diverged: {c['diverged']})" if c.get("diverged") else ""),
                     f"{c['params_total'] / 1e6:.2f} M", f"{c['params_active'] / 1e6:.2f} M",
                     f"{c['flops_per_token'] / 1e6:.1f} M", str(c["steps"]), f"{c['train_wall_s']:.0f} s",
                     f"{c['tok_per_s'] or 0:,.0f}", f"{c['final_val_bpb']:.4f}",
                     f"{r['equal_wall']['val_bpb'].get(name, float('nan')):.4f}"])
    b = r["budget"]
    head = (f"{r['preset']} shape, batch {r['batch'][0]} x {r['batch'][1]} ({r['tokens_per_step']:,} tokens/step), LR "
            f"{r['lr']:g} with {r['warmup_steps']} warm-up steps and cosine decay over each contender's own steps, "
            f"seed {r['seed']}, {r['dtype']} for all (`dtype auto` on the dense model), eager, {r['threads']} torch "
            f"threads, one seed each. Budget: {b['dense_steps']} dense steps' FLOPs ({r['equal_flops']['flops']:.3g})"
            + (f" — **cut** from {b['dense_steps_requested']}: {b['note']}" if b.get("reduced") else "")
            + f"; val bpb on the first {r['val_tokens']:,} val tokens. Load average (1 min) "
              f"{r['load_avg_1m']['start']} at the start, {r['load_avg_1m']['end']} at the end"
            + (" (a loaded machine: wall-clock figures are noisy)." if max(r['load_avg_1m'].values()) > 1.5 else "."))
    table = md_table(["contender", "params", "active", "FLOPs/token", "steps", "train wall", "tokens/s",
                      "val bpb, equal FLOPs", f"val bpb at {r['equal_wall']['wall_s']:.0f} s"], rows)
    # The curve at each FLOP checkpoint, in dense steps' worth.
    dense_step_flops = cs["dense"]["flops_per_token"] * r["tokens_per_step"] if "dense" in cs else None
    curve_rows = []
    if dense_step_flops:
        marks = [pt["step"] for pt in cs["dense"]["curve"]]
        for name, c in cs.items():
            by = {round(pt["flops"] / dense_step_flops): pt["val_bpb"] for pt in c["curve"]}
            curve_rows.append([name] + [f"{by[m]:.4f}" if m in by else "–" for m in marks])
        curve = md_table(["val bpb after N dense steps' FLOPs"] + [str(m) for m in marks], curve_rows)
    else:
        curve = ""
    bal_rows = []
    for name, s in r["balance"].items():
        dead = s["dead_expert_count_last_10pct"]
        bal_rows.append([f"{name} (bias speed {s['bias_update_speed']:g})", f"{s['mean_max_over_mean_last_half']:.3f}",
                         f"{s['worst_step_max_over_mean_last_half']:.3f}",
                         f"{dead} (last {s['tail_steps']} steps)",
                         f"{s['final_bias_range'][0]:+.4f} .. {s['final_bias_range'][1]:+.4f}",
                         "**pass**" if s["passes"] else "**fail**"])
    bal = md_table(["MoE", "max/mean load, mean over last half", "worst step, last half", "dead experts",
                    "final bias range", f"acceptance (mean <= {r['balance_limit']}, no dead expert)"], bal_rows)
    eqf, eqw = r["equal_flops"]["val_bpb"], r["equal_wall"]["val_bpb"]
    verdicts = [
        "- " + _winner_line("At equal training FLOPs", eqf),
        "- " + _winner_line(f"At equal wall-clock ({r['equal_wall']['wall_s']:.0f} s of training)", eqw),
        "- " + _winner_line("Bias rule on vs off, equal FLOPs", eqf, ("moe_no_bias", "moe")),
    ]
    if "moe" in r["balance"]:
        on = r["balance"]["moe"]
        off = r["balance"].get("moe_no_bias")
        verdicts.append(
            f"- Balance with the bias rule on: **{'met' if on['passes'] else 'missed'}** (max/mean "
            f"{on['mean_max_over_mean_last_half']:.2f} averaged over the last half, worst step "
            f"{on['worst_step_max_over_mean_last_half']:.2f}, {on['dead_expert_count_last_10pct']} dead experts)"
            + (f"; without it: max/mean {off['mean_max_over_mean_last_half']:.2f}, worst step "
               f"{off['worst_step_max_over_mean_last_half']:.2f}, {off['dead_expert_count_last_10pct']} dead experts."
               if off else "."))
    if "moe" in cs and "dense" in cs:
        m, d = cs["moe"], cs["dense"]
        verdicts.append(f"- Speed: the MoE trains at {m['tok_per_s'] / d['tok_per_s']:.2f}x the dense model's tokens/s "
                        f"with {m['params_total'] / d['params_total']:.2f}x its parameters "
                        f"({m['params_active'] / d['params_active']:.2f}x active).")
    verdicts.append(f"- Equal-FLOPs MoE: {r['sizing']['equal_flops_contender']}.")
    plot = r.get("plot", "")
    img = ""
    if plot.startswith("docs/"):
        img = f"![max/mean expert load per step, bias rule on vs off]({plot[len('docs/'):]})"
    elif plot:
        img = f"(balance plot: `{plot}`)"
    return "\n".join([head, "", table, "", curve, "", bal, "", img, "", *verdicts])


if __name__ == "__main__":
    main()
