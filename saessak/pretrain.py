"""Pretraining stage: tokenizer + text splits -> base model (`RUN/base/`).

    RUN/base/shards/        token shards (saessak.shards) of the train and val splits
    RUN/base/ckpt/step_N/   resumable checkpoints (saessak.training), last K kept
    RUN/base/metrics.jsonl  one line per step ({"type": "train", ...}) and per validation ("val")
    RUN/base/final/         the base model (config.json, model.safetensors, meta.json with `preset`)
    RUN/base/samples.json   greedy continuations of a few Korean prompts
    RUN/base/done.json      summary, written last

Runs alone or under `torchrun --nproc_per_node=N` (DDP): each rank takes its own slice of every
global micro-batch, rank 0 writes files. Checkpoints found without done.json are resumed, so a
killed run continues exactly where its last checkpoint left it.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saessak.errors import UserError

STAGE = "base"
SAMPLE_PROMPTS = ["대한민국의 수도는", "옛날 옛적에", "오늘은 날씨가", "컴퓨터 프로그램을"]


@dataclass
class PretrainOptions:
    run: str
    preset: str
    max_steps: int | None = None
    resume: bool = False  # require a checkpoint to resume from (resuming is automatic anyway)
    force: bool = False  # start over: drop checkpoints, metrics, final model and shards
    device: str | None = None  # None: CUDA if available, else CPU
    dtype: str | None = None  # autocast dtype; None: the preset's
    compile: bool | None = None  # torch.compile; None: the preset's
    seed: int = 1337
    batch_size: int | None = None  # per-process micro-batch (sequences); None: the preset's
    grad_accum: int | None = None
    val_every: int | None = None
    ckpt_every: int | None = None
    samples: bool = True
    quiet: bool = False


def run_pretrain(opts: PretrainOptions) -> dict[str, Any]:
    """Run (or resume, or skip) the pretraining stage; returns the done.json summary."""
    import torch

    from saessak import shards, training
    from saessak.ledger import StageTimer
    from saessak.presets import get_preset, model_config
    from saessak.runfolder import RunFolder
    from saessak.tokenizer import Tokenizer

    preset = get_preset(opts.preset)
    p = _resolve(preset, opts)
    rf = RunFolder(opts.run)
    if rf.is_done(STAGE) and not opts.force:
        return {**rf.done_summary(STAGE), "skipped": True}
    rf.require("tokenizer", "pretrain")
    tok = Tokenizer.load(rf.tokenizer_json)
    tok_sha = shards.file_sha256(rf.tokenizer_json)
    stage_dir = rf.stage_dir(STAGE)
    shard_dir = stage_dir / "shards"

    info = training.init_distributed(opts.device)
    try:
        p = dataclasses.replace(p, dtype=training.resolve_dtype(info.device, p.dtype))
        timer = StageTimer(rf.root, "pretrain", device=info.device)
        # Rank 0 prepares the folder and shards; an error there is re-raised on every rank.
        err = None
        if info.is_main:
            try:
                _prepare(rf, opts, tok, tok_sha, shard_dir)
            except UserError as e:
                err = str(e)
        err = training.broadcast_object(err, info)
        if err:
            raise UserError(err)
        meta = shards.read_meta(shard_dir)
        shards.check_matches(meta, shard_dir, tok, tok_sha)
        train_sampler = shards.SequenceSampler(shards.open_split(shard_dir, meta, "train"), p.seq_len, opts.seed)
        val_shards = shards.open_split(shard_dir, meta, "val")
        token_bytes = torch.from_numpy(shards.token_byte_lengths(tok))

        cfg = model_config(preset, tok.vocab_size)
        torch.manual_seed(opts.seed)
        from saessak.model import Llama

        model = Llama(cfg)
        model.init_weights(opts.seed)
        model.to(info.device)
        optimizer = training.build_optimizer(model, p.lr, p.weight_decay)

        start_step, tokens_before = 0, 0
        ckpt = training.latest_checkpoint(rf.root, STAGE)
        if opts.resume and ckpt is None:
            raise UserError(f"{stage_dir}: --resume given but there is no checkpoint to resume from")
        metrics = training.MetricsLog(stage_dir / "metrics.jsonl", enabled=info.is_main)
        if ckpt is not None:
            state = training.load_checkpoint(ckpt, model, optimizer)
            _check_loop_state(ckpt, state, p, opts.seed, info.world)
            start_step, tokens_before = state["step"], state["tokens"]
            metrics.truncate_after(start_step)
        else:
            metrics.reset()

        train_model = torch.compile(model) if p.compile else model
        train_model = training.wrap_ddp(train_model, info)

        B, A, T, W = p.batch_size, p.grad_accum, p.seq_len, info.world
        tokens_per_step = B * A * T * W
        flops_per_token = cfg.flops_per_token(T)
        peak_device = "cpu" if info.device.startswith("cpu") else info.device
        peak = training.peak_flops(peak_device, p.dtype)
        progress = training.Progress(p.max_steps, start_step, every=max(1, p.max_steps // 40))
        if info.is_main and not opts.quiet:
            progress.message(
                f"pretrain: preset {preset.name}, {cfg.num_parameters():,} params, {tokens_per_step:,} tokens/step, "
                f"{p.max_steps} steps, {p.dtype}{' compiled' if p.compile else ''}, {W} process(es) on {info.device}"
                + (f", resuming at step {start_step}" if start_step else ""))

        def loss_fn(m, batch):
            x, y = batch
            return m(x, targets=y)

        last_val = None
        train_seconds = 0.0
        step = start_step
        losses: list[float] = []
        for step in range(start_step, p.max_steps):
            t0 = time.perf_counter()
            lr = training.lr_at(step, p.max_steps, p.lr, p.warmup_steps, p.min_lr_frac)
            training.set_lr(optimizer, lr)
            first = step * A * B * W
            micro = []
            for a in range(A):
                x, y = train_sampler.batch(first + (a * W + info.rank) * B, B)
                micro.append((x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)))
            res = training.train_step(train_model, optimizer, micro, loss_fn, device=info.device,
                                      dtype=p.dtype, grad_clip=p.grad_clip)
            (loss_sum,) = training.all_reduce_sum([res.loss], info)
            loss = loss_sum / W
            if not math.isfinite(loss):
                raise RuntimeError(f"pretrain: loss is {loss} at step {step + 1}; lower the learning rate")
            dt = time.perf_counter() - t0
            train_seconds += dt
            tok_s = tokens_per_step / dt
            mfu = flops_per_token * tok_s / W / peak if peak else None
            done_steps = step + 1
            losses.append(loss)
            metrics.log({"type": "train", "step": done_steps, "loss": loss, "lr": lr, "grad_norm": res.grad_norm,
                         "tokens": tokens_before + (done_steps - start_step) * tokens_per_step,
                         "tok_per_s": round(tok_s, 1), "mfu": round(mfu, 4) if mfu else None})
            extra = f"val bpb {last_val:.4f}" if last_val is not None else ""
            if info.is_main and not opts.quiet:
                progress.update(done_steps, loss, tok_s, mfu, extra)
            if p.val_every and done_steps % p.val_every == 0 and done_steps < p.max_steps:
                last_val = evaluate_bpb(model, val_shards, token_bytes, T, p.val_tokens, info, p.dtype)
                metrics.log({"type": "val", "step": done_steps, "val_bpb": last_val})
            if p.ckpt_every and done_steps % p.ckpt_every == 0 and done_steps < p.max_steps:
                if info.is_main:
                    training.save_checkpoint(rf.root, STAGE, done_steps, model, optimizer, keep=p.keep_checkpoints,
                                             train_state=_loop_state(p, opts.seed, W, tokens_before, start_step,
                                                                     done_steps, tokens_per_step),
                                             meta={"preset": preset.name})
                training.barrier(info)

        steps_run = p.max_steps - start_step
        final_step = p.max_steps
        total_tokens = tokens_before + steps_run * tokens_per_step
        final_val = evaluate_bpb(model, val_shards, token_bytes, T, p.val_tokens, info, p.dtype)
        metrics.log({"type": "val", "step": final_step, "val_bpb": final_val})
        tokens_run = steps_run * tokens_per_step
        flops = flops_per_token * tokens_run
        tok_s = tokens_run / train_seconds if train_seconds else None
        # Measure the peak again now and keep the best: one taken while other jobs ran understates
        # it (shared machines), which would inflate the stage's MFU.
        training.peak_flops.cache_clear()
        peak = max(peak, training.peak_flops(peak_device, p.dtype))
        mfu = (flops / W / train_seconds / peak) if train_seconds and peak else None

        summary = {
            "preset": preset.name,
            "params": cfg.num_parameters(),
            "config": cfg.to_dict(),
            "steps": final_step,
            "tokens": total_tokens,
            "tokens_per_step": tokens_per_step,
            "final_loss": losses[-1] if losses else None,
            "final_val_bpb": final_val,
            "train_tokens_per_s": round(tok_s, 1) if tok_s else None,
            "mfu": round(mfu, 4) if mfu else None,
            "peak_flops": peak,
            "dtype": p.dtype,
            "compile": p.compile,
            "world_size": W,
            "device": info.device,
            "seed": opts.seed,
            "resumed_from_step": start_step or None,
            "train_split": {k: meta["splits"]["train"][k] for k in ("docs", "bytes")},
        }
        if info.is_main:
            final_meta = {"preset": preset.name, "stage": STAGE, "step": final_step, "tokens_seen": total_tokens,
                          "val_bpb": final_val, "seed": opts.seed, "tokenizer_sha256": tok_sha}
            training.save_final(rf.root, STAGE, model, final_meta)
            if opts.samples:
                summary["samples"] = generate_samples(model, tok, info.device, max_new_tokens=min(48, T // 2))
                from saessak.io import write_json

                write_json(stage_dir / "samples.json", summary["samples"])
            timer.finish(run_stage=STAGE, preset=preset.name, params=cfg.num_parameters(), tokens=tokens_run,
                         flops=flops, mfu=summary["mfu"], peak_flops=peak, dtype=p.dtype, steps=steps_run,
                         final_val_bpb=final_val)
            rf.mark_done(STAGE, summary)
            # Checkpoints exist to resume; a finished stage no longer needs them.
            shutil.rmtree(training.ckpt_root(rf.root, STAGE), ignore_errors=True)
            if not opts.quiet:
                progress.message(f"pretrain: done, val bpb {final_val:.4f}, {total_tokens:,} tokens; "
                                 f"model in {rf.final_checkpoint(STAGE)}")
        training.barrier(info)
        return summary
    finally:
        training.cleanup_distributed(info)


def _resolve(preset, opts: PretrainOptions):
    """The preset with the command line's overrides applied and checked."""
    over = {k: v for k, v in {
        "max_steps": opts.max_steps, "dtype": opts.dtype, "compile": opts.compile, "batch_size": opts.batch_size,
        "grad_accum": opts.grad_accum, "val_every": opts.val_every, "ckpt_every": opts.ckpt_every,
    }.items() if v is not None}
    for name in ("max_steps", "batch_size", "grad_accum"):
        if name in over and over[name] < 1:
            raise UserError(f"--{name.replace('_', '-')} {over[name]}: must be at least 1")
    for name in ("val_every", "ckpt_every"):
        if name in over and over[name] < 0:
            raise UserError(f"--{name.replace('_', '-')} {over[name]}: must be 0 (off) or more")
    if over.get("dtype", "auto") not in ("auto", "bf16", "fp32"):
        raise UserError(f"--dtype {over['dtype']!r}: must be auto, bf16 or fp32")
    return dataclasses.replace(preset, **over)


def _prepare(rf, opts: PretrainOptions, tok, tok_sha: str, shard_dir: Path) -> None:
    """Rank 0: honour --force, and build the token shards if missing."""
    from saessak import shards, training
    from saessak.corpus_split import require_split

    stage_dir = rf.stage_dir(STAGE)
    # Check the inputs before --force deletes anything: a bad split must not cost the old stage.
    splits = {s: require_split(rf.root, s, "pretrain") for s in ("train", "val")}
    if opts.force:
        rf.done_path(STAGE).unlink(missing_ok=True)
        for sub in (training.ckpt_root(rf.root, STAGE), shard_dir, rf.final_checkpoint(STAGE)):
            shutil.rmtree(sub, ignore_errors=True)
        (stage_dir / "metrics.jsonl").unlink(missing_ok=True)
    if (shard_dir / "meta.json").exists():
        shards.check_matches(shards.read_meta(shard_dir), shard_dir, tok, tok_sha)
        return
    shards.build_shards(shard_dir, tok, tok_sha, splits, seed=opts.seed)


def _loop_state(p, seed: int, world: int, tokens_before: int, start_step: int, done_steps: int,
                tokens_per_step: int) -> dict:
    return {"tokens": tokens_before + (done_steps - start_step) * tokens_per_step,
            "samples_seen": done_steps * p.grad_accum * p.batch_size * world,
            "seed": seed, "world_size": world, "batch_size": p.batch_size, "grad_accum": p.grad_accum,
            "seq_len": p.seq_len, "max_steps": p.max_steps}


def _check_loop_state(ckpt: Path, state: dict, p, seed: int, world: int) -> None:
    """Exact resume needs the same data order and global batch as the run that wrote the checkpoint."""
    want = {"seed": seed, "seq_len": p.seq_len,
            "global_batch": p.batch_size * p.grad_accum * world}
    have = {"seed": state.get("seed"), "seq_len": state.get("seq_len"),
            "global_batch": state.get("batch_size", 0) * state.get("grad_accum", 0) * state.get("world_size", 0)}
    bad = [f"{k} {have[k]} (now {want[k]})" for k in want if have[k] != want[k]]
    if bad:
        raise UserError(f"{ckpt}: checkpoint was written with {', '.join(bad)}; resume with the same settings "
                        f"or start over with --force")
    if state["step"] >= p.max_steps:
        raise UserError(f"{ckpt}: checkpoint is at step {state['step']}, at or past --max-steps {p.max_steps}")


def evaluate_bpb(model, val_shards, token_bytes, seq_len: int, max_tokens: int, info, dtype: str) -> float:
    """Bits per byte on the first `max_tokens` tokens of the val split (split over ranks).

    Sum of target-token losses (nats) / (ln 2 * UTF-8 bytes those targets stand for); special
    tokens (<s>) stand for no bytes and are left out of both sums, so the figure does not depend
    on the tokenizer.
    """
    import numpy as np
    import torch

    from saessak import training

    windows = []
    budget = max_tokens
    for shard in val_shards:
        for off in range(0, len(shard) - 1, seq_len):
            if budget <= 0:
                break
            w = np.asarray(shard[off: off + seq_len + 1], dtype=np.int64)
            if len(w) < 2:
                break
            windows.append(w)
            budget -= len(w) - 1
    mine = windows[info.rank::info.world]
    nats, nbytes = 0.0, 0
    was_training = model.training
    model.eval()
    batch = 8
    with torch.no_grad():
        for i in range(0, len(mine), batch):
            group = mine[i: i + batch]
            # Windows at the end of a shard may be shorter: pad targets with -100 (ignored).
            x = torch.zeros(len(group), seq_len, dtype=torch.long)
            y = torch.full((len(group), seq_len), -100, dtype=torch.long)
            for j, w in enumerate(group):
                x[j, : len(w) - 1] = torch.from_numpy(w[:-1])
                y[j, : len(w) - 1] = torch.from_numpy(w[1:])
            x, y = x.to(info.device), y.to(info.device)
            with training.autocast(info.device, dtype):
                per_tok = model(x, targets=y, loss_reduction="none")
            b = token_bytes.to(info.device)[y.clamp(min=0)] * (y >= 0)
            nats += float((per_tok.float() * (b > 0)).sum())
            nbytes += int(b.sum())
    model.train(was_training)
    nats, nbytes = training.all_reduce_sum([nats, float(nbytes)], info)
    return nats / (math.log(2) * nbytes) if nbytes else float("nan")


def generate_samples(model, tok, device: str, max_new_tokens: int = 48, prompts: list[str] | None = None) -> list[dict]:
    """Greedy continuations of a few Korean prompts, through the shared generation engine."""
    import torch

    prompts = prompts or SAMPLE_PROMPTS
    ids = [[tok.bos_id, *tok.encode(p)] for p in prompts]
    was_training = model.training
    model.eval()
    try:
        from saessak.engine import Engine, SamplingParams

        engine = Engine(model, tok, max_batch_size=len(ids), max_seq_len=model.config.max_position_embeddings,
                        device=device)
        outs = engine.generate(ids, SamplingParams(max_tokens=max_new_tokens, temperature=0.0))
        texts = [o.text for o in outs]
    except ImportError:  # engine not available in this checkout: a plain greedy loop
        texts = []
        with torch.no_grad():
            for seq in ids:
                cur = list(seq)
                for _ in range(max_new_tokens):
                    logits = model(torch.tensor([cur[-model.config.max_position_embeddings:]], device=device))
                    nxt = int(logits[0, -1].argmax())
                    if nxt in (tok.eos_id, tok.eot_id):
                        break
                    cur.append(nxt)
                texts.append(tok.decode(cur[len(seq):]))
    finally:
        model.train(was_training)
    return [{"prompt": p, "completion": t} for p, t in zip(prompts, texts)]
