"""Supervised fine-tuning stage: the pretrained model -> a chat model that answers tasks as `... 정답: <answer>`.

Data (data.py): worked solutions over the task families and the preset's levels, conversations
about the assistant, and optionally the user's chat data. Conversations are rendered with the
chat format's assistant-only loss mask and packed into rows with a block-diagonal mask (pack.py).
A held-out slice of the conversations gives the validation loss curve.

The user's chat data passes the door into training (saessak/data/ingest.py): personal data is
masked unless `keep_pii`, and done.json's "pii" holds the counts per source.

Outputs: RUN/sft/final/ (model), RUN/sft/metrics.jsonl, RUN/sft/ckpt/step_N/ (resume),
RUN/sft/done.json, and one ledger record. Skip, resume and --force follow the stage life-cycle
(saessak/training/lifecycle.py).
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import torch

from saessak import recipes
from saessak.data.ingest import Door
from saessak.errors import UserError
from saessak.model import is_deepseek
from saessak.model.deepseek import RouterTail, router_metrics, update_router_biases
from saessak.model.loading import load_stage
from saessak.model.lora import attach
from saessak.model.lora import finish as lora_finish
from saessak.pretrain.config import PretrainConfig
from saessak.runfolder import RunFolder
from saessak.sft import data as sft_data
from saessak.sft.config import SFTConfig
from saessak.sft.pack import block_causal_mask, pack
from saessak.tokenizer.chat_format import render
from saessak.training.distributed import all_reduce_sum, barrier, wrap_ddp
from saessak.training.lifecycle import StageRun, completed
from saessak.training.optim import autocast, build_optimizer, lr_at, set_lr
from saessak.model.kernels import linear_kernel, linear_layers
from saessak.training.optim import kernel_on_rank0, precision_on_rank0
from saessak.training.parallel import Parallel, clip_grad_norm, shard_model


def build_conversations(cfg: SFTConfig, data_file=None, hf_dataset=None, tasks_api=None,
                        door: Door | None = None) -> list[list[dict]]:
    """The project's task solutions and identity chats, plus the user's data through `door`."""
    if tasks_api is None:
        import saessak.tasks as tasks_api
    convs = sft_data.task_conversations(tasks_api.FAMILIES, cfg.task_items_per_family, cfg.seed,
                                        cfg.level_weights, tasks_api=tasks_api)
    convs += sft_data.identity_conversations(cfg.identity_items, cfg.seed)
    if data_file:
        convs += sft_data.load_jsonl_conversations(data_file, door=door)
    if hf_dataset:
        convs += sft_data.load_hf_conversations(hf_dataset, door=door)
    random.Random(cfg.seed).shuffle(convs)
    return convs


def steps_within(budget_s: float, elapsed_s: float, step: int, max_steps: int, step_s: float, val_s: float,
                 eval_every: int) -> int:
    """The most steps (at most `max_steps`, at least `step` + 1) whose rest ends within `budget_s`
    wall seconds, `elapsed_s` having passed at `step`: each further step costs `step_s` and every
    `eval_every`-th step, and the last, a validation pass of `val_s`."""
    per_step = step_s + val_s / eval_every
    more = int((budget_s - elapsed_s - val_s) // per_step) if per_step > 0 else max_steps
    return max(step + 1, min(max_steps, step + more))


def run_sft(run: str, preset: str | None = None, data_file=None, hf_dataset=None, *, resume: bool = False,
            force: bool = False, keep_pii: bool = False, tasks_api=None, log=print, parallel: Parallel | None = None,
            **overrides: Any) -> dict:
    """Run (or resume, or skip) SFT; `overrides` are SFTConfig fields by name (None: the recipe's).
    `keep_pii` trains on the user's data without masking personal data (warned, recorded);
    `parallel` is --fsdp and --activation-checkpointing (saessak/training/parallel.py)."""
    t_stage = time.perf_counter()
    rf = RunFolder(run)
    if (done := completed(rf, "sft", force, log)) is not None:
        return done
    preset = rf.preset(preset)
    cfg = recipes.stage_config(SFTConfig, preset, "sft", overrides)
    par = parallel or Parallel()
    with StageRun(rf, "sft", force=force, resume=resume, parallel=par) as st:
        info = st.info
        cfg.validate(info.world)
        # Full fine-tuning keeps fp32 master weights; under LoRA the frozen base keeps its stored dtype.
        # Under FSDP the model loads into host memory and only each rank's shards go to the device.
        model, tok = load_stage(rf, "pretrain", "sft", device="cpu" if par.fsdp else info.device,
                                dtype=None if cfg.lora_r else torch.float32)
        lora = attach(model, cfg)
        door = Door(keep_pii=keep_pii, stage="sft")
        convs = build_conversations(cfg, data_file, hf_dataset, tasks_api, door=door)
        door.report(log)
        n_val = max(1, int(len(convs) * cfg.val_fraction))
        rendered = [(r.ids, r.loss_mask) for r in (render(tok, c) for c in convs)]
        val_rows = pack(rendered[:n_val], cfg.seq_len, tok.pad_id)
        train_rows = pack(rendered[n_val:], cfg.seq_len, tok.pad_id)
        if len(train_rows) < cfg.batch_size:
            raise UserError(f"sft: only {len(train_rows)} packed rows, fewer than batch_size {cfg.batch_size}")
        st.begin()

        model.train()
        precision = precision_on_rank0(
            info, info.device, cfg.dtype or recipes.stage_config(PretrainConfig, preset, "pretrain").dtype,
            model.config, rows=cfg.batch_size // info.world * cfg.seq_len)
        dtype = precision.dtype
        log(f"sft: precision {precision.describe()}")
        shard_model(model, info, par, dtype)  # before the optimizer: it holds the shards
        # Compiled only where it was measured faster (the recipe says: cpu-tiny's SFT step 1.5x, docs/TRAINING.md);
        # not under LoRA or FSDP, whose wrappers it has not been checked with.
        compiled = cfg.compile and not cfg.lora_r and not par.fsdp
        ddp_model = wrap_ddp(torch.compile(model) if compiled else model, info)
        kernel = kernel_on_rank0(info, model, per_rank_rows := cfg.batch_size // info.world * cfg.seq_len, dtype,
                                 compiled, par.fsdp)
        kernel_layers = linear_layers(model) if kernel.kernel != "aten" else []
        log(f"sft: linear kernel {kernel.describe()} ({per_rank_rows} rows per micro-batch)")
        opt = build_optimizer(model, cfg.lr, cfg.weight_decay)
        step, tokens_trained = 0, 0
        max_steps, resized = cfg.max_steps, None
        state = st.restore(model, opt)
        if state is not None:
            step, tokens_trained = state["step"], state["tokens_trained"]
            # a count cut by the time budget stays cut: the LR schedule was set for it
            max_steps, resized = min(cfg.max_steps, state.get("max_steps", cfg.max_steps)), state.get("resized")
            log(f"sft: resuming from {st.resume_from} (step {step})")
        # The time budget is applied once, at the end of the warm-up (the cosine decay has not begun,
        # so the schedule set for a new count is the same so far), from the steps timed after the first
        # (which compiles) and one validation pass.
        size_at = min(max(cfg.warmup_steps, 3), max_steps - 1) if cfg.time_budget_s is not None else None
        step_times: list[float] = []
        step_before, tokens_before = step, tokens_trained  # what earlier attempts did (the ledger counts each attempt)
        router = RouterTail(cfg.max_steps // 10) if is_deepseek(model) else None  # routing, last 10 % of steps
        if router is None and cfg.bias_update_speed is not None:
            raise UserError(f"--bias-update-speed: a DeepSeek setting; {rf.final_checkpoint('pretrain')} is not a "
                            "DeepSeek model (it has no router)")

        per_rank = cfg.batch_size // info.world
        flops_per_token = model.config.flops_per_token(cfg.seq_len)
        log(f"sft: preset={preset} conversations={len(convs)} train_rows={len(train_rows)} "
            f"val_rows={len(val_rows)} steps={cfg.max_steps} batch={cfg.batch_size}x{cfg.seq_len}"
            + (" compiled" if compiled else ""))

        def loss_on(rows, m=ddp_model) -> tuple[torch.Tensor, int]:
            mask = block_causal_mask(rows.segment_ids.to(info.device))
            with autocast(info.device, dtype), linear_kernel(model, kernel.kernel, kernel_layers):
                per_tok = m(rows.input_ids.to(info.device), position_ids=rows.position_ids.to(info.device),
                            attn_mask=mask, targets=rows.targets.to(info.device), loss_reduction="none")
            return per_tok.sum(), rows.trained_tokens()

        def val_loss() -> float:
            model.eval()
            total, count = 0.0, 0
            with torch.no_grad():
                # Each global batch of rows split over the ranks like a training batch; a rank past the
                # end scores row 0 with weight 0 (under FSDP every rank must run every forward).
                for i in range(0, len(val_rows), cfg.batch_size):
                    first = i + info.rank * per_rank
                    idx = torch.arange(first, max(first, min(first + per_rank, len(val_rows))))
                    weight = 1 if len(idx) else 0
                    # the plain model: a compiled one would compile again for eval mode and odd batch sizes
                    s, n = loss_on(val_rows.batch(idx if len(idx) else torch.arange(1)), model)
                    total += weight * float(s)
                    count += weight * n
            total, count = all_reduce_sum([total, count], info)
            model.train()
            return total / max(1, count)

        t_loop = time.perf_counter()
        rec: dict = {}
        while step < max_steps:
            t0 = time.perf_counter()
            # Deterministic order from (seed, epoch): resuming at `step` sees the same batches.
            rows_per_epoch = len(train_rows) // cfg.batch_size
            epoch, pos = divmod(step, rows_per_epoch)
            order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(cfg.seed + epoch))
            batch_idx = order[pos * cfg.batch_size: (pos + 1) * cfg.batch_size]
            rows = train_rows.batch(batch_idx[info.rank * per_rank: (info.rank + 1) * per_rank])
            lr = lr_at(step, max_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
            set_lr(opt, lr)
            loss_sum, n_local = loss_on(rows)
            # Normalise by the trained tokens of the whole global batch, so every token weighs the same.
            (n_global,) = all_reduce_sum([n_local], info)
            # DDP averages gradients over ranks; multiply back so the result is sum / n_global.
            (loss_sum * info.world / max(1.0, n_global)).backward()
            gnorm = clip_grad_norm(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            update_router_biases(model, cfg.bias_update_speed)  # DeepSeek's balancing (no-op without MoE layers)
            if router is not None:
                router.add(model)
            step += 1
            tokens_trained += int(rows.input_ids.numel()) * info.world
            (loss_global,) = all_reduce_sum([float(loss_sum.detach())], info)
            rec = {"step": step, "loss": loss_global / max(1.0, n_global), "lr": lr, "grad_norm": float(gnorm),
                   "trained_tokens": int(n_global), "step_s": round(time.perf_counter() - t0, 4)}
            if step > step_before + 1:
                step_times.append(rec["step_s"])
            if step == size_at and resized is None and step_times:
                t_val = time.perf_counter()
                rec["val_loss"] = val_loss()
                val_s = time.perf_counter() - t_val
                step_s = sorted(step_times)[len(step_times) // 2]
                fit = steps_within(cfg.time_budget_s, time.perf_counter() - t_stage, step, max_steps, step_s, val_s,
                                   cfg.eval_every)
                (fit,) = all_reduce_sum([fit if info.is_main else 0], info)  # rank 0's count, on every rank
                resized = {"at_step": step, "from": max_steps, "to": int(fit), "step_s": round(step_s, 4),
                           "val_s": round(val_s, 3), "time_budget_s": cfg.time_budget_s,
                           "elapsed_s": round(time.perf_counter() - t_stage, 1)}
                if fit < max_steps:
                    log(f"sft: time budget {cfg.time_budget_s:g}s: {max_steps} steps at {step_s:.3f} s a step would "
                        f"not fit; cut to {int(fit)} (LR schedule set for {int(fit)})")
                max_steps = int(fit)
            if step % cfg.eval_every == 0 or step == max_steps:
                if "val_loss" not in rec:
                    rec["val_loss"] = val_loss()
                if router is not None:
                    rec["router"] = router_metrics(model)
                log(f"sft step {step}/{max_steps} loss {rec['loss']:.4f} val {rec['val_loss']:.4f} lr {lr:.2e}")
            st.metrics.log(rec)
            st.progress(steps=step - step_before, tokens=tokens_trained - tokens_before,
                        flops=flops_per_token * (tokens_trained - tokens_before))
            if step % cfg.ckpt_every == 0 and step < max_steps:
                st.checkpoint(step, model, opt, {"tokens_trained": tokens_trained, "max_steps": max_steps,
                                                 "resized": resized})
            barrier(info)

        summary = {"preset": preset, "steps": step, "tokens": tokens_trained,
                   "final_loss": rec.get("loss"), "final_val_loss": rec.get("val_loss"),
                   "conversations": len(convs), "train_rows": len(train_rows), "pii": door.record(),
                   "config": dataclasses.asdict(cfg), "precision": precision.facts(),
                   "linear_kernel": kernel.facts(), "max_steps": max_steps, "time_budget": resized,
                   "loop_s": round(time.perf_counter() - t_loop, 2)}
        moe_facts = router.summary(model) if router is not None else {}
        summary.update(moe_facts)
        meta = {"preset": preset, "stage": "sft", "step": step, "tokens_seen": tokens_trained, "parent": "pretrain"}
        attempt_tokens = tokens_trained - tokens_before
        model, footprint = lora_finish(model, lora, cfg, st.dir, str(rf.final_checkpoint("pretrain")), info.is_main, meta)
        return st.finish(model, meta, summary, **footprint, tokens=attempt_tokens,
                         flops=flops_per_token * attempt_tokens, steps=step - step_before, precision=precision.facts(),
                         final_val_loss=summary["final_val_loss"], **moe_facts)
