"""One optimizer step: AdamW, the learning-rate schedule, mixed precision and gradient accumulation.

- `build_optimizer`: AdamW, weight decay on matrices only, fused kernels (CUDA and CPU).
- `lr_at`: linear warm-up, then cosine decay to a floor.
- `autocast`: bf16 autocast on CPU and CUDA over fp32 master weights (or fp32); which of the two a
  stage uses is measured (saessak/model/precision.py; `precision_on_rank0` below).
- `train_step`: one optimizer step over micro-batches (accumulation, DDP no_sync, clipping).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

from saessak.errors import UserError
from saessak.model.checkpoint import unwrap
from saessak.training.parallel import clip_grad_norm, set_gradient_sync


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.1,
                    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with decay on matrices only (norm gains are not decayed); a tied embedding counts once.

    Fused AdamW (one kernel per parameter) on CUDA and on CPU, where it is the fastest path
    (docs/BENCHMARKS.md); torch without CPU fused kernels falls back to the per-tensor loop.
    """
    params = [p for p in unwrap(model).parameters() if p.requires_grad]  # parameters() dedups ties
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device in this torch
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)


def lr_at(step: int, max_steps: int, peak_lr: float, warmup_steps: int, min_lr_frac: float = 0.1) -> float:
    """LR for optimizer step `step` (0-based): linear warm-up to the peak, cosine decay to the floor."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    floor = peak_lr * min_lr_frac
    return floor + (peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def autocast(device: str, dtype: str = "bf16"):
    """bf16 autocast over fp32 master weights on CPU or CUDA; `fp32` is a no-op context."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype != "bf16":
        raise UserError(f"--dtype {dtype!r}: must be bf16 or fp32")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@dataclass
class StepResult:
    loss: float  # mean of the micro-batch losses on this process
    grad_norm: float  # total gradient norm before clipping


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Iterable[Any],
               loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], *, device: str = "cpu",
               dtype: str = "bf16", grad_clip: float = 1.0) -> StepResult:
    """One optimizer step with gradient accumulation.

    `loss_fn(model, batch)` returns the loss of one micro-batch (a mean over its tokens); each is
    divided by the number of micro-batches, so the step's gradient is the mean over them. Under DDP
    and FSDP gradients are synchronised only on the last micro-batch (no_sync before), then
    averaged over ranks. `grad_clip` <= 0 disables clipping (the norm is still reported).
    """
    batches = list(micro_batches)
    if not batches:
        raise ValueError("train_step needs at least one micro-batch")
    n = len(batches)
    total = 0.0
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(batches):
        with set_gradient_sync(model, i == n - 1):
            with autocast(device, dtype):
                loss = loss_fn(model, batch)
            (loss / n).backward()
        total += float(loss.detach())
    norm = clip_grad_norm(model.parameters(), grad_clip)  # torch picks foreach where it is fast
    optimizer.step()
    return StepResult(loss=total / n, grad_norm=norm)


def kernel_on_rank0(info, model, rows: int, precision: str, compiled: bool, fsdp: bool):
    """The linear kernel a training stage runs (saessak/model/kernels.py, mode "train"), measured by
    rank 0 and broadcast. aten wherever oneDNN's path does not apply: bf16 autocast (autocast picks
    the kernel), a compiled model (inductor's choice), FSDP (sharded DTensor weights)."""
    from dataclasses import asdict

    from saessak.model.kernels import KernelChoice, choose_linear_kernel
    from saessak.training.distributed import broadcast_object

    if precision != "fp32" or compiled or fsdp:
        why = "bf16 autocast" if precision != "fp32" else ("compiled" if compiled else "FSDP")
        return KernelChoice("aten", f"not-used ({why})")
    choice = choose_linear_kernel(model, str(info.device), rows, mode="train", distributed_ok=True) if info.is_main else None
    return KernelChoice(**broadcast_object(asdict(choice) if choice else None, info))


def precision_on_rank0(info, device: str, dtype: str | None, model_or_cfg=None, **kw):
    """`saessak.model.precision.choose_dtype` measured by rank 0 alone and broadcast: ranks timing at
    once on shared cores would skew each other and could disagree."""
    from dataclasses import asdict

    from saessak.model.precision import PrecisionChoice, choose_dtype
    from saessak.training.distributed import broadcast_object

    choice = choose_dtype(device, dtype, model_or_cfg, **kw) if info.is_main else None
    return PrecisionChoice(**broadcast_object(asdict(choice) if choice else None, info))
