"""Pretraining settings: the defaults here, each preset's values in saessak/recipes.py, and any
command-line option of the same name on top (`saessak pretrain --help` lists them)."""

from __future__ import annotations

from dataclasses import dataclass

from saessak.errors import UserError
from saessak.recipes import check_min, setting

DTYPES = ("auto", "bf16", "fp32")


def _parse_deepseek(text: str) -> dict:
    from saessak.model.deepseek import parse_knobs  # torch: only when the option is given

    return parse_knobs(text)


@dataclass
class PretrainConfig:
    max_steps: int = setting(400, "optimizer steps of a full run")
    batch_size: int = setting(8, "sequences per micro-batch per process")
    grad_accum: int = setting(1, "micro-batches per optimizer step (per process)")
    lr: float = setting(3e-3, "peak learning rate (AdamW)")
    min_lr_frac: float = setting(0.1, "the cosine decay ends at lr x this")
    warmup_steps: int = setting(20, "linear warm-up steps")
    weight_decay: float = setting(0.1, "AdamW weight decay (matrices only)")
    grad_clip: float = setting(1.0, "gradient norm clipping (0: off)")
    val_every: int = setting(100, "steps between validations (0: only at the end)")
    val_tokens: int = setting(32768, "tokens of the val split scored at each validation")
    ckpt_every: int = setting(100, "steps between resumable checkpoints (0: none)")
    keep_checkpoints: int = setting(2, "resumable checkpoints kept")
    dtype: str = setting("auto", "autocast dtype over fp32 master weights; auto = bf16 on CUDA, and on a "
                                 "CPU whichever of bf16 and fp32 is measured faster on the model's own matmuls "
                                 "(cached per machine)", choices=DTYPES)
    compile: bool = setting(False, "torch.compile the model")
    seed: int = setting(1337, "seed of the weights and the data order")
    arch: str | None = setting(None, "model architecture: llama, or deepseek (MLA + MoE + MTP, "
                                     "saessak/model/deepseek.py) at the same depth (default: the preset's)",
                               choices=("llama", "deepseek"))
    bias_update_speed: float | None = setting(None, "deepseek: router bias step per optimizer step (aux-loss-free "
                                                    "balancing; default: the model config's, 1e-3)")
    mtp_weight: float | None = setting(None, "deepseek: weight of the multi-token-prediction loss (default: the "
                                             "model config's, 0.3; 0 turns MTP training off)")
    deepseek: dict = setting(help="deepseek: DeepseekConfig fields over the preset's, e.g. kv_lora_rank=48,"
                                  "qk_rope_head_dim=16,n_routed_experts=16 (Hugging Face's names; the shape, "
                                  "i.e. hidden size, layers and heads, comes from --preset)",
                             factory=dict, parse=_parse_deepseek, metavar="NAME=VALUE,...")

    def validate(self) -> None:
        check_min(self, ("max_steps", "batch_size", "grad_accum"), 1, "must be at least 1")
        check_min(self, ("val_every", "ckpt_every"), 0, "must be 0 (off) or more")
        if self.dtype not in DTYPES:
            raise UserError(f"--dtype {self.dtype!r}: must be auto, bf16 or fp32")
        if self.arch not in (None, "llama", "deepseek"):
            raise UserError(f"--arch {self.arch!r}: must be llama or deepseek")
        check_min(self, ("bias_update_speed", "mtp_weight"), 0, "must be 0 or more")

    def deepseek_overrides(self) -> dict:
        """The DeepseekConfig fields these settings override (None: the model config's)."""
        flags = {"bias_update_speed": self.bias_update_speed, "mtp_weight": self.mtp_weight}
        return {**self.deepseek, **{k: v for k, v in flags.items() if v is not None}}

    def tokens_per_step(self, seq_len: int) -> int:
        """Tokens per optimizer step for one process (multiply by the world size for the global batch)."""
        return self.batch_size * self.grad_accum * seq_len
