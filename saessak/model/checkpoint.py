"""Model checkpoint folders: `config.json` (ModelConfig, or DeepseekConfig: `"architecture":
"DeepseekV3ForCausalLM"`) + `model.safetensors` (Hugging Face names).

A Hugging Face folder reads the same way: its config.json (saessak/model/hf_config.py; a
deepseek_v3 one through `DeepseekConfig.from_hf_config`) and its weights in one `model.safetensors`
or in shards listed by `model.safetensors.index.json`. DeepSeek weights may come one module per
expert (DeepSeek's own checkpoints; stacked on reading) and without the MTP modules (what
transformers saves): the model is then built without them. Weights
are loaded in the dtype they are stored in (a bf16 checkpoint never passes through fp32) unless a
dtype is asked for, straight into a model built on the meta device.

A checkpoint folder is written atomically (built under a temporary name, then renamed), so a
folder that exists is complete. Training state (optimizer, RNG, data position) lives beside it
in `train_state.pt`, written by the training loops.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from saessak.errors import UserError
from saessak.io import atomic_dir
from saessak.model.deepseek import DeepseekConfig, stack_expert_weights
from saessak.model.llama import ModelConfig


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def model_state_for_save(model: torch.nn.Module, state: dict[str, torch.Tensor] | None = None
                         ) -> dict[str, torch.Tensor]:
    """State dict with Llama names; a tied lm_head is stored once (as HF does). `state` is one
    gathered already (a sharded model's, saessak.training.parallel.full_state_dict)."""
    model = unwrap(model)
    sd = {k: v.detach().contiguous().cpu() for k, v in (model.state_dict() if state is None else state).items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def save_model(path: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any] | None = None,
               extra_files: dict[str, bytes] | None = None, state: dict[str, torch.Tensor] | None = None) -> Path:
    """`state`: the weights to write instead of `model.state_dict()` (a sharded model's, gathered)."""
    from safetensors.torch import save_file

    inner = unwrap(model)
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_file(model_state_for_save(model, state), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg = inner.config.to_dict()
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        if meta:
            (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    return path


def load_config(path: str | os.PathLike) -> ModelConfig | DeepseekConfig:
    cfg_path = Path(path) / "config.json"
    if not cfg_path.exists():
        raise UserError(f"{path}: not a checkpoint folder (no config.json)")
    try:
        d = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{cfg_path}: invalid model config ({e})") from None
    if not isinstance(d, dict):
        raise UserError(f"{cfg_path}: invalid model config (not a JSON object)")
    from saessak.model.hf_config import from_hf, is_hf_config

    if is_hf_config(d):
        return from_hf(d, str(cfg_path))
    try:
        if d.get("architecture") == DeepseekConfig.architecture:
            cfg = DeepseekConfig.from_dict(d)
            try:
                cfg.validate()
            except UserError as e:
                raise UserError(f"{cfg_path}: {e}") from None
            return cfg
        return ModelConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise UserError(f"{cfg_path}: invalid model config ({e})") from None


def weight_files(path: str | os.PathLike) -> list[Path]:
    """The safetensors files of a checkpoint folder: model.safetensors, or the shards its index names."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
            raise UserError(f"{index}: not a valid safetensors index (weight_map: {e})") from None
        files = [path / n for n in names]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise UserError(f"{index}: weight_map names shards that are missing: {', '.join(missing)}")
        return files
    if (path / "model.safetensors").exists():
        return [path / "model.safetensors"]
    raise UserError(f"{path}: checkpoint has no model.safetensors (nor model.safetensors.index.json)")


def read_weights(path: str | os.PathLike, cfg: ModelConfig | DeepseekConfig, with_sources: bool = False):
    """The state dict of `path`'s weight files, with a tied lm_head filled back in; with
    `with_sources`, also which file each tensor came from. DeepSeek: per-expert weights stacked,
    the MTP modules' copies of the embedding and head (`model.layers.{L+i}.embed_tokens`,
    `.shared_head.head`, which are the model's own) dropped."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sd: dict[str, torch.Tensor] = {}
    sources: dict[str, Path] = {}
    for f in weight_files(path):
        try:
            part = load_file(str(f))
        except (SafetensorError, OSError) as e:
            raise UserError(f"{f}: not a readable safetensors file, truncated or damaged ({e})") from None
        sd.update(part)
        sources.update(dict.fromkeys(part, f))
    if isinstance(cfg, DeepseekConfig):
        sd, sources = _deepseek_layout(sd, sources)
    if cfg.tie_word_embeddings and "model.embed_tokens.weight" in sd:
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    return (sd, sources) if with_sources else sd


def _deepseek_layout(sd: dict[str, torch.Tensor], sources: dict[str, Path]):
    sd = {k: v for k, v in sd.items() if not k.endswith((".embed_tokens.weight", ".shared_head.head.weight"))
          or k == "model.embed_tokens.weight"}
    stacked = stack_expert_weights(sd)
    if stacked.keys() != sd.keys():
        for k in stacked.keys() - sd.keys():  # a stacked tensor comes from its experts' file
            prefix = k.rsplit(".", 1)[0] + "."
            sources[k] = next((f for name, f in sources.items() if name.startswith(prefix)), None)
    return stacked, sources


def without_missing_mtp(cfg, names) -> ModelConfig | DeepseekConfig:
    """A DeepSeek config whose weights have none of its MTP modules (a transformers save) as one
    without MTP; any other config as it is."""
    if isinstance(cfg, DeepseekConfig) and cfg.num_nextn_predict_layers:
        mtp = f"model.layers.{cfg.num_hidden_layers}."
        if not any(k.startswith(mtp) for k in names):
            return dataclasses.replace(cfg, num_nextn_predict_layers=0)
    return cfg


def check_shapes(expected: dict[str, tuple], found: dict[str, tuple], sources: dict[str, Path], where: Path) -> None:
    """Every tensor the config implies present with its shape, and nothing else (`found`: name -> shape)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        raise UserError(f"{where}: weights do not match config.json (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]})")
    for k, shape in expected.items():
        if tuple(found[k]) != tuple(shape):
            hint = " (vocab_size)" if k in ("model.embed_tokens.weight", "lm_head.weight") else ""
            raise UserError(f"{sources.get(k, where)}: {k} has shape {list(found[k])} but config.json{hint} "
                            f"gives {list(shape)}")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               expect_config: ModelConfig | DeepseekConfig | None = None,
               dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The model in `path` (Llama or DeepSeek, by its config), in its stored dtype unless `dtype`
    is given. (Router biases stay fp32 whatever the dtype, as transformers keeps them.)"""
    from saessak.model import build_model

    path = Path(path)
    cfg = load_config(path)
    if expect_config is not None and cfg != expect_config:
        raise UserError(f"{path}: checkpoint config {cfg} does not match the expected config {expect_config}")
    sd, sources = read_weights(path, cfg, with_sources=True)
    cfg = without_missing_mtp(cfg, sd)
    with torch.device("meta"):
        model = build_model(cfg)
    check_shapes({k: v.shape for k, v in model.state_dict().items()}, {k: v.shape for k, v in sd.items()},
                 sources, path)
    if dtype is not None:
        sd = {k: v if k.endswith("e_score_correction_bias") else v.to(dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.to(device)
