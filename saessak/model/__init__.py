"""The model, written for one device, and what runs it.

- llama.py       ModelConfig and the decoder with the maths and names of Hugging Face `LlamaForCausalLM`,
                 `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM` (switches, not copies)
- deepseek.py    DeepseekConfig and DeepSeek-V3 (MLA, MoE with aux-loss-free balancing, MTP) with the
                 names of Hugging Face `DeepseekV3ForCausalLM`
- hf_config.py   a Hugging Face config.json <-> ModelConfig / DeepseekConfig, refusing keys that would
                 change the maths
- hf_import.py   `saessak import hf PATH --run RUN`: an open checkpoint as a run's base model
- cli.py         the `import` command
- lora.py        LoRA through peft: attach, adapters off (GRPO's reference), merge, save the adapter
- checkpoint.py  checkpoint folders (config.json + model.safetensors or shards), `unwrap`
- loading.py     a finished model and its tokenizer from a run folder or a checkpoint folder
- engine.py      the one generation engine (batched KV cache, sampling, stops)
- kernels.py     the linear layers' matmul implementation (F.linear or oneDNN), chosen by measurement
- precision.py   fp32 or bf16, chosen by measurement
- sampler.py     the engine as RL rollouts and evaluation use it

`build_model(cfg)` is the one place a config becomes a model (Llama or DeepSeek by the config's
type); `model_config(preset, vocab_size, arch)` the one place a preset becomes a config.
Distribution (DDP, FSDP) is applied from outside, in saessak/training/.
"""

from __future__ import annotations

from typing import Union

import torch

from saessak.model.deepseek import DeepSeek, DeepseekConfig
from saessak.model.llama import Llama, ModelConfig

ARCHS = ("llama", "deepseek")
AnyConfig = Union[ModelConfig, DeepseekConfig]


def build_model(cfg: AnyConfig) -> torch.nn.Module:
    """`Llama(cfg)` or `DeepSeek(cfg)`, by the config's type (on the current default device)."""
    if isinstance(cfg, DeepseekConfig):
        return DeepSeek(cfg)
    if isinstance(cfg, ModelConfig):
        return Llama(cfg)
    raise TypeError(f"build_model: not a model config: {type(cfg).__name__}")


def is_deepseek(model_or_cfg) -> bool:
    """Whether a model (possibly wrapped by DDP / torch.compile) or a config is DeepSeek's."""
    cfg = model_or_cfg
    if isinstance(cfg, torch.nn.Module):
        from saessak.model.checkpoint import unwrap

        cfg = getattr(unwrap(cfg), "config", None)
    return isinstance(cfg, DeepseekConfig)


def model_config(preset: str, vocab_size: int | None = None, arch: str | None = None,
                 **deepseek_overrides) -> AnyConfig:
    """The config of a preset's recipe; `vocab_size` is the trained tokenizer's (default: the
    recipe's); `arch` (default: the recipe shape's) picks Llama or DeepSeek for the same shape
    (DeepSeek: `deepseek_config_for_shape` with the shape's knobs, then `deepseek_overrides`,
    None values left out). A DeepSeek config that does not hold together is a UserError."""
    from saessak import recipes
    from saessak.errors import UserError
    from saessak.model.deepseek import deepseek_config_for_shape
    from saessak.model.llama import model_config as llama_config

    shape = recipes.get(preset).shape
    arch = arch or shape.arch
    if arch not in ARCHS:
        raise UserError(f"--arch {arch!r}: choose one of {', '.join(ARCHS)}")
    if arch == "llama":
        return llama_config(preset, vocab_size)
    fields = shape.model_fields(vocab_size)
    knobs = {**dict(shape.deepseek), **{k: v for k, v in deepseek_overrides.items() if v is not None}}
    try:
        return deepseek_config_for_shape(fields["hidden_size"], shape.depth, fields["vocab_size"], shape.seq_len,
                                         shape.head_dim, tie_word_embeddings=shape.tie_word_embeddings, **knobs)
    except TypeError as e:  # a knob DeepseekConfig has no field for
        raise UserError(f"preset {preset!r}: bad deepseek setting ({e})") from None


__all__ = ["ARCHS", "DeepSeek", "DeepseekConfig", "Llama", "ModelConfig", "build_model", "is_deepseek",
           "model_config"]
