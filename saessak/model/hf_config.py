"""Hugging Face config.json <-> ModelConfig for the families saessak computes.

Supported: `LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`
(docs/ARCHITECTURE.md has the table of keys), and `DeepseekV3ForCausalLM` (model_type
deepseek_v3), read by `DeepseekConfig.from_hf_config` into a DeepseekConfig. The rule: a key that changes the maths is either
computed exactly by saessak/model/llama.py or refused with a UserError naming the key and its
value, so an import never produces silently wrong logits. Keys that only describe the file or the
training run (dtype, token ids, dropout, initializer range, use_cache, ...) are kept as they are
and written back on export.
"""

from __future__ import annotations

from typing import Any

from saessak.errors import UserError
from saessak.model.llama import ModelConfig

# architecture -> (model_type, what its attention has)
FAMILIES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
# Keys whose only harmless value is "off" (None, False, 0 or 1.0 for a multiplier).
_MUST_BE_OFF = {
    "attn_logit_softcapping": (None,), "final_logit_softcapping": (None,), "logit_softcapping": (None,),
    "embedding_multiplier": (None, 1, 1.0), "residual_multiplier": (None, 1, 1.0),
    "attention_multiplier": (None,), "logits_scaling": (None, 1, 1.0), "logit_scale": (None, 1, 1.0),
    "mlp_bias": (None, False), "quantization_config": (None,), "use_qk_norm": (None, False),
    "partial_rotary_factor": (None, 1, 1.0), "no_rope_layers": (None,), "use_mla": (None, False),
}
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def is_hf_config(d: dict) -> bool:
    return "architectures" in d or "model_type" in d


def _refuse(where: str, key: str, value: Any, why: str) -> UserError:
    return UserError(f"{where}: {key} = {value!r} is not supported ({why}); saessak would compute wrong logits")


def _rope(d: dict, where: str) -> tuple[float, dict | None]:
    """rope_theta and Llama 3 scaling from `rope_scaling` (transformers 4) or `rope_parameters` (5)."""
    theta = d.get("rope_theta")
    scaling = None
    for key in ("rope_scaling", "rope_parameters"):
        rs = d.get(key)
        if not rs:
            continue
        if not isinstance(rs, dict):
            raise _refuse(where, key, rs, "expected an object")
        kind = rs.get("rope_type", rs.get("type", "default"))
        theta = rs.get("rope_theta", theta)
        if kind == "default":
            continue
        if kind != "llama3":
            raise _refuse(where, f"{key}.rope_type", kind, "only default and llama3 RoPE are implemented")
        missing = [k for k in _LLAMA3_KEYS if k not in rs]
        if missing:
            raise UserError(f"{where}: {key} of type llama3 lacks {', '.join(missing)}")
        if rs.get("attention_factor") not in (None, 1, 1.0):
            raise _refuse(where, f"{key}.attention_factor", rs["attention_factor"], "llama3 scaling has none")
        scaling = {"rope_type": "llama3", **{k: rs[k] for k in _LLAMA3_KEYS}}
    return float(theta if theta is not None else 10000.0), scaling


def _sliding_window(d: dict, where: str, arch: str) -> None:
    """A sliding window shorter than the context changes attention: refuse it. Qwen's is off unless
    `use_sliding_window`; Mistral's applies whenever it is set."""
    window = d.get("sliding_window")
    context = d.get("max_position_embeddings", 0)
    uses = bool(d.get("use_sliding_window")) if arch.startswith("Qwen") else window is not None
    layer_types = d.get("layer_types") or []
    if arch.startswith("Qwen") and any(t == "sliding_attention" for t in layer_types):
        uses = True
    if uses and window is not None and window < context:
        raise _refuse(where, "sliding_window", window, f"a window shorter than max_position_embeddings {context}")


def is_deepseek_config(d: dict) -> bool:
    archs = d.get("architectures") or []
    return d.get("model_type") == "deepseek_v3" or (isinstance(archs, list) and "DeepseekV3ForCausalLM" in archs)


def _deepseek(d: dict, where: str):
    from saessak.model.deepseek import DeepseekConfig

    try:
        return DeepseekConfig.from_hf_config(d)
    except UserError as e:
        raise UserError(f"{where}: {str(e).removeprefix('config.json: ')}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: invalid field ({e})") from None


def from_hf(d: dict, where: str):
    """The ModelConfig (DeepseekConfig for DeepSeek-V3) of a Hugging Face config.json dict
    (refusing what saessak does not compute)."""
    if is_deepseek_config(d):
        return _deepseek(d, where)
    archs = d.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch is None:
        by_type = {v: k for k, v in FAMILIES.items()}
        arch = by_type.get(d.get("model_type"))
    if arch not in FAMILIES:
        raise UserError(f"{where}: architectures = {archs or d.get('model_type')!r} is not supported; "
                        f"saessak computes {', '.join(FAMILIES)}")
    for key, ok in _MUST_BE_OFF.items():
        if d.get(key) not in ok:
            raise _refuse(where, key, d[key], "not implemented")
    act = d.get("hidden_act", d.get("hidden_activation", "silu"))
    if act != "silu":
        raise _refuse(where, "hidden_act", act, "only silu (SwiGLU) is implemented")
    if d.get("pretraining_tp", 1) not in (None, 1):
        raise _refuse(where, "pretraining_tp", d["pretraining_tp"], "only 1 is implemented")
    _sliding_window(d, where, arch)
    theta, scaling = _rope(d, where)
    try:
        heads = int(d["num_attention_heads"])
        cfg = ModelConfig(
            vocab_size=int(d["vocab_size"]), hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]), num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=heads, num_key_value_heads=int(d.get("num_key_value_heads") or heads),
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)), rope_theta=theta,
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            initializer_range=float(d.get("initializer_range", 0.02)),
            architecture=arch, head_dim=int(d.get("head_dim") or 0),
            qkv_bias=arch == "Qwen2ForCausalLM" or bool(d.get("attention_bias", False)),
            o_bias=arch != "Qwen2ForCausalLM" and bool(d.get("attention_bias", False)),
            qk_norm=arch == "Qwen3ForCausalLM", rope_scaling=scaling, hf_config=dict(d),
        )
    except KeyError as e:
        raise UserError(f"{where}: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: invalid field ({e})") from None
    try:
        cfg.validate()
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
    return cfg


def checkpoint_dtype(cfg: ModelConfig):
    """The torch dtype the checkpoint says it holds (`torch_dtype`, or `dtype` in transformers 5)."""
    import torch

    d = getattr(cfg, "hf_config", None) or {}
    name = d.get("dtype") or d.get("torch_dtype") or "float32"
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(name), torch.float32)


def to_hf(cfg: ModelConfig, dtype: str | None = None) -> dict:
    """The config.json of an imported model after training: its own keys, the shape kept in step."""
    out = dict(cfg.hf_config or {})
    out.update({
        "architectures": [cfg.architecture], "model_type": FAMILIES[cfg.architecture],
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim, "tie_word_embeddings": cfg.tie_word_embeddings,
    })
    if dtype:
        for key in ("dtype", "torch_dtype"):
            if key in out or key == "dtype":
                out[key] = dtype
    return out
