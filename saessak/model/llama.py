"""Decoder-only transformer with the maths and parameter names of Hugging Face `LlamaForCausalLM`,
`MistralForCausalLM`, `Qwen2ForCausalLM` and `Qwen3ForCausalLM`.

RMSNorm, rotary embeddings (rotate-half convention, optionally Llama 3's frequency scaling), SwiGLU
MLP, grouped-query attention, tied or untied embeddings. The families differ only by switches on
`ModelConfig`: biases on q/k/v (Qwen2) or on all four projections (Llama's `attention_bias`),
per-head RMSNorm on q and k (Qwen3), an explicit `head_dim` (Qwen3). `state_dict()` keys are
exactly Hugging Face's (`model.layers.0.self_attn.q_proj.weight`, ...), so import and export are
a load and a save with no renaming. Reading a Hugging Face config.json (and refusing what this
module does not compute) is saessak/model/hf_config.py.

Written for one device: distribution (DDP, FSDP) is applied from outside.

A KV cache is any object with `update(layer_idx, k, v) -> (k_all, v_all, attn_mask)`; the
generation engine owns its implementation (see saessak/model/engine.py). Without one, attention is
causal over the given sequence (training, reference forward passes).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    # The switches for the imported families (defaults: saessak's own Llama).
    architecture: str = "LlamaForCausalLM"
    head_dim: int = 0  # 0: hidden_size // num_attention_heads
    qkv_bias: bool = False  # bias on q/k/v projections (Qwen2; Llama's attention_bias)
    o_bias: bool = False  # bias on the output projection (Llama's attention_bias)
    qk_norm: bool = False  # RMSNorm over each head of q and k before RoPE (Qwen3)
    rope_scaling: dict | None = None  # None or Llama 3's {"rope_type": "llama3", "factor", ...}
    # The Hugging Face config.json an imported model came with: export writes it back (with the
    # fields above kept in step) so the exported folder is the family's own class.
    hf_config: dict | None = None

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        if self.head_dim * self.num_attention_heads != self.hidden_size and self.hf_config is None:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for rotary embeddings")

    def num_parameters(self, include_embeddings: bool = True) -> int:
        h, i, L, v = self.hidden_size, self.intermediate_size, self.num_hidden_layers, self.vocab_size
        q = self.num_attention_heads * self.head_dim
        kv = self.num_key_value_heads * self.head_dim
        per_layer = h * q * 2 + h * kv * 2 + 3 * h * i + 2 * h
        per_layer += (q + 2 * kv) * self.qkv_bias + h * self.o_bias + 2 * self.head_dim * self.qk_norm
        emb = v * h if include_embeddings else 0
        head = 0 if self.tie_word_embeddings else v * h
        return L * per_layer + emb + head + h

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 x non-embedding matmul params (+ lm head) plus attention.

        Attention scores and weighted sum: 2 matmuls of seq_len x head_dim per head per layer,
        forward 2*2*L*h*T FLOPs per token (T = context), x3 for backward; causal masking halves
        the useful work, but the kernels compute it, so it is counted as PaLM's appendix does.
        """
        n = self.num_parameters(include_embeddings=False) + self.vocab_size * self.hidden_size
        attn = 6 * 2 * self.num_hidden_layers * self.hidden_size * seq_len
        return 6 * n + attn


def model_config(preset: str, vocab_size: int | None = None) -> ModelConfig:
    """The ModelConfig of a preset's recipe; `vocab_size` is the trained tokenizer's (default: the recipe's)."""
    from saessak import recipes

    cfg = ModelConfig(**recipes.get(preset).shape.model_fields(vocab_size))
    cfg.validate()
    return cfg


class KVCache(Protocol):
    def update(
        self, layer_idx: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x32.to(dtype)


def _plain_inv_freq(head_dim: int, theta: float, device=None) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))


def rope_inv_freq(cfg: ModelConfig, device=None) -> torch.Tensor:
    """The rotary frequencies [head_dim/2] in fp32: theta^(-2i/d), then Llama 3's scaling if set.

    Llama 3 scaling keeps high frequencies (wavelength shorter than original_context /
    high_freq_factor), divides low ones (longer than original_context / low_freq_factor) by
    `factor`, and blends linearly in between; it changes no attention scale.
    """
    inv = _plain_inv_freq(cfg.head_dim, cfg.rope_theta, device)
    rs = cfg.rope_scaling
    if rs:
        factor, low, high = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        context = float(rs["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > context / low, inv / factor, inv)
        blend = (context / wavelen - low) / (high - low)
        blended = (1 - blend) * scaled / factor + blend * scaled
        middle = (wavelen >= context / high) & (wavelen <= context / low)
        inv = torch.where(middle, blended, scaled)
    return inv


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor | int,
                 theta: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape [B, T, head_dim] for integer positions [B, T] and `rope_inv_freq`
    (or a head_dim and theta: plain RoPE)."""
    if not isinstance(inv_freq, torch.Tensor):
        inv_freq = _plain_inv_freq(int(inv_freq), theta, positions.device)
    freqs = positions.float()[..., None] * inv_freq  # [B, T, head_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [B, heads, T, D]; cos/sin: [B, T, D]
    cos = cos.unsqueeze(1).to(x.dtype)
    sin = sin.unsqueeze(1).to(x.dtype)
    return x * cos + _rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.qk_norm = cfg.qk_norm

    def forward(self, x, cos, sin, kv_cache: KVCache | None = None, attn_mask: torch.Tensor | None = None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v, attn_mask = kv_cache.update(self.layer_idx, k, v)
        gqa = self.n_kv != self.n_heads
        if attn_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=gqa)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, kv_cache=None, attn_mask=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    """Holds the parameters HF keeps under `model.` in LlamaForCausalLM."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Llama(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.model = LlamaBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_weights(self, seed: int | None = None) -> None:
        """Normal(0, initializer_range) as HF does; output projections scaled by 1/sqrt(2L) (GPT-2)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.config.initializer_range
        out_std = std / math.sqrt(2 * self.config.num_hidden_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(("layernorm.weight", "_norm.weight")) or name == "model.norm.weight":
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                elif name.endswith(("o_proj.weight", "down_proj.weight")):
                    p.copy_(torch.randn(p.shape, generator=gen) * out_std)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).unsqueeze(0).expand(B, T)
        cos, sin = rope_cos_sin(position_ids, rope_inv_freq(self.config, input_ids.device))
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, kv_cache, attn_mask)
        return self.model.norm(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        loss_reduction: str = "mean",
    ):
        """Logits [B, T, V]; with `targets` ([B, T], -100 = ignore) returns the cross-entropy loss.

        With loss_reduction="none" returns per-token losses [B, T] (0 where ignored).
        """
        h = self.hidden_states(input_ids, position_ids, kv_cache, attn_mask)
        logits = self.lm_head(h)
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100, reduction=loss_reduction
        )
        if loss_reduction == "none":
            return loss.view(targets.shape)
        return loss
