"""Supervised fine-tuning stage: base model -> chat model that answers tasks as `... 정답: <answer>`.

Data (saessak.sft_data): worked solutions over all task families and mixed levels, conversations
about the assistant, and optionally the user's chat data. Conversations are rendered with the
chat format's assistant-only loss mask and packed into rows with a block-diagonal mask
(saessak.sft_pack). A held-out slice of the conversations gives the validation loss curve.

Outputs: RUN/sft/final/ (model), RUN/sft/metrics.jsonl, RUN/sft/ckpt/step_N/ (resume),
RUN/sft/done.json, and one ledger record.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from dataclasses import dataclass, field

from saessak.errors import UserError
from saessak.presets import task_levels
from saessak.runfolder import RunFolder


@dataclass
class SFTConfig:
    max_steps: int
    batch_size: int  # packed rows per optimizer step (over all ranks)
    seq_len: int
    lr: float
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    task_items_per_family: int = 2000
    identity_items: int = 200
    # Level mix of the worked solutions: weight per level (presets.task_levels says which levels).
    level_weights: dict = field(default_factory=lambda: {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0})
    val_fraction: float = 0.05
    eval_every: int = 25
    ckpt_every: int = 100
    seed: int = 1234
    dtype: str | None = None  # autocast dtype (auto, bf16, fp32); None = the model preset's


# Defaults per preset name (the model presets live in saessak.presets). micro < 30 s (CI). cpu-tiny:
# 400 steps; 200 steps left held-out greedy accuracy at half (josa 25% vs 51%, spacing 5.5% vs
# 62.5%, docs/RESULTS.md), so the extra minutes are the best-spent ones of the speedrun.
SFT_PRESETS: dict[str, SFTConfig] = {
    "micro": SFTConfig(max_steps=20, batch_size=8, seq_len=128, lr=2e-3, warmup_steps=5,
                       task_items_per_family=40, identity_items=18, eval_every=10, ckpt_every=10),
    "cpu-tiny": SFTConfig(max_steps=800, batch_size=16, seq_len=256, lr=1.5e-3, warmup_steps=20,
                          task_items_per_family=4000, identity_items=200, eval_every=25, ckpt_every=50,
                          level_weights={lvl: 1.0 for lvl in task_levels("cpu-tiny")}),
    "cpu-small": SFTConfig(max_steps=800, batch_size=32, seq_len=512, lr=1e-3, task_items_per_family=6000,
                           identity_items=500, eval_every=50, ckpt_every=200),
}
# GPU presets (d12, d20, ...) share one recipe; only the model differs.
GPU_SFT = SFTConfig(max_steps=2000, batch_size=64, seq_len=1024, lr=3e-4, warmup_steps=100,
                    task_items_per_family=50000, identity_items=2000, eval_every=100, ckpt_every=500)


def config_for(preset: str, **overrides) -> SFTConfig:
    cfg = SFT_PRESETS.get(preset, GPU_SFT)
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _model_dtype(preset: str) -> str:
    from saessak.presets import PRESETS

    return PRESETS[preset].dtype if preset in PRESETS else "auto"


def build_conversations(cfg: SFTConfig, data_file=None, hf_dataset=None, tasks_api=None) -> list[list[dict]]:
    from saessak import sft_data

    if tasks_api is None:
        import saessak.tasks as tasks_api
    convs = sft_data.task_conversations(tasks_api.FAMILIES, cfg.task_items_per_family, cfg.seed,
                                        cfg.level_weights, tasks_api=tasks_api)
    convs += sft_data.identity_conversations(cfg.identity_items, cfg.seed)
    if data_file:
        convs += sft_data.load_jsonl_conversations(data_file)
    if hf_dataset:
        convs += sft_data.load_hf_conversations(hf_dataset)
    random.Random(cfg.seed).shuffle(convs)
    return convs


def run_sft(run: str, preset: str | None = None, data_file=None, hf_dataset=None, max_steps: int | None = None,
            resume: bool = False, force: bool = False, tasks_api=None, log=print) -> dict:
    import torch

    from saessak import training as tr
    from saessak.chat_format import render
    from saessak.ledger import StageTimer
    from saessak.sft_pack import block_causal_mask, pack
    from saessak.stage_model import load_stage, preset_of

    rf = RunFolder(run)
    if rf.is_done("sft") and not force:
        log(f"sft: {rf.done_path('sft')} exists; skipping (use --force to redo)")
        return rf.done_summary("sft")
    preset = preset_of(rf, preset)
    cfg = config_for(preset, max_steps=max_steps)
    if cfg.max_steps < 1:
        raise UserError(f"--max-steps {cfg.max_steps}: must be at least 1")
    info = tr.init_distributed()
    if cfg.batch_size % info.world:
        raise UserError(f"sft batch_size {cfg.batch_size}: not divisible by the {info.world} processes")
    model, tok = load_stage(rf, "base", "sft", device=info.device)
    convs = build_conversations(cfg, data_file, hf_dataset, tasks_api)

    stage_dir = rf.stage_dir("sft")
    ckpt_root = stage_dir / "ckpt"
    metrics_path = stage_dir / "metrics.jsonl"
    metrics = tr.MetricsLog(metrics_path, enabled=info.is_main)
    start_ckpt = tr.latest_checkpoint(run, "sft") if resume else None
    if info.is_main and start_ckpt is None:
        # A fresh start: old progress of this stage would be misleading next to the new run.
        shutil.rmtree(ckpt_root, ignore_errors=True)
        metrics.reset()
        rf.done_path("sft").unlink(missing_ok=True)
    tr.barrier(info)

    timer = StageTimer(run, "sft", device=info.device)
    n_val = max(1, int(len(convs) * cfg.val_fraction))
    rendered = [(r.ids, r.loss_mask) for r in (render(tok, c) for c in convs)]
    val_rows = pack(rendered[:n_val], cfg.seq_len, tok.pad_id)
    train_rows = pack(rendered[n_val:], cfg.seq_len, tok.pad_id)
    if len(train_rows) < cfg.batch_size:
        raise UserError(f"sft: only {len(train_rows)} packed rows, fewer than batch_size {cfg.batch_size}")

    model.train()
    ddp_model = tr.wrap_ddp(model, info)
    opt = tr.build_optimizer(model, cfg.lr, cfg.weight_decay)
    step, tokens_trained = 0, 0
    if start_ckpt is not None:
        state = tr.load_checkpoint(start_ckpt, model, opt)
        step, tokens_trained = state["step"], state["tokens_trained"]
        metrics.truncate_after(step)
        log(f"sft: resuming from {start_ckpt} (step {step})")

    per_rank = cfg.batch_size // info.world
    dtype = tr.resolve_dtype(info.device, cfg.dtype or _model_dtype(preset))
    flops_per_token = model.config.flops_per_token(cfg.seq_len)
    log(f"sft: preset={preset} conversations={len(convs)} train_rows={len(train_rows)} "
        f"val_rows={len(val_rows)} steps={cfg.max_steps} batch={cfg.batch_size}x{cfg.seq_len}")

    def loss_on(rows) -> tuple[torch.Tensor, int]:
        mask = block_causal_mask(rows.segment_ids.to(info.device))
        with tr.autocast(info.device, dtype):
            per_tok = ddp_model(rows.input_ids.to(info.device), position_ids=rows.position_ids.to(info.device),
                                attn_mask=mask, targets=rows.targets.to(info.device), loss_reduction="none")
        n = rows.trained_tokens()
        return per_tok.sum(), n

    def val_loss() -> float:
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(info.rank, len(val_rows), cfg.batch_size):
                idx = torch.arange(i, min(i + per_rank, len(val_rows)))
                s, n = loss_on(val_rows.batch(idx))
                total += float(s)
                count += n
        total, count = tr.all_reduce_sum([total, count], info)
        model.train()
        return total / max(1, count)

    t_loop = time.perf_counter()
    rec: dict = {}
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        # Deterministic order from (seed, epoch): resuming at `step` sees the same batches.
        rows_per_epoch = len(train_rows) // cfg.batch_size
        epoch, pos = divmod(step, rows_per_epoch)
        order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        batch_idx = order[pos * cfg.batch_size: (pos + 1) * cfg.batch_size]
        rows = train_rows.batch(batch_idx[info.rank * per_rank: (info.rank + 1) * per_rank])
        lr = tr.lr_at(step, cfg.max_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
        tr.set_lr(opt, lr)
        loss_sum, n_local = loss_on(rows)
        # Normalise by the trained tokens of the whole global batch, so every token weighs the same.
        (n_global,) = tr.all_reduce_sum([n_local], info)
        # DDP averages gradients over ranks; multiply back so the result is sum / n_global.
        (loss_sum * info.world / max(1.0, n_global)).backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_trained += int(rows.input_ids.numel()) * info.world
        (loss_global,) = tr.all_reduce_sum([float(loss_sum.detach())], info)
        rec = {"step": step, "loss": loss_global / max(1.0, n_global), "lr": lr, "grad_norm": float(gnorm),
               "trained_tokens": int(n_global), "step_s": round(time.perf_counter() - t0, 4)}
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            rec["val_loss"] = val_loss()
            log(f"sft step {step}/{cfg.max_steps} loss {rec['loss']:.4f} val {rec['val_loss']:.4f} lr {lr:.2e}")
        metrics.log(rec)
        if step % cfg.ckpt_every == 0 and step < cfg.max_steps and info.is_main:
            tr.save_checkpoint(run, "sft", step, model, opt, {"tokens_trained": tokens_trained})
        tr.barrier(info)

    summary = {"preset": preset, "steps": step, "tokens": tokens_trained,
               "final_loss": rec.get("loss"), "final_val_loss": rec.get("val_loss"),
               "conversations": len(convs), "train_rows": len(train_rows), "config": dataclasses.asdict(cfg),
               "loop_s": round(time.perf_counter() - t_loop, 2)}
    if info.is_main:
        meta = {"preset": preset, "stage": "sft", "step": step, "tokens_seen": tokens_trained,
                "parent": "base"}
        tr.save_final(run, "sft", model, meta)
        flops = flops_per_token * tokens_trained
        timer.finish(params=model.config.num_parameters(), tokens=tokens_trained, flops=flops,
                     steps=step, final_val_loss=summary["final_val_loss"])
        rf.mark_done("sft", summary)
        shutil.rmtree(ckpt_root, ignore_errors=True)
    tr.barrier(info)
    tr.cleanup_distributed(info)
    return summary
