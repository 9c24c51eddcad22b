"""Pretraining stage: tokenizer + text splits -> the pretrained model (`RUN/pretrain/`).

    RUN/pretrain/shards/        token shards (shards.py) of the train and val splits
    RUN/pretrain/ckpt/step_N/   resumable checkpoints, last K kept
    RUN/pretrain/metrics.jsonl  one line per step ({"type": "train", ...}) and per validation ("val")
    RUN/pretrain/final/         the model (config.json, model.safetensors, meta.json with `preset`)
    RUN/pretrain/samples.json   greedy continuations of a few Korean prompts
    RUN/pretrain/done.json      summary, written last

Runs alone or under `torchrun --nproc_per_node=N` (DDP, or FSDP2 with --fsdp): each rank takes its
own slice of every global micro-batch, rank 0 writes files (under FSDP every rank writes its shards
of a checkpoint). Skip, resume and --force follow the stage life-cycle
(saessak/training/lifecycle.py); the token shards survive a fresh start and are checked against
the tokenizer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch

from saessak import recipes
from saessak.data.split import require_split
from saessak.errors import UserError
from saessak.io import file_sha256, write_json
from saessak.model import build_model as new_model
from saessak.model import is_deepseek, model_config
from saessak.model.deepseek import RouterTail, router_metrics, update_router_biases
from saessak.pretrain import shards
from saessak.pretrain.config import PretrainConfig
from saessak.pretrain.val import evaluate_bpb, generate_samples
from saessak.runfolder import RunFolder
from saessak.tokenizer import Tokenizer
from saessak.training.distributed import all_reduce_sum, barrier, broadcast_object, wrap_ddp
from saessak.training.lifecycle import StageRun, completed
from saessak.training.metrics import Progress, peak_flops
from saessak.training.optim import build_optimizer, lr_at, set_lr, train_step
from saessak.training.optim import precision_on_rank0
from saessak.training.parallel import Parallel, build_model, full_weights

STAGE = "pretrain"


def run_pretrain(run: str, preset: str, *, resume: bool = False, force: bool = False, device: str | None = None,
                 samples: bool = True, quiet: bool = False, parallel: Parallel | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """Run (or resume, or skip) the pretraining stage; returns the done.json summary.

    `overrides` are PretrainConfig fields by name (None: the preset's recipe value); `parallel`
    is --fsdp and --activation-checkpointing (saessak/training/parallel.py).
    """
    p = recipes.stage_config(PretrainConfig, preset, "pretrain", overrides)
    p.validate()
    rf = RunFolder(run)
    if (done := completed(rf, STAGE, force)) is not None:
        return done
    rf.require("tokenizer", "pretrain")
    tok = Tokenizer.load(rf.tokenizer_json)
    tok_sha = file_sha256(rf.tokenizer_json)
    splits = {s: require_split(rf.root, s, "pretrain") for s in ("train", "val")}

    par = parallel or Parallel()
    if par.fsdp and p.compile:
        raise UserError("--compile with --fsdp: not supported yet; leave one of them out")
    cfg = _model_config(preset, tok.vocab_size, p)  # a DeepSeek config that does not hold together stops here
    if par.fsdp and is_deepseek(cfg):
        raise UserError("--fsdp with --arch deepseek: not supported yet (FSDP initialisation does not set the "
                        "router-bias buffers); train DeepSeek models with DDP or one process")
    with StageRun(rf, STAGE, force=force, resume=resume, device=device, keep=("shards",), parallel=par) as st:
        info = st.info
        precision = precision_on_rank0(info, info.device, p.dtype, cfg, rows=p.batch_size * cfg.max_position_embeddings)
        p = dataclasses.replace(p, dtype=precision.dtype)
        shard_dir = st.dir / "shards"
        if not force and (shard_dir / "meta.json").exists():  # kept shards must fit this tokenizer
            shards.check_matches(shards.read_meta(shard_dir), shard_dir, tok, tok_sha)
        st.begin()
        # Rank 0 builds the shards; an error there is re-raised on every rank.
        err = None
        if info.is_main:
            try:
                _prepare_shards(shard_dir, tok, tok_sha, splits, p.seed)
            except UserError as e:
                err = str(e)
        err = broadcast_object(err, info)
        if err:
            raise UserError(err)
        meta = shards.read_meta(shard_dir)  # checked above, or just built from this tokenizer
        T = cfg.max_position_embeddings
        train_sampler = shards.SequenceSampler(shards.open_split(shard_dir, meta, "train"), T, p.seed)
        val_shards = shards.open_split(shard_dir, meta, "val")
        token_bytes = torch.from_numpy(shards.token_byte_lengths(tok))

        torch.manual_seed(p.seed)
        # Sharded before the optimizer (it holds the shards); under FSDP no rank builds the whole model.
        model = build_model(lambda: new_model(cfg), lambda m: m.init_weights(p.seed), info, par, p.dtype)
        router = RouterTail(p.max_steps // 10) if is_deepseek(cfg) else None  # routing over the last 10 % of steps
        optimizer = build_optimizer(model, p.lr, p.weight_decay)

        start_step, tokens_before = 0, 0
        state = st.restore(model, optimizer)
        if state is not None:
            _check_loop_state(st.resume_from, state, p, T, info.world)
            start_step, tokens_before = state["step"], state["tokens"]

        train_model = torch.compile(model) if p.compile else model
        train_model = wrap_ddp(train_model, info)

        B, A, W = p.batch_size, p.grad_accum, info.world
        tokens_per_step = p.tokens_per_step(T) * W
        flops_per_token = cfg.flops_per_token(T)
        peak_device = "cpu" if info.device.startswith("cpu") else info.device
        peak = peak_flops(peak_device, p.dtype)
        progress = Progress(p.max_steps, start_step, every=max(1, p.max_steps // 40))
        if info.is_main and not quiet:
            progress.message(
                f"pretrain: preset {preset}, {cfg.num_parameters():,} params, {tokens_per_step:,} tokens/step, "
                f"{p.max_steps} steps, {precision.describe()}{', compiled' if p.compile else ''}, {W} process(es) on "
                f"{info.device}"
                + (f", resuming at step {start_step}" if start_step else ""))

        def loss_fn(m, batch):
            x, y = batch
            return m(x, targets=y)

        last_val = None
        train_seconds = 0.0
        losses: list[float] = []
        for step in range(start_step, p.max_steps):
            t0 = time.perf_counter()
            lr = lr_at(step, p.max_steps, p.lr, p.warmup_steps, p.min_lr_frac)
            set_lr(optimizer, lr)
            first = step * A * B * W
            micro = []
            for a in range(A):
                x, y = train_sampler.batch(first + (a * W + info.rank) * B, B)
                micro.append((x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)))
            res = train_step(train_model, optimizer, micro, loss_fn, device=info.device, dtype=p.dtype,
                             grad_clip=p.grad_clip)
            if router is not None:  # aux-loss-free balancing: loads summed over ranks, the same step on each
                update_router_biases(model)
                router.add(model)
            (loss_sum,) = all_reduce_sum([res.loss], info)
            loss = loss_sum / W
            if not math.isfinite(loss):
                raise RuntimeError(f"pretrain: loss is {loss} at step {step + 1}; lower the learning rate")
            dt = time.perf_counter() - t0
            train_seconds += dt
            tok_s = tokens_per_step / dt
            mfu = flops_per_token * tok_s / W / peak if peak else None
            done_steps = step + 1
            losses.append(loss)
            tokens_run = (done_steps - start_step) * tokens_per_step  # this attempt's, for the ledger's heartbeat
            st.progress(steps=done_steps - start_step, tokens=tokens_run, flops=flops_per_token * tokens_run)
            st.metrics.log({"type": "train", "step": done_steps, "loss": loss, "lr": lr, "grad_norm": res.grad_norm,
                            "tokens": tokens_before + tokens_run,
                            "tok_per_s": round(tok_s, 1), "mfu": round(mfu, 4) if mfu else None,
                            **(_aux_losses(model) if router is not None else {})})
            extra = f"val bpb {last_val:.4f}" if last_val is not None else ""
            if info.is_main and not quiet:
                progress.update(done_steps, loss, tok_s, mfu, extra)
            if p.val_every and done_steps % p.val_every == 0 and done_steps < p.max_steps:
                last_val = evaluate_bpb(model, val_shards, token_bytes, T, p.val_tokens, info, p.dtype)
                st.metrics.log({"type": "val", "step": done_steps, "val_bpb": last_val,
                                **({"router": router_metrics(model)} if router is not None else {})})
            if p.ckpt_every and done_steps % p.ckpt_every == 0 and done_steps < p.max_steps:
                st.checkpoint(done_steps, model, optimizer, keep=p.keep_checkpoints, meta={"preset": preset},
                              loop_state=_loop_state(p, T, W, tokens_before + (done_steps - start_step) * tokens_per_step,
                                                     done_steps))
                barrier(info)

        steps_run = p.max_steps - start_step
        total_tokens = tokens_before + steps_run * tokens_per_step
        final_val = evaluate_bpb(model, val_shards, token_bytes, T, p.val_tokens, info, p.dtype)
        st.metrics.log({"type": "val", "step": p.max_steps, "val_bpb": final_val,
                        **({"router": router_metrics(model)} if router is not None else {})})
        tokens_run = steps_run * tokens_per_step
        flops = flops_per_token * tokens_run
        tok_s = tokens_run / train_seconds if train_seconds else None
        # Measure the peak again now and keep the best: one taken while other jobs ran understates
        # it (shared machines), which would inflate the stage's MFU.
        peak_flops.cache_clear()
        peak = max(peak, peak_flops(peak_device, p.dtype))
        mfu = (flops / W / train_seconds / peak) if train_seconds and peak else None

        summary = {
            "preset": preset,
            "params": cfg.num_parameters(),
            "config": cfg.to_dict(),
            "steps": p.max_steps,
            "tokens": total_tokens,
            "tokens_per_step": tokens_per_step,
            "final_loss": losses[-1] if losses else None,
            "final_val_bpb": final_val,
            "train_tokens_per_s": round(tok_s, 1) if tok_s else None,
            "mfu": round(mfu, 4) if mfu else None,
            "peak_flops": peak,
            "dtype": p.dtype,
            "precision": precision.facts(),
            "compile": p.compile,
            "world_size": W,
            "parallel": "fsdp" if par.fsdp else ("ddp" if info.distributed else "single"),
            "activation_checkpointing": par.activation_checkpointing,
            "device": info.device,
            "seed": p.seed,
            "resumed_from_step": start_step or None,
            "train_split": {k: meta["splits"]["train"][k] for k in ("docs", "bytes")},
        }
        aux = _aux_losses(model)
        moe_facts = ({**router.summary(model), "mtp_loss": aux.get("mtp_loss"), "main_loss": aux.get("main_loss")}
                     if router is not None else {})
        summary.update(moe_facts)
        if samples and is_deepseek(cfg) and not _engine_has_latent_cache():
            summary["samples"] = "skipped: the generation engine has no latent (MLA) cache yet"
        elif samples:
            with full_weights(model):  # every rank gathers (FSDP); rank 0 generates
                if info.is_main:
                    summary["samples"] = generate_samples(model, tok, info.device, max_new_tokens=min(48, T // 2))
                    write_json(st.dir / "samples.json", summary["samples"])
        final_meta = {"preset": preset, "stage": STAGE, "step": p.max_steps, "tokens_seen": total_tokens,
                      "val_bpb": final_val, "seed": p.seed, "tokenizer_sha256": tok_sha}
        st.finish(model, final_meta, summary, preset=preset, params=cfg.num_parameters(), tokens=tokens_run,
                  flops=flops, mfu=summary["mfu"], peak_flops=peak, dtype=p.dtype, precision=precision.facts(),
                  steps=steps_run,
                  final_val_bpb=final_val, **moe_facts)
        if info.is_main and not quiet:
            progress.message(f"pretrain: done, val bpb {final_val:.4f}, {total_tokens:,} tokens; "
                             f"model in {rf.final_checkpoint(STAGE)}")
        return summary


def _model_config(preset: str, vocab_size: int, p: PretrainConfig):
    """The preset's model for --arch (Llama or DeepSeek), DeepSeek knobs from the settings."""
    arch = p.arch or recipes.get(preset).shape.arch
    knobs = {k: v for k, v in p.deepseek_overrides().items() if v is not None}
    if arch != "deepseek" and knobs:
        name = next(iter(knobs))
        option = f"--deepseek {name}" if name in p.deepseek else f"--{name.replace('_', '-')}"
        raise UserError(f"{option}: a DeepSeek setting; this run trains a "
                        f"{arch} model (give --arch deepseek or a -deepseek preset)")
    return model_config(preset, vocab_size, arch, **knobs)


def _engine_has_latent_cache() -> bool:
    from saessak.model import engine

    return hasattr(engine._SlotCache, "update_latent")


def _aux_losses(model) -> dict:
    """DeepSeek's last training forward: its main and MTP losses (empty for a Llama)."""
    aux = getattr(model, "last_aux", None) or {}
    return {k: round(float(v), 6) for k, v in aux.items()}


def _prepare_shards(shard_dir: Path, tok, tok_sha: str, splits: dict[str, Path], seed: int) -> None:
    """Rank 0: build the token shards unless they are there (checked against the tokenizer above)."""
    if not (shard_dir / "meta.json").exists():
        shards.build_shards(shard_dir, tok, tok_sha, splits, seed=seed)


def _loop_state(p: PretrainConfig, seq_len: int, world: int, tokens: int, done_steps: int) -> dict:
    return {"tokens": tokens,
            "samples_seen": done_steps * p.grad_accum * p.batch_size * world,
            "seed": p.seed, "world_size": world, "batch_size": p.batch_size, "grad_accum": p.grad_accum,
            "seq_len": seq_len, "max_steps": p.max_steps}


def _check_loop_state(ckpt: Path, state: dict, p: PretrainConfig, seq_len: int, world: int) -> None:
    """Exact resume needs the same data order and global batch as the run that wrote the checkpoint."""
    want = {"seed": p.seed, "seq_len": seq_len, "global_batch": p.batch_size * p.grad_accum * world}
    have = {"seed": state.get("seed"), "seq_len": state.get("seq_len"),
            "global_batch": state.get("batch_size", 0) * state.get("grad_accum", 0) * state.get("world_size", 0)}
    bad = [f"{k} {have[k]} (now {want[k]})" for k in want if have[k] != want[k]]
    if bad:
        raise UserError(f"{ckpt}: checkpoint was written with {', '.join(bad)}; resume with the same settings "
                        f"or start over with --force")
    if state["step"] >= p.max_steps:
        raise UserError(f"{ckpt}: checkpoint is at step {state['step']}, at or past --max-steps {p.max_steps}")
