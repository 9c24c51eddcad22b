"""Resumable checkpoints of a training stage, `RUN/<stage>/ckpt/step_NNNNNN/`, and its final model.

A checkpoint is the model (saessak.model.checkpoint: config.json + model.safetensors) plus
`train_state.pt` (optimizer, RNG states, step, and the loop's own position), written atomically
as one folder; the last K are kept. The final model is `RUN/<stage>/final/`.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from saessak.errors import UserError
from saessak.model.checkpoint import load_config, read_weights, save_model, unwrap

CKPT_DIR = "ckpt"
TRAIN_STATE = "train_state.pt"
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


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


def ckpt_root(stage_dir: str | os.PathLike) -> Path:
    return Path(stage_dir) / CKPT_DIR


def list_checkpoints(stage_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints (folders are renamed into place whole), oldest first."""
    root = ckpt_root(stage_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / TRAIN_STATE).exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(stage_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(stage_dir)
    return found[-1][1] if found else None


def save_checkpoint(stage_dir: str | os.PathLike, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, train_state: dict[str, Any] | None = None,
                    keep: int = 2, meta: dict[str, Any] | None = None) -> Path:
    """Write `<stage_dir>/ckpt/step_NNNNNN/` atomically (call on rank 0 only); prune to the last `keep`.

    `train_state` holds whatever the loop needs to continue exactly (data position, counters);
    the optimizer state, RNG states and step are added here.
    """
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "loop": dict(train_state or {}),
        "config": unwrap(model).config.to_dict(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    path = ckpt_root(stage_dir) / f"step_{step:06d}"
    save_model(path, model, meta={"step": step, **(meta or {})}, extra_files={TRAIN_STATE: buf.getvalue()})
    for _, old in list_checkpoints(stage_dir)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    # Temporary folders of saves that a kill interrupted (only rank 0 writes here, so none is live).
    for tmp in ckpt_root(stage_dir).glob(".step_*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer/RNG) into `model` in place; returns the loop state with `step`.

    A checkpoint written for another model shape is a UserError, and nothing is loaded.
    """
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
    with torch.no_grad():
        inner.load_state_dict(read_weights(path, cfg), strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng:
        set_rng_state(state["rng"])
    return {**state["loop"], "step": state["step"]}


def _config_diff(a, b) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da[k]} vs {db.get(k)}" for k in da if da[k] != db.get(k)) or "unknown"


def save_final(stage_dir: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """The stage's finished model, `<stage_dir>/final/` (config.json, model.safetensors, meta.json)."""
    return save_model(Path(stage_dir) / "final", model, meta=meta)
