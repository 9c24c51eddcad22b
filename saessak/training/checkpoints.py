"""Resumable checkpoints of a training stage, `RUN/<stage>/ckpt/step_NNNNNN/`, and its final model.

A checkpoint is the model (saessak.model.checkpoint: config.json + model.safetensors) plus
`train_state.pt` (optimizer, RNG states, step, and the loop's own position), written atomically
as one folder; the last K are kept. The final model is `RUN/<stage>/final/`.

Under FSDP (`--fsdp`) a checkpoint is sharded instead: every rank writes its own shards of the
weights and optimizer state with `torch.distributed.checkpoint` into `dcp/` (no rank ever holds
the whole model to save it), beside config.json and train_state.pt. Such a checkpoint loads into
any number of ranks, FSDP or one plain process: DCP reshards on load.
"""

from __future__ import annotations

import io
import json
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
DCP_DIR = "dcp"
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
    _prune(stage_dir, keep)
    return path


def _prune(stage_dir: str | os.PathLike, keep: int) -> None:
    """Keep the last `keep` checkpoints; drop the temporary folders of saves that a kill
    interrupted (called by rank 0 once every rank's save is done, so none is live)."""
    for _, old in list_checkpoints(stage_dir)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in ckpt_root(stage_dir).glob(".step_*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def save_sharded_checkpoint(stage_dir: str | os.PathLike, step: int, model: torch.nn.Module,
                            optimizer: torch.optim.Optimizer, info, train_state: dict[str, Any] | None = None,
                            keep: int = 2, meta: dict[str, Any] | None = None) -> Path:
    """Every rank calls this: its shards of the weights and optimizer state go to `dcp/` by
    torch.distributed.checkpoint; rank 0 adds config, meta and train state and renames the folder
    into place once all ranks are done (a kill before that leaves only a temporary folder)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from saessak.training.distributed import barrier

    root = ckpt_root(stage_dir)
    path = root / f"step_{step:06d}"
    tmp = root / f".step_{step:06d}.dcp.tmp"
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(info)
    dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)},
             checkpoint_id=str(tmp / DCP_DIR))
    barrier(info)
    if info.is_main:
        inner = unwrap(model)
        state = {"step": step, "format": "dcp", "world_size": info.world, "rng": rng_state(),
                 "loop": dict(train_state or {}), "config": inner.config.to_dict()}
        (tmp / "config.json").write_text(json.dumps(inner.config.to_dict(), indent=2) + "\n")
        (tmp / "meta.json").write_text(json.dumps({"step": step, **(meta or {})}, ensure_ascii=False, indent=2) + "\n")
        torch.save(state, tmp / TRAIN_STATE)  # last: a folder with train_state.pt is complete
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _prune(stage_dir, keep)
    barrier(info)
    return path


def _load_sharded(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """DCP shards into `model` (FSDP over any number of ranks, or one plain process) and optimizer."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)

    sd: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        sd["optim"] = get_optimizer_state_dict(model, optimizer)
    dcp.load(sd, checkpoint_id=str(path / DCP_DIR))
    set_model_state_dict(model, sd["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, sd["optim"])


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer/RNG) into `model` in place; returns the loop state with `step`.

    A checkpoint written for another model shape is a UserError, and nothing is loaded. Every
    rank calls this for a sharded (FSDP) model or checkpoint.
    """
    from saessak.training.parallel import is_fsdp

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
    if state.get("format") == "dcp":
        _load_sharded(path, model, optimizer)
    elif is_fsdp(model):
        raise UserError(f"{path}: checkpoint was written without --fsdp; resume it without --fsdp "
                        f"(or start over with --force)")
    else:
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


def save_final(stage_dir: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any],
               state: dict[str, torch.Tensor] | None = None) -> Path:
    """The stage's finished model, `<stage_dir>/final/` (config.json, model.safetensors, meta.json);
    `state` is the gathered state dict of a sharded model."""
    return save_model(Path(stage_dir) / "final", model, meta=meta, state=state)
