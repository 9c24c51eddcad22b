"""Model checkpoint folders: `config.json` (ModelConfig) + `model.safetensors` (Llama names).

A checkpoint folder is written atomically (built under a temporary name, then renamed), so a
folder that exists is complete. Training state (optimizer, RNG, data position) lives beside it
in `train_state.pt`, written by the training loops.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from saessak.errors import UserError
from saessak.io import atomic_dir
from saessak.model.llama import Llama, ModelConfig


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def model_state_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict with Llama names; a tied lm_head is stored once (as HF does)."""
    model = unwrap(model)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def save_model(path: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any] | None = None,
               extra_files: dict[str, bytes] | None = None) -> Path:
    from safetensors.torch import save_file

    inner = unwrap(model)
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_file(model_state_for_save(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg = inner.config.to_dict()
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        if meta:
            (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    return path


def load_config(path: str | os.PathLike) -> ModelConfig:
    cfg_path = Path(path) / "config.json"
    if not cfg_path.exists():
        raise UserError(f"{path}: not a checkpoint folder (no config.json)")
    try:
        return ModelConfig.from_dict(json.loads(cfg_path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise UserError(f"{cfg_path}: invalid model config ({e})") from None


def read_weights(path: str | os.PathLike, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict in `path`/model.safetensors, with a tied lm_head filled back in."""
    from safetensors.torch import load_file

    weights = Path(path) / "model.safetensors"
    if not weights.exists():
        raise UserError(f"{path}: checkpoint has no model.safetensors")
    sd = load_file(str(weights))
    if cfg.tie_word_embeddings:
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    return sd


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               expect_config: ModelConfig | None = None) -> Llama:
    path = Path(path)
    cfg = load_config(path)
    if expect_config is not None and cfg != expect_config:
        raise UserError(f"{path}: checkpoint config {cfg} does not match the expected config {expect_config}")
    sd = read_weights(path, cfg)
    model = Llama(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise UserError(f"{path / 'model.safetensors'}: does not match its config (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    return model.to(device)
