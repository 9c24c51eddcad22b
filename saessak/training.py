"""Training machinery shared by the model stages (pretrain, SFT, RL).

- `init_distributed`: the same script runs alone or under `torchrun`; with WORLD_SIZE > 1 it starts
  a gloo (CPU) or NCCL (CUDA) process group, and `wrap_ddp` applies DDP from outside the model.
- `build_optimizer`: AdamW, weight decay on matrices only, fused kernels (CUDA and CPU).
- `lr_at`: linear warm-up, then cosine decay to a floor.
- `autocast`: bf16 autocast on CPU and CUDA over fp32 master weights (or a no-op for fp32).
- `train_step`: one optimizer step over micro-batches (gradient accumulation, DDP no_sync, clipping).
- checkpoints `RUN/<stage>/ckpt/step_NNNNNN/`: model (saessak.checkpoint) + `train_state.pt`
  (optimizer, RNG, data position, step), written atomically as one folder; keep the last K.
- `MetricsLog` (JSONL, truncated back to the checkpoint on resume), `Progress` (one status line
  with loss, tokens/s, MFU, ETA), `peak_flops` (measured matmul peak for MFU), `save_final`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from saessak.errors import UserError

CKPT_DIR = "ckpt"
TRAIN_STATE = "train_state.pt"
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


# ----------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Read torchrun's environment; start the process group when there is more than one process.

    `device` None picks CUDA when available. Under torchrun on CUDA each process takes
    `cuda:LOCAL_RANK`; on CPU each process gets an equal share of the cores, so N processes do
    not oversubscribe the machine.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if world > 1:
        import torch.distributed as dist

        if not device.startswith("cuda"):
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(info.device).index] if info.device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few floats over ranks (identity in a single process)."""
    if not info.distributed:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value on every rank (e.g. an error message or a path decided by rank 0)."""
    if not info.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup_distributed(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- optimisation


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.1,
                    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with decay on matrices only (norm gains are not decayed); a tied embedding counts once.

    Fused AdamW (one kernel per parameter) on CUDA and on CPU: on 2 shared CPU cores the
    foreach path, made of many small multi-threaded ops, measured 4-5x slower per step than fused
    (each op waits for a thread the scheduler gave away); torch without CPU fused kernels falls
    back to the per-tensor loop.
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


def cpu_has_amx() -> bool:
    """True when the CPU exposes AMX tiles with bf16 (the kernel lists `amx_bf16` in its flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def resolve_dtype(device: str, dtype: str | None) -> str:
    """`auto` (or None): bf16 autocast where it is faster than fp32, i.e. on CUDA with bf16 support
    and on CPUs with AMX; fp32 otherwise (AVX-512 bf16 without AMX runs matmuls no faster than
    fp32 and pays for the casts, measured in docs/BENCHMARKS.md)."""
    if dtype not in (None, "auto"):
        if dtype not in ("bf16", "fp32"):
            raise UserError(f"--dtype {dtype!r}: must be auto, bf16 or fp32")
        return dtype
    if str(device).startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_amx() else "fp32"


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
    gradients are synchronised only on the last micro-batch (no_sync before), then averaged over
    ranks by DDP. `grad_clip` <= 0 disables clipping (the norm is still reported).
    """
    batches = list(micro_batches)
    if not batches:
        raise ValueError("train_step needs at least one micro-batch")
    n = len(batches)
    total = 0.0
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(batches):
        sync = i == n - 1
        ctx = model.no_sync() if (not sync and hasattr(model, "no_sync")) else contextlib.nullcontext()
        with ctx:
            with autocast(device, dtype):
                loss = loss_fn(model, batch)
            (loss / n).backward()
        total += float(loss.detach())
    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # torch picks foreach where it is fast
    optimizer.step()
    return StepResult(loss=total / n, grad_norm=float(norm))


# ----------------------------------------------------------------------------- checkpoints


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def ckpt_root(run_root: str | os.PathLike, stage: str) -> Path:
    return Path(run_root) / stage / CKPT_DIR


def list_checkpoints(run_root: str | os.PathLike, stage: str) -> list[tuple[int, Path]]:
    """Complete checkpoints (folders are renamed into place whole), oldest first."""
    root = ckpt_root(run_root, stage)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / TRAIN_STATE).exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_root: str | os.PathLike, stage: str) -> Path | None:
    found = list_checkpoints(run_root, stage)
    return found[-1][1] if found else None


def save_checkpoint(run_root: str | os.PathLike, stage: str, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, train_state: dict[str, Any] | None = None,
                    keep: int = 2, meta: dict[str, Any] | None = None) -> Path:
    """Write `RUN/<stage>/ckpt/step_NNNNNN/` atomically (call on rank 0 only); prune to the last `keep`.

    `train_state` holds whatever the loop needs to continue exactly (data position, counters);
    the optimizer state, RNG states and step are added here.
    """
    from saessak.checkpoint import save_model

    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "loop": dict(train_state or {}),
        "config": unwrap(model).config.to_dict(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    path = ckpt_root(run_root, stage) / f"step_{step:06d}"
    save_model(path, model, meta={"step": step, **(meta or {})}, extra_files={TRAIN_STATE: buf.getvalue()})
    for _, old in list_checkpoints(run_root, stage)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    # Temporary folders of saves that a kill interrupted (only rank 0 writes here, so none is live).
    for tmp in ckpt_root(run_root, stage).glob(".step_*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer/RNG) into `model` in place; returns the loop state with `step`.

    A checkpoint written for another model shape is a UserError, and nothing is loaded.
    """
    from safetensors.torch import load_file

    from saessak.checkpoint import load_config

    path = Path(path)
    inner = unwrap(model)
    cfg = load_config(path)
    if cfg != inner.config:
        raise UserError(f"{path}: checkpoint is for another model config ({_config_diff(cfg, inner.config)}); "
                        f"use --force to start over")
    state_path = path / TRAIN_STATE
    if not state_path.exists():
        raise UserError(f"{path}: no {TRAIN_STATE}; not a resumable checkpoint")
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    sd = load_file(str(path / "model.safetensors"))
    if inner.config.tie_word_embeddings:
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    with torch.no_grad():
        inner.load_state_dict(sd, strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng:
        set_rng_state(state["rng"])
    return {**state["loop"], "step": state["step"]}


def _config_diff(a, b) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da[k]} vs {db.get(k)}" for k in da if da[k] != db.get(k)) or "unknown"


def save_final(run_root: str | os.PathLike, stage: str, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """The stage's finished model, `RUN/<stage>/final/` (config.json, model.safetensors, meta.json)."""
    from saessak.checkpoint import save_model

    return save_model(Path(run_root) / stage / "final", model, meta=meta)


# ----------------------------------------------------------------------------- metrics, progress, MFU


class MetricsLog:
    """Append-only JSONL of per-step metrics (`RUN/<stage>/metrics.jsonl`), written by rank 0."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled:
            from saessak.io import append_jsonl

            append_jsonl(self.path, {**record, "time": round(time.time(), 3)})

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: a killed run may have logged steps its last checkpoint lacks."""
        if not self.enabled or not self.path.exists():
            return
        from saessak.io import read_jsonl, write_text
        import json

        kept = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) <= step]
        write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))

    def reset(self) -> None:
        if self.enabled:
            self.path.unlink(missing_ok=True)


class Progress:
    """A one-line status: step, loss, tokens/s, MFU, ETA; redrawn in place on a terminal."""

    def __init__(self, total_steps: int, start_step: int = 0, stream=None, every: int = 1):
        self.total = total_steps
        self.start_step = start_step
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = 1 if self.tty else max(1, every)
        self.t0 = time.perf_counter()

    def line(self, step: int, loss: float, tok_per_s: float, mfu: float | None, extra: str = "") -> str:
        done = step - self.start_step
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        width = 20
        filled = int(width * step / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        mfu_s = f" mfu {100 * mfu:.1f}%" if mfu is not None else ""
        return (f"[{bar}] {step}/{self.total} loss {loss:.4f} {tok_per_s:,.0f} tok/s{mfu_s} "
                f"eta {_fmt_secs(eta)}{(' ' + extra) if extra else ''}")

    def update(self, step: int, loss: float, tok_per_s: float, mfu: float | None, extra: str = "") -> None:
        if step % self.every and step != self.total:
            return
        text = self.line(step, loss, tok_per_s, mfu, extra)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            if step == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


def _fmt_secs(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@functools.lru_cache(maxsize=None)
def peak_flops(device: str = "cpu", dtype: str = "bf16", seconds: float = 0.4) -> float:
    """Measured dense matmul peak (FLOP/s) of this process's device and threads, in `dtype`.

    The best of a few square sizes, each timed for `seconds`; MFU = achieved / this. Measuring
    (instead of a datasheet figure) keeps MFU honest on shared or virtualised CPUs.
    """
    tdtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    dev = torch.device(device)
    sizes = (1024, 2048) if dev.type == "cpu" else (4096, 8192)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, dtype=tdtype, device=dev)
        b = torch.randn(n, n, dtype=tdtype, device=dev)
        for _ in range(2):
            a @ b
        _sync(dev)
        count, t0 = 0, time.perf_counter()
        while True:
            a @ b
            count += 1
            _sync(dev)
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        best = max(best, 2 * n**3 * count / dt)
    return best


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
