"""LoRA for SFT and RL through the `peft` library (its knob names: r, alpha, dropout, targets).

- `attach` freezes the model and injects peft's LoRA layers in place (the model stays saessak's
  Llama, so the engine, the loss and the checkpoints see the same module); the frozen base keeps
  its dtype (bf16 for an imported bf16 model) while the adapters train in fp32.
- `adapters_off` runs the base alone: GRPO's reference model under LoRA, no second copy.
- `merge` folds the adapters into the weights (the stage's final model, what `export hf` writes);
  `save_adapter` writes the adapter alone as peft saves it (adapter_config.json +
  adapter_model.safetensors), which peft and vLLM's LoRA support load.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path

from saessak.errors import UserError
from saessak.recipes import setting

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_DIR = "adapter"  # RUN/<stage>/adapter/: the adapter of a LoRA stage, beside final/


@dataclass
class LoraSettings:
    lora_r: int = setting(0, "LoRA rank; 0 trains every weight (full fine-tune)")
    lora_alpha: float = setting(16.0, "LoRA alpha: the update is scaled by alpha / r")
    lora_dropout: float = setting(0.0, "dropout on the LoRA branch's input")
    lora_targets: str = setting(",".join(TARGETS), "modules that get adapters, comma-separated")

    def lora_config(self):
        from peft import LoraConfig

        targets = [t.strip() for t in self.lora_targets.split(",") if t.strip()]
        bad = [t for t in targets if t not in (*TARGETS, "lm_head")]
        if bad or not targets:
            raise UserError(f"--lora-targets {self.lora_targets!r}: choose among {', '.join(TARGETS)}")
        if self.lora_r < 0 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise UserError(f"LoRA: --lora-r {self.lora_r} must be >= 0, --lora-alpha {self.lora_alpha} > 0, "
                            f"--lora-dropout {self.lora_dropout} in [0, 1)")
        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=targets, bias="none")


def attach(model, settings: LoraSettings):
    """peft's LoraModel around `model` (adapters trainable in fp32, the rest frozen); None when r == 0."""
    if not settings.lora_r:
        return None
    try:
        from peft import LoraModel
    except ImportError:
        raise UserError("--lora-r needs the `peft` package: pip install 'saessak[hf]'") from None
    config = settings.lora_config()
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraModel(model, config, "default")
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
            p.requires_grad_(True)
    return lora


@contextlib.contextmanager
def adapters_off(lora):
    """The base model alone for the duration (nothing is copied)."""
    if lora is None:
        yield
        return
    lora.disable_adapter_layers()
    try:
        yield
    finally:
        lora.enable_adapter_layers()


def counts(model) -> dict[str, int]:
    params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": params, "trainable_params": trainable}


def adapter_state(lora) -> dict:
    """The adapter tensors under the names peft saves them with (adapter name dropped)."""
    out = {}
    for name, p in lora.model.named_parameters():
        if "lora_" in name:
            out["base_model.model." + name.replace(".default", "")] = p.detach().contiguous().cpu()
    return out


def save_adapter(path: Path, lora, base: str) -> Path:
    """adapter_config.json + adapter_model.safetensors at `path` (atomically)."""
    from safetensors.torch import save_file

    from saessak.io import atomic_dir

    config = copy.copy(lora.peft_config["default"])
    config.base_model_name_or_path = base
    with atomic_dir(path) as tmp:
        save_file(adapter_state(lora), str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(str(tmp))  # peft's own adapter_config.json
    return path


def merge(lora):
    """The model with the adapters folded into its weights and the LoRA layers removed."""
    model = lora.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def finish(model, lora, settings: LoraSettings, stage_dir: Path, base: str, is_main: bool, meta: dict):
    """At a training stage's end: (the model to save, the ledger's footprint facts). Under LoRA the
    adapter is saved beside final/ (RUN/<stage>/adapter/) and the model saved is the merged one."""
    footprint = {**counts(model), **peak_memory_mb()}
    if lora is None:
        return model, footprint
    if is_main:
        save_adapter(Path(stage_dir) / ADAPTER_DIR, lora, base=base)
    meta["lora"] = {"r": settings.lora_r, "alpha": settings.lora_alpha, "dropout": settings.lora_dropout,
                    "targets": settings.lora_targets}
    return merge(lora), footprint


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (and of the GPU, when one is used), in MiB."""
    import torch

    from saessak.ledger import peak_memory_bytes

    out = {"peak_rss_mb": round(peak_memory_bytes("cpu") / 2**20, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(peak_memory_bytes(f"cuda:{torch.cuda.current_device()}") / 2**20, 1)
    return out


class BaseOnly:
    """The model with its adapters switched off on every call: GRPO's reference policy under LoRA."""

    def __init__(self, lora):
        self._lora = lora

    def __call__(self, *args, **kwargs):
        with adapters_off(self._lora):
            return self._lora.model(*args, **kwargs)

    # GRPO's log-probs run the body and the vocabulary projection apart (only where completions are):
    # both must run with the adapters off too, not reach the adapted model through __getattr__.
    def hidden_states(self, *args, **kwargs):
        with adapters_off(self._lora):
            return self._lora.model.hidden_states(*args, **kwargs)

    def lm_head(self, h):
        with adapters_off(self._lora):
            return self._lora.model.lm_head(h)

    def __getattr__(self, name):
        return getattr(self._lora.model, name)
