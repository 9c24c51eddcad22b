"""DeepSeek-V3: multi-head latent attention (MLA), fine-grained mixture of experts with shared
experts and auxiliary-loss-free load balancing, and multi-token prediction (MTP), with the maths and
parameter names of Hugging Face `DeepseekV3ForCausalLM`.

`DeepSeek(cfg).state_dict()` has exactly the keys of transformers' `DeepseekV3ForCausalLM`, plus,
when `num_nextn_predict_layers > 0`, the MTP modules under the names of the original DeepSeek-V3
checkpoints (`model.layers.{L+i}.enorm`, `.hnorm`, `.eh_proj`, `.shared_head.norm` and the MTP
block's own attention, MoE and norms; the embedding and output head are shared with the main model,
so the checkpoint copies `model.layers.{L+i}.embed_tokens` / `.shared_head.head` are not kept).
transformers ignores MTP weights: `state_dict_for_export(keep_mtp=False)` drops them.

Routed experts. transformers 5.x (5.24 checked) stores each MoE layer's routed experts as two
stacked tensors, and so does this module:
    mlp.experts.gate_up_proj  [n_routed_experts, 2 * moe_intermediate_size, hidden_size]  (gate rows first)
    mlp.experts.down_proj     [n_routed_experts, hidden_size, moe_intermediate_size]
The original DeepSeek-V3 checkpoints (and transformers 4.x) keep one MLP per expert:
    mlp.experts.{e}.gate_proj.weight [I, H], mlp.experts.{e}.up_proj.weight [I, H], mlp.experts.{e}.down_proj.weight [H, I]
`stack_expert_weights` / `unstack_expert_weights` convert a state dict between the two.

Routing (`topk_method="noaux_tc"`, `scoring_func="sigmoid"`): scores = sigmoid(x @ gate.T) in fp32;
choice = scores + e_score_correction_bias; each group's score is the sum of its two best choice
scores; the best `topk_group` groups are kept and the top `num_experts_per_tok` experts chosen among
them by choice score; the mixing weights are the unbiased scores of the chosen experts, normalised to
sum 1 when `norm_topk_prob`, times `routed_scaling_factor`. The bias only steers the choice:
`update_router_biases` moves it after each optimizer step (bias += speed * sign(mean load - load)),
from the tokens-per-expert counts the MoE layers record during training forwards.

Attention cache. An MLA cache caches the normalised latent and the roped shared key only: any
object with `update_latent(layer_idx, c_kv [B, T, kv_lora_rank], k_pe [B, T, qk_rope_head_dim])
-> (c_kv_all [B, S, R], k_pe_all [B, S, r], mask)` (mask: None for causal over the S positions with
the T new ones last, a boolean [B or 1, 1, T, S] with True = attend, or an additive float mask). With
`absorb = True` on the cache, attention folds kv_b_proj into the query and the output (the decode
form of DeepSeek-V2 section 2.1.3) instead of expanding keys and values per head.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from saessak.errors import UserError
from saessak.model.llama import RMSNorm, apply_rope, rope_cos_sin

# transformers builds q_a_layernorm and kv_a_layernorm with DeepseekV3RMSNorm's default eps, not
# config.rms_norm_eps (as the original DeepSeek code does).
LATENT_NORM_EPS = 1e-6

# DeepseekV3Config's defaults, for the keys a config.json leaves out.
_HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": None, "n_shared_experts": 1,
    "n_routed_experts": 256, "routed_scaling_factor": 2.5, "kv_lora_rank": 512, "q_lora_rank": 1536,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128, "n_group": 8, "topk_group": 4,
    "num_experts_per_tok": 8, "first_k_dense_replace": 3, "norm_topk_prob": True, "max_position_embeddings": 4096,
    "initializer_range": 0.02, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "rope_theta": 10000.0,
    "num_nextn_predict_layers": 1, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
}


def _err(msg: str) -> UserError:
    return UserError(f"deepseek config: {msg}")


# Fields a preset's shape (its depth) or the tokenizer fixes; `--deepseek` may set every other one.
SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "max_position_embeddings", "architecture")


def parse_knobs(text: str, option: str = "--deepseek") -> dict[str, Any]:
    """`kv_lora_rank=48,qk_rope_head_dim=16,norm_topk_prob=false` -> typed DeepseekConfig fields.
    A name DeepseekConfig does not have, one the preset's shape fixes, or a value of the wrong kind
    is a UserError naming the option and the part."""
    kinds = {f.name: f.type for f in dataclasses.fields(DeepseekConfig) if f.name not in SHAPE_FIELDS}
    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = (x.strip() for x in part.partition("="))
        if not sep:
            raise UserError(f"{option} {part!r}: expected NAME=VALUE, e.g. kv_lora_rank=48")
        if name in SHAPE_FIELDS:
            raise UserError(f"{option} {name}: fixed by the preset's shape (--preset, its depth) or the tokenizer")
        if name not in kinds:
            raise UserError(f"{option} {name!r}: not a DeepseekConfig field; one of {', '.join(sorted(kinds))}")
        kind = kinds[name]
        try:
            if kind == "bool":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value: Any = raw.lower() in ("true", "1")
            elif kind == "int":
                value = int(raw)
            elif kind == "float":
                value = float(raw)
            else:
                value = raw
        except ValueError:
            wanted = {"bool": "true or false", "int": "an integer"}.get(kind, "a number")
            raise UserError(f"{option} {name}={raw!r}: expected {wanted}") from None
        out[name] = value
    return out


@dataclass
class DeepseekConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # the dense MLP of the first `first_k_dense_replace` layers
    moe_intermediate_size: int  # one routed expert (shared experts: n_shared_experts times this)
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int = 0  # 0: num_attention_heads (MLA has no grouped keys)
    n_shared_experts: int = 1
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    first_k_dense_replace: int = 1
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    norm_topk_prob: bool = True
    scoring_func: str = "sigmoid"
    topk_method: str = "noaux_tc"
    q_lora_rank: int = 0  # 0: a plain q_proj (Hugging Face's None)
    kv_lora_rank: int = 64
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 32
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    num_nextn_predict_layers: int = 0  # MTP depth
    # saessak only
    bias_update_speed: float = 1e-3  # aux-loss-free balancing: bias step per update
    seq_aux_loss_alpha: float = 0.0  # sequence-wise balance loss weight (0: off)
    mtp_weight: float = 0.3  # the MTP losses' weight in the training loss
    architecture: str = "DeepseekV3ForCausalLM"

    def __post_init__(self):
        if not self.num_key_value_heads:
            self.num_key_value_heads = self.num_attention_heads
        if self.q_lora_rank is None:
            self.q_lora_rank = 0

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeepseekConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "n_routed_experts", "num_experts_per_tok", "n_group", "topk_group",
                     "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "max_position_embeddings"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise _err(f"{name} {v!r}: must be a positive integer")
        for name in ("n_shared_experts", "first_k_dense_replace", "q_lora_rank", "num_nextn_predict_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise _err(f"{name} {v!r}: must be an integer >= 0")
        for name in ("rope_theta", "rms_norm_eps", "initializer_range", "routed_scaling_factor"):
            if not getattr(self, name) > 0:
                raise _err(f"{name} {getattr(self, name)!r}: must be > 0")
        for name in ("bias_update_speed", "seq_aux_loss_alpha", "mtp_weight"):
            if not getattr(self, name) >= 0:
                raise _err(f"{name} {getattr(self, name)!r}: must be >= 0")
        if self.num_key_value_heads != self.num_attention_heads:
            raise _err(f"num_key_value_heads {self.num_key_value_heads} must equal num_attention_heads "
                       f"{self.num_attention_heads} (MLA shares one latent, not grouped keys)")
        if self.scoring_func != "sigmoid":
            raise _err(f"scoring_func {self.scoring_func!r}: only 'sigmoid' (DeepSeek-V3) is supported")
        if self.topk_method != "noaux_tc":
            raise _err(f"topk_method {self.topk_method!r}: only 'noaux_tc' (DeepSeek-V3) is supported")
        if self.architecture != "DeepseekV3ForCausalLM":
            raise _err(f"architecture {self.architecture!r}: must be 'DeepseekV3ForCausalLM'")
        if self.num_experts_per_tok > self.n_routed_experts:
            raise _err(f"num_experts_per_tok {self.num_experts_per_tok} exceeds n_routed_experts {self.n_routed_experts}")
        if self.n_routed_experts % self.n_group:
            raise _err(f"n_routed_experts {self.n_routed_experts} is not divisible by n_group {self.n_group}")
        if self.topk_group > self.n_group:
            raise _err(f"topk_group {self.topk_group} exceeds n_group {self.n_group}")
        reachable = self.topk_group * (self.n_routed_experts // self.n_group)
        if self.num_experts_per_tok > reachable:
            raise _err(f"num_experts_per_tok {self.num_experts_per_tok} exceeds the {reachable} experts in topk_group "
                       f"{self.topk_group} groups of {self.n_routed_experts // self.n_group}")
        if self.qk_rope_head_dim % 2:
            raise _err(f"qk_rope_head_dim {self.qk_rope_head_dim} must be even for rotary embeddings")
        if self.first_k_dense_replace > self.num_hidden_layers:
            raise _err(f"first_k_dense_replace {self.first_k_dense_replace} exceeds num_hidden_layers "
                       f"{self.num_hidden_layers}")

    # ---- Hugging Face config.json ----

    def to_hf_config(self) -> dict[str, Any]:
        """A config.json dict for transformers' DeepseekV3Config (no rope scaling, MTP depth kept)."""
        return {
            "architectures": ["DeepseekV3ForCausalLM"],
            "model_type": "deepseek_v3",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "moe_intermediate_size": self.moe_intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "n_shared_experts": self.n_shared_experts,
            "n_routed_experts": self.n_routed_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "first_k_dense_replace": self.first_k_dense_replace,
            "n_group": self.n_group,
            "topk_group": self.topk_group,
            "routed_scaling_factor": self.routed_scaling_factor,
            "norm_topk_prob": self.norm_topk_prob,
            "scoring_func": self.scoring_func,
            "topk_method": self.topk_method,
            "q_lora_rank": self.q_lora_rank or None,
            "kv_lora_rank": self.kv_lora_rank,
            "qk_nope_head_dim": self.qk_nope_head_dim,
            "qk_rope_head_dim": self.qk_rope_head_dim,
            "v_head_dim": self.v_head_dim,
            "head_dim": self.qk_rope_head_dim,  # transformers sizes the rotary frequencies from head_dim
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "rope_interleave": True,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "num_nextn_predict_layers": self.num_nextn_predict_layers,
            "hidden_act": "silu",
            "attention_bias": False,
            "attention_dropout": 0.0,
        }

    @classmethod
    def from_hf_config(cls, d: dict[str, Any]) -> DeepseekConfig:
        """A DeepseekConfig from a DeepSeek-V3 config.json; refuses what this module does not compute."""
        mt = d.get("model_type", "deepseek_v3")
        if mt != "deepseek_v3":
            raise UserError(f"config.json: model_type {mt!r} is not 'deepseek_v3'")
        if d.get("rope_scaling"):
            raise UserError(f"config.json: rope_scaling {d['rope_scaling']!r} is not supported (plain RoPE only)")
        rp = d.get("rope_parameters") or {}
        if rp.get("rope_type", "default") != "default":
            raise UserError(f"config.json: rope_parameters.rope_type {rp.get('rope_type')!r} is not supported "
                            f"(rope_type 'default' only)")
        if d.get("hidden_act", "silu") != "silu":
            raise UserError(f"config.json: hidden_act {d['hidden_act']!r} is not supported (silu only)")
        if d.get("attention_bias", False):
            raise UserError("config.json: attention_bias true is not supported")
        if not d.get("rope_interleave", True):
            raise UserError("config.json: rope_interleave false is not supported (DeepSeek's interleaved RoPE only)")

        def get(k):
            return d[k] if d.get(k) is not None else _HF_DEFAULTS[k]

        fields = {k: get(k) for k in _HF_DEFAULTS if k != "rope_theta"}
        fields["rope_theta"] = float(d.get("rope_theta") or rp.get("rope_theta") or _HF_DEFAULTS["rope_theta"])
        fields["q_lora_rank"] = d.get("q_lora_rank", _HF_DEFAULTS["q_lora_rank"]) or 0
        fields["num_key_value_heads"] = d.get("num_key_value_heads") or fields["num_attention_heads"]
        if d.get("num_mtp_layers") is not None and d.get("num_nextn_predict_layers") is None:
            fields["num_nextn_predict_layers"] = d["num_mtp_layers"]
        cfg = cls(**fields)
        cfg.validate()
        return cfg

    # ---- sizes ----

    def _attn_params(self) -> int:
        h, n = self.hidden_size, self.num_attention_heads
        if self.q_lora_rank:
            q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * n * self.qk_head_dim
        else:
            q = h * n * self.qk_head_dim
        kv = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
        kv += self.kv_lora_rank * n * (self.qk_nope_head_dim + self.v_head_dim)
        return q + kv + n * self.v_head_dim * h

    def _moe_params(self, experts: int) -> int:
        h, mi = self.hidden_size, self.moe_intermediate_size
        return self.n_routed_experts * h + (experts + self.n_shared_experts) * 3 * h * mi

    def _params(self, experts: int, include_embeddings: bool, include_mtp: bool) -> int:
        h, L = self.hidden_size, self.num_hidden_layers
        dense = self.first_k_dense_replace
        body = L * (self._attn_params() + 2 * h) + dense * 3 * h * self.intermediate_size
        body += (L - dense) * self._moe_params(experts) + h
        if include_mtp and self.num_nextn_predict_layers:
            mtp = self._attn_params() + 2 * h + self._moe_params(experts) + 3 * h + 2 * h * h
            body += self.num_nextn_predict_layers * mtp
        v = self.vocab_size * h
        emb = v if include_embeddings else 0
        head = 0 if self.tie_word_embeddings else v
        return body + emb + head

    def num_parameters(self, include_embeddings: bool = True, include_mtp: bool = True) -> int:
        """All trainable parameters (the router biases are buffers, not counted)."""
        return self._params(self.n_routed_experts, include_embeddings, include_mtp)

    def num_active_parameters(self, include_embeddings: bool = True, include_mtp: bool = True) -> int:
        """Parameters one token goes through: shared experts and num_experts_per_tok routed ones."""
        return self._params(self.num_experts_per_tok, include_embeddings, include_mtp)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 x active non-embedding params (+ the lm head once per
        prediction: main and each MTP depth) plus attention, 6 * layers * heads * (qk_head_dim +
        v_head_dim) * seq_len (scores and weighted sum of the expanded form, counted unmasked as in
        Llama's `flops_per_token`). MTP layers count as layers."""
        n = self.num_active_parameters(include_embeddings=False)
        n += self.vocab_size * self.hidden_size * (1 + self.num_nextn_predict_layers)
        layers = self.num_hidden_layers + self.num_nextn_predict_layers
        attn = 6 * layers * self.num_attention_heads * (self.qk_head_dim + self.v_head_dim) * seq_len
        return 6 * n + attn

    def kv_cache_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """The MLA cache: the latent and the shared rope key per layer."""
        return self.num_hidden_layers * (self.kv_lora_rank + self.qk_rope_head_dim) * dtype_bytes


def deepseek_config_for_shape(hidden_size: int, depth: int, vocab_size: int, seq_len: int, head_dim: int = 64, *,
                              intermediate_size: int | None = None, n_routed_experts: int = 8,
                              num_experts_per_tok: int = 2, n_shared_experts: int = 1,
                              num_nextn_predict_layers: int = 0, tie_word_embeddings: bool = True,
                              **overrides: Any) -> DeepseekConfig:
    """A DeepseekConfig for a recipe-like shape. The rule:

    - heads = hidden_size // head_dim; qk_rope_head_dim = head_dim // 4 rounded down to even (at
      least 2), qk_nope_head_dim = head_dim - qk_rope_head_dim; v_head_dim = head_dim; q_lora_rank 0.
    - the cache, kv_lora_rank + qk_rope_head_dim numbers per token and layer, is max(head_dim,
      hidden_size // 4): a quarter of a GQA Llama's keys and values at the recipes' two query heads
      per key/value head (2 x hidden_size / 2). cpu-tiny: latent 48 + rope key 16. The earlier rule
      (latent min(4 x head_dim, hidden_size / 2), rope half a head: 128 + 32 at cpu-tiny) pretrained
      to a worse bpb and SFT'd far worse there (docs/RESULTS.md, "Through SFT and GRPO").
    - intermediate_size (the dense first layer) = Llama recipes' rule, 8/3 * hidden rounded up to 64.
    - moe_intermediate_size = intermediate_size / (n_shared_experts + num_experts_per_tok), rounded
      to a multiple of 8 (at least 8): the active MoE MLP costs about one dense MLP.
    - first_k_dense_replace = 1 (0 with one layer); n_group = topk_group = 1, except with 64 or more
      routed experts divisible by 8: n_group 8, topk_group 4 (DeepSeek-V3's).
    - routed_scaling_factor 1.0, norm_topk_prob True, max_position_embeddings = seq_len.
    `overrides` set any other field.
    """
    heads = max(1, hidden_size // head_dim)
    rope = max(2, (head_dim // 4) // 2 * 2)
    cache = max(head_dim, hidden_size // 4)
    if intermediate_size is None:
        intermediate_size = (hidden_size * 8 // 3 + 63) // 64 * 64
    moe_i = max(8, round(intermediate_size / (n_shared_experts + num_experts_per_tok) / 8) * 8)
    grouped = n_routed_experts >= 64 and n_routed_experts % 8 == 0
    fields: dict[str, Any] = {
        "vocab_size": vocab_size, "hidden_size": hidden_size, "intermediate_size": intermediate_size,
        "moe_intermediate_size": moe_i, "num_hidden_layers": depth, "num_attention_heads": heads,
        "num_key_value_heads": heads, "n_shared_experts": n_shared_experts, "n_routed_experts": n_routed_experts,
        "num_experts_per_tok": num_experts_per_tok, "first_k_dense_replace": 1 if depth > 1 else 0,
        "n_group": 8 if grouped else 1, "topk_group": 4 if grouped else 1, "routed_scaling_factor": 1.0,
        "norm_topk_prob": True, "q_lora_rank": 0, "kv_lora_rank": max(2, cache - rope),
        "qk_nope_head_dim": max(1, head_dim - rope), "qk_rope_head_dim": rope, "v_head_dim": head_dim,
        "max_position_embeddings": seq_len, "tie_word_embeddings": tie_word_embeddings,
        "num_nextn_predict_layers": num_nextn_predict_layers,
    }
    fields.update(overrides)
    cfg = DeepseekConfig(**fields)
    cfg.validate()
    return cfg


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------


class LatentKVCache(Protocol):
    def update_latent(
        self, layer_idx: int, c_kv: torch.Tensor, k_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...


def _deinterleave(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (x0, x2, ..., x1, x3, ...): DeepSeek's interleaved rotary pairs laid
    out for the rotate-half formula (what transformers' `apply_rotary_pos_emb_interleave` computes)."""
    return torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)


def _causal_mask(T: int, S: int, device) -> torch.Tensor:
    """Boolean [T, S], True = attend: the T queries are the last T of the S positions."""
    q = torch.arange(S - T, S, device=device)[:, None]
    return torch.arange(S, device=device)[None, :] <= q


class MLAttention(nn.Module):
    """Multi-head latent attention (DeepSeek-V2/V3), names as transformers' DeepseekV3Attention."""

    def __init__(self, cfg: DeepseekConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = cfg.num_attention_heads
        self.nope, self.rope, self.v_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.qk_dim = self.nope + self.rope
        self.kv_lora_rank = cfg.kv_lora_rank
        self.q_lora_rank = cfg.q_lora_rank
        h = cfg.hidden_size
        if self.q_lora_rank:
            self.q_a_proj = nn.Linear(h, self.q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = nn.Linear(self.q_lora_rank, self.n_heads * self.qk_dim, bias=False)
        else:
            self.q_proj = nn.Linear(h, self.n_heads * self.qk_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(h, self.kv_lora_rank + self.rope, bias=False)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank, LATENT_NORM_EPS)
        self.kv_b_proj = nn.Linear(self.kv_lora_rank, self.n_heads * (self.nope + self.v_dim), bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.v_dim, h, bias=False)
        self.scaling = self.qk_dim ** -0.5

    def forward(self, x, cos, sin, kv_cache: LatentKVCache | None = None, attn_mask: torch.Tensor | None = None):
        B, T, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if self.q_lora_rank else self.q_proj(x)
        q = q.view(B, T, self.n_heads, self.qk_dim).transpose(1, 2)
        q_nope, q_pe = torch.split(q, [self.nope, self.rope], dim=-1)
        c_kv, k_pe = torch.split(self.kv_a_proj_with_mqa(x), [self.kv_lora_rank, self.rope], dim=-1)
        c_kv = self.kv_a_layernorm(c_kv)
        q_pe = apply_rope(_deinterleave(q_pe), cos, sin)
        k_pe = apply_rope(_deinterleave(k_pe).unsqueeze(1), cos, sin).squeeze(1)  # [B, T, rope]
        absorb = False
        if kv_cache is not None:
            c_kv, k_pe, attn_mask = kv_cache.update_latent(self.layer_idx, c_kv, k_pe)
            absorb = bool(getattr(kv_cache, "absorb", False))
        if absorb:
            out = self._absorbed(q_nope, q_pe, c_kv, k_pe, attn_mask)
        else:
            out = self._expanded(q_nope, q_pe, c_kv, k_pe, attn_mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.v_dim))

    def _expanded(self, q_nope, q_pe, c_kv, k_pe, mask):
        """Training and prefill: kv_b_proj expands the latent into per-head k_nope and v."""
        B, H, T, _ = q_nope.shape
        S = c_kv.shape[1]
        kv = self.kv_b_proj(c_kv).view(B, S, H, self.nope + self.v_dim).transpose(1, 2)
        k_nope, v = torch.split(kv, [self.nope, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_pe.unsqueeze(1).expand(B, H, S, self.rope)), dim=-1)
        q = torch.cat((q_nope, q_pe), dim=-1)
        if mask is None and T == S:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
        if mask is None:
            mask = _causal_mask(T, S, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)

    def _absorbed(self, q_nope, q_pe, c_kv, k_pe, mask):
        """Decode: scores = (q_nope W_UK) . c_kv + q_pe . k_pe; output = (attn @ c_kv) W_UV. Keys and
        values are never expanded per head; the cache holds kv_lora_rank + qk_rope_head_dim per token."""
        H, T = q_nope.shape[1], q_nope.shape[2]
        S = c_kv.shape[1]
        w = self.kv_b_proj.weight.view(H, self.nope + self.v_dim, self.kv_lora_rank)
        w_uk, w_uv = w[:, : self.nope], w[:, self.nope:]
        B = q_nope.shape[0]
        q_lat = torch.einsum("bhtd,hdr->bhtr", q_nope, w_uk)
        # Heads folded into the rows: one [H*T, R] x [R, S] matmul per sequence reads the latent cache
        # once (broadcasting it over a head axis copied the whole cache per head, most of decode's time).
        scores = torch.matmul(q_lat.reshape(B, H * T, -1), c_kv.transpose(1, 2))
        scores = scores + torch.matmul(q_pe.reshape(B, H * T, -1), k_pe.transpose(1, 2))
        scores = scores.view(B, H, T, S) * self.scaling
        if mask is None:
            mask = _causal_mask(T, S, scores.device)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
        attn = torch.softmax(scores.float(), dim=-1).to(c_kv.dtype)
        ctx = torch.matmul(attn.reshape(B, H * T, S), c_kv).view(B, H, T, -1)  # [B, H, T, R]
        return torch.einsum("bhtr,hvr->bhtv", ctx, w_uv)


# ---------------------------------------------------------------------------------------------
# MLP and mixture of experts
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TopkRouter(nn.Module):
    """`mlp.gate`: weight [E, H] (a parameter) and e_score_correction_bias [E] (a persistent fp32
    buffer, as transformers registers it: saved in the state dict, not trained by the optimizer)."""

    def __init__(self, cfg: DeepseekConfig):
        super().__init__()
        self.n_experts, self.top_k = cfg.n_routed_experts, cfg.num_experts_per_tok
        self.n_group, self.topk_group = cfg.n_group, cfg.topk_group
        self.norm_topk_prob, self.scale = cfg.norm_topk_prob, cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        nn.init.normal_(self.weight, std=cfg.initializer_range)
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32))

    def _apply(self, fn, *args, **kwargs):
        # The bias takes steps of ~1e-3: keep it fp32 through model.to(bf16) (transformers keeps it
        # in fp32 too), moving only its device.
        out = super()._apply(fn, *args, **kwargs)
        if self.e_score_correction_bias.dtype != torch.float32 and self.e_score_correction_bias.is_floating_point():
            self.e_score_correction_bias = self.e_score_correction_bias.float()
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, H] -> (scores [N, E] fp32, expert ids [N, k], weights [N, k] fp32)."""
        with torch.autocast(device_type=x.device.type, enabled=False):  # routing stays fp32 under autocast
            scores = F.linear(x.float(), self.weight.float()).sigmoid()
        choice = scores + self.e_score_correction_bias.float()
        if self.n_group > 1 and self.topk_group < self.n_group:
            g = choice.view(-1, self.n_group, self.n_experts // self.n_group)
            group_scores = g.topk(min(2, g.shape[-1]), dim=-1).values.sum(-1)  # [N, n_group]
            keep = group_scores.topk(self.topk_group, dim=-1).indices
            group_mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)
            choice = g.masked_fill(~group_mask.unsqueeze(-1), float("-inf")).view(-1, self.n_experts)
        idx = choice.topk(self.top_k, dim=-1).indices
        w = scores.gather(1, idx)
        if self.norm_topk_prob:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return scores, idx, w * self.scale


class Experts(nn.Module):
    """The routed experts as transformers 5.x stores them: `gate_up_proj` [E, 2I, H] and `down_proj`
    [E, H, I] (see the module docstring for the per-expert layout of older checkpoints)."""

    def __init__(self, cfg: DeepseekConfig):
        super().__init__()
        E, H, I = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
        self.n_experts, self.inter = E, I
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * I, H))
        self.down_proj = nn.Parameter(torch.empty(E, H, I))
        nn.init.normal_(self.gate_up_proj, std=cfg.initializer_range)
        nn.init.normal_(self.down_proj, std=cfg.initializer_range)

    def forward(self, x: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """x [N, H], idx/w [N, k], counts [E] (= bincount of idx) -> sum_j w_j * expert_{idx_j}(x)."""
        k = idx.shape[1]
        flat = idx.reshape(-1)
        order = flat.argsort(stable=True)  # assignments grouped by expert
        tok = order // k
        xs = x.index_select(0, tok)
        # One batched matmul pair per expert on its contiguous token group (empty experts skipped).
        # (A torch._grouped_mm path over the same sorted layout is the natural GPU speed-up; it is
        # not here because it could not be checked on a GPU yet.)
        parts = []
        start = 0
        for e, c in enumerate(counts.tolist()):
            if c == 0:
                continue
            seg = xs[start:start + c]
            gate, up = F.linear(seg, self.gate_up_proj[e]).chunk(2, dim=-1)
            parts.append(F.linear(F.silu(gate) * up, self.down_proj[e]))
            start += c
        ys = torch.cat(parts, dim=0) if parts else xs.new_zeros(0, x.shape[1])
        ys = ys * w.reshape(-1)[order].unsqueeze(1)
        return torch.zeros_like(x).index_add_(0, tok, ys.to(x.dtype))


class MoE(nn.Module):
    """Routed experts (capacity-free, no token dropped) plus shared experts.

    In training mode each forward records `last_counts` (tokens per expert, int64, detached) and adds
    them to `load_accum` (what `update_router_biases` reads and resets); with seq_aux_loss_alpha > 0
    it leaves the sequence-wise balance loss in `aux_loss` (with its graph)."""

    def __init__(self, cfg: DeepseekConfig):
        super().__init__()
        self.cfg = cfg
        self.experts = Experts(cfg)
        self.gate = TopkRouter(cfg)
        self.shared_experts = MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts) \
            if cfg.n_shared_experts else None
        self.last_counts: torch.Tensor | None = None
        self.load_accum: torch.Tensor | None = None
        self.last_load: torch.Tensor | None = None  # the load the last bias update used
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        flat = x.reshape(-1, H)
        scores, idx, w = self.gate(flat)
        counts = torch.bincount(idx.reshape(-1), minlength=self.cfg.n_routed_experts)
        out = self.experts(flat, idx, w, counts).view(B, T, H)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        self.aux_loss = None
        if self.training:
            c = counts.detach()
            self.last_counts = c
            self.load_accum = c.clone() if self.load_accum is None else self.load_accum.to(c.device) + c
            if self.cfg.seq_aux_loss_alpha > 0:
                self.aux_loss = self._seq_aux_loss(scores.view(B, T, -1), idx.view(B, T, -1))
        return out

    def _seq_aux_loss(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """DeepSeek-V3 eq. 17-20, averaged over the batch's sequences: alpha * sum_i f_i P_i with
        f_i = E / (k T) * #tokens routed to i, P_i = mean over tokens of s_i / sum_j s_j."""
        B, T, E = scores.shape
        k = idx.shape[-1]
        hits = torch.zeros(B, E, device=scores.device).scatter_add_(
            1, idx.reshape(B, -1), torch.ones(B, T * k, device=scores.device))
        f = hits * (E / (k * T))
        p = (scores / scores.sum(-1, keepdim=True)).mean(1)
        return self.cfg.seq_aux_loss_alpha * (f * p).sum(-1).mean()


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DeepseekConfig, layer_idx: int):
        super().__init__()
        self.self_attn = MLAttention(cfg, layer_idx)
        self.mlp = MoE(cfg) if layer_idx >= cfg.first_k_dense_replace else MLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, kv_cache=None, attn_mask=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class SharedHead(nn.Module):
    """`shared_head`: the MTP module's output norm (the head itself is the model's lm_head)."""

    def __init__(self, cfg: DeepseekConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MTPLayer(DecoderLayer):
    """One multi-token-prediction module, named as in the original DeepSeek-V3 checkpoints:
    h' = eh_proj([enorm(emb(t_{i+k})); hnorm(h_i)]) -> a decoder block -> shared_head.norm -> lm_head.
    (The embedding-first concatenation is the order of the released weights, as vLLM loads them.)"""

    def __init__(self, cfg: DeepseekConfig, layer_idx: int):
        super().__init__(cfg, layer_idx)
        h = cfg.hidden_size
        self.enorm = RMSNorm(h, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(h, cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * h, h, bias=False)
        self.shared_head = SharedHead(cfg)

    def mtp(self, h_prev, emb, cos, sin, attn_mask=None):
        x = self.eh_proj(torch.cat((self.enorm(emb), self.hnorm(h_prev)), dim=-1))
        return super().forward(x, cos, sin, None, attn_mask)


class DeepSeekBody(nn.Module):
    """What transformers keeps under `model.`; `layers` also holds the MTP modules after the L
    decoder layers (indices L .. L+D-1, as the original checkpoints number them)."""

    def __init__(self, cfg: DeepseekConfig):
        super().__init__()
        L = cfg.num_hidden_layers
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            [DecoderLayer(cfg, i) for i in range(L)]
            + [MTPLayer(cfg, L + i) for i in range(cfg.num_nextn_predict_layers)]
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DeepSeek(nn.Module):
    def __init__(self, cfg: DeepseekConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.model = DeepSeekBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.last_aux: dict[str, torch.Tensor] = {}

    @property
    def decoder_layers(self) -> list[DecoderLayer]:
        return list(self.model.layers[: self.config.num_hidden_layers])

    @property
    def mtp_layers(self) -> list[MTPLayer]:
        return list(self.model.layers[self.config.num_hidden_layers:])

    def moe_layers(self) -> list[tuple[int, MoE]]:
        """(layer index, MoE) for every MoE layer, the MTP modules' included."""
        return [(i, layer.mlp) for i, layer in enumerate(self.model.layers) if isinstance(layer.mlp, MoE)]

    def init_weights(self, seed: int | None = None) -> None:
        """Normal(0, initializer_range) as transformers does; output projections (o_proj, down_proj,
        the experts' down_proj) scaled by 1/sqrt(2L) (GPT-2); norms 1, router biases 0."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.config.initializer_range
        out_std = std / math.sqrt(2 * self.config.num_hidden_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(("norm.weight", "layernorm.weight")):
                    p.fill_(1.0)
                elif name.endswith(("o_proj.weight", "down_proj.weight", "experts.down_proj")):
                    p.copy_(torch.randn(p.shape, generator=gen) * out_std)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
            for _, moe in self.moe_layers():
                moe.gate.e_score_correction_bias.zero_()

    def state_dict_for_export(self, keep_mtp: bool = False) -> dict[str, torch.Tensor]:
        """The state dict; without the MTP modules (`model.layers.{L+i}.*`) unless keep_mtp, which is
        what transformers' DeepseekV3ForCausalLM loads."""
        sd = self.state_dict()
        if keep_mtp:
            return sd
        L = self.config.num_hidden_layers
        mtp = tuple(f"model.layers.{L + i}." for i in range(self.config.num_nextn_predict_layers))
        return {k: v for k, v in sd.items() if not (mtp and k.startswith(mtp))}

    def _rope(self, position_ids: torch.Tensor):
        return rope_cos_sin(position_ids, self.config.qk_rope_head_dim, self.config.rope_theta)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        kv_cache: LatentKVCache | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).unsqueeze(0).expand(B, T)
        cos, sin = self._rope(position_ids)
        x = self.model.embed_tokens(input_ids)
        for layer in self.decoder_layers:
            x = layer(x, cos, sin, kv_cache, attn_mask)
        return self.model.norm(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        kv_cache: LatentKVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        loss_reduction: str = "mean",
    ):
        """Logits [B, T, V]; with `targets` ([B, T], -100 = ignore) the loss.

        loss_reduction="none": per-token main losses [B, T] (0 where ignored), nothing else added.
        Otherwise, in training mode: main CE + mtp_weight * mean over depths of the MTP CE (depth k
        predicts targets[t+k] = token t+k+1 from h_t and emb(input_ids[t+k])) + the sequence-wise
        balance losses of all MoE layers, the MTP modules' included (seq_aux_loss_alpha > 0); with
        mtp_weight 0 the MTP modules are not run. `last_aux` keeps the detached
        parts ("main_loss", "mtp_loss", "seq_aux_loss") of the last such forward.
        """
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).unsqueeze(0).expand(B, T)
        for _, moe in self.moe_layers():
            moe.aux_loss = None  # only this forward's balance losses count
        h = self.hidden_states(input_ids, position_ids, kv_cache, attn_mask)
        logits = self.lm_head(h)
        if targets is None:
            return logits
        V = logits.size(-1)
        loss = F.cross_entropy(logits.float().view(-1, V), targets.reshape(-1), ignore_index=-100,
                               reduction=loss_reduction)
        if loss_reduction == "none":
            return loss.view(targets.shape)
        if not self.training:
            return loss
        aux: dict[str, torch.Tensor] = {"main_loss": loss.detach()}
        total = loss
        if self.config.num_nextn_predict_layers and self.config.mtp_weight > 0 and kv_cache is None:
            mtp_losses = []
            prev = h
            for k, layer in enumerate(self.mtp_layers, start=1):
                n = T - k
                if n <= 0:
                    break
                cos, sin = self._rope(position_ids[:, :n])
                emb = self.model.embed_tokens(input_ids[:, k:])
                mask = None if attn_mask is None else attn_mask[..., :n, :n]
                prev = layer.mtp(prev[:, :n], emb, cos, sin, mask)
                lg = self.lm_head(layer.shared_head.norm(prev))
                mtp_losses.append(F.cross_entropy(lg.float().reshape(-1, V), targets[:, k:].reshape(-1),
                                                  ignore_index=-100, reduction=loss_reduction))
            if mtp_losses:
                mtp = torch.stack(mtp_losses).mean()
                total = total + self.config.mtp_weight * mtp
                aux["mtp_loss"] = mtp.detach()
        if self.config.seq_aux_loss_alpha > 0:
            parts = [moe.aux_loss for _, moe in self.moe_layers() if moe.aux_loss is not None]
            if parts:
                seq = torch.stack(parts).sum()
                total = total + seq
                aux["seq_aux_loss"] = seq.detach()
        self.last_aux = aux
        return total


# ---------------------------------------------------------------------------------------------
# Auxiliary-loss-free balancing and router statistics
# ---------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _moe_modules(model: nn.Module) -> list[tuple[int, MoE]]:
    m = _unwrap(model)
    if isinstance(m, DeepSeek):
        return m.moe_layers()
    return list(enumerate(x for x in m.modules() if isinstance(x, MoE)))  # any module holding MoE layers


@torch.no_grad()
def update_router_biases(model: nn.Module, speed: float | None = None) -> int:
    """After an optimizer step: for each MoE layer, e_score_correction_bias += speed * sign(mean
    load - load), from the tokens per expert counted since the last update, then reset the counts.
    `speed` defaults to the config's bias_update_speed. Returns how many layers were updated (0 for a
    model without MoE layers). Under torch.distributed with more than one rank, the counts are
    summed over ranks first (one all-reduce; a rank with no counts adds zeros), so every rank takes
    the same step: every rank must call this after the same optimizer step."""
    m = _unwrap(model)
    moes = _moe_modules(m)
    if not moes:
        return 0
    if speed is None:
        speed = m.config.bias_update_speed
    _all_reduce_loads([moe for _, moe in moes])
    n = 0
    for _, moe in moes:
        load = moe.load_accum
        if load is None or int(load.sum()) == 0:
            continue
        bias = moe.gate.e_score_correction_bias
        lf = load.to(bias.device, torch.float32)
        bias.add_(speed * torch.sign(lf.mean() - lf))
        moe.last_load = load
        moe.load_accum = None
        n += 1
    return n


def _all_reduce_loads(moes: list[MoE]) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    bias = moes[0].gate.e_score_correction_bias
    flat = torch.cat([moe.load_accum.to(bias.device, torch.int64) if moe.load_accum is not None
                      else torch.zeros(moe.gate.n_experts, dtype=torch.int64, device=bias.device) for moe in moes])
    dist.all_reduce(flat)
    for moe, load in zip(moes, flat.split([moe.gate.n_experts for moe in moes])):
        moe.load_accum = load


def router_stats(model: nn.Module) -> dict[str, Any]:
    """Per MoE layer (keyed by layer index as a string): tokens per expert (counted since the last
    bias update; the load that update used if none since), their max/mean ratio, the dead experts
    (zero tokens) and the bias range. Plain Python values: JSON-serialisable."""
    out: dict[str, Any] = {}
    for i, moe in _moe_modules(model):
        load = moe.load_accum if moe.load_accum is not None else moe.last_load
        bias = moe.gate.e_score_correction_bias.detach().float().cpu()
        entry: dict[str, Any] = {"bias_min": float(bias.min()), "bias_max": float(bias.max())}
        if load is not None:
            counts = [int(c) for c in load.cpu().tolist()]
            mean = sum(counts) / len(counts)
            entry.update(tokens_per_expert=counts, max_load=max(counts), mean_load=mean,
                         max_over_mean=(max(counts) / mean) if mean else 0.0,
                         dead_experts=[e for e, c in enumerate(counts) if c == 0])
        out[str(i)] = entry
    return out


def router_metrics(model: nn.Module) -> dict[str, dict[str, Any]]:
    """`router_stats` without the per-expert counts, for a metrics line: per MoE layer its max/mean
    load ratio, the number of dead experts and the bias range."""
    out = {}
    for i, e in router_stats(model).items():
        out[i] = {"max_over_mean": round(e.get("max_over_mean", 0.0), 4), "dead": len(e.get("dead_experts", [])),
                  "bias_min": e["bias_min"], "bias_max": e["bias_max"]}
    return out


class RouterTail:
    """The routing of a training run's last `window` optimizer steps (pretrain, SFT and RL keep one):
    every MoE layer's tokens per expert summed over them (an expert with none is dead), and at the
    end the final max/mean load and bias range. `add` goes after `update_router_biases`."""

    def __init__(self, window: int):
        self.window = max(1, int(window))
        self.recent: collections.deque = collections.deque(maxlen=self.window)

    def add(self, model: nn.Module) -> None:
        self.recent.append({layer: list(e.get("tokens_per_expert") or []) for layer, e in router_stats(model).items()})

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """{"moe": ...}: the facts done.json and the ledger record keep."""
        tail: dict[str, list[int]] = {}
        for counts in self.recent:
            for layer, c in counts.items():
                have = tail.setdefault(layer, [0] * len(c))
                tail[layer] = [a + b for a, b in zip(have, c)]
        final = router_metrics(model)
        dead = {layer: [i for i, c in enumerate(counts) if c == 0] for layer, counts in tail.items()}
        return {"moe": {"final_max_over_mean": max((e["max_over_mean"] for e in final.values()), default=None),
                        "final_max_over_mean_per_layer": {k: e["max_over_mean"] for k, e in final.items()},
                        "dead_experts_last_10pct": sum(len(v) for v in dead.values()),
                        "dead_experts_last_10pct_per_layer": dead, "tail_steps": len(self.recent),
                        "bias_range": [min((e["bias_min"] for e in final.values()), default=None),
                                       max((e["bias_max"] for e in final.values()), default=None)]}}


# ---------------------------------------------------------------------------------------------
# Checkpoint layouts of the routed experts
# ---------------------------------------------------------------------------------------------


def stack_expert_weights(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-expert keys (`...mlp.experts.{e}.{gate,up,down}_proj.weight`: original DeepSeek-V3,
    transformers 4.x) -> the stacked `...mlp.experts.gate_up_proj` / `down_proj` of this module."""
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for k, v in sd.items():
        parts = k.split(".")
        if "experts" in parts:
            j = parts.index("experts")
            if j + 3 < len(parts) and parts[j + 1].isdigit() and parts[j + 3] == "weight":
                prefix = ".".join(parts[: j + 1])
                groups.setdefault(prefix, {}).setdefault(int(parts[j + 1]), {})[parts[j + 2]] = v
                continue
        out[k] = v
    for prefix, experts in groups.items():
        ids = sorted(experts)
        out[f"{prefix}.gate_up_proj"] = torch.stack(
            [torch.cat((experts[e]["gate_proj"], experts[e]["up_proj"]), 0) for e in ids])
        out[f"{prefix}.down_proj"] = torch.stack([experts[e]["down_proj"] for e in ids])
    return out


def unstack_expert_weights(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `stack_expert_weights`."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith("experts.gate_up_proj"):
            prefix = k[: -len(".gate_up_proj")]
            for e in range(v.shape[0]):
                gate, up = v[e].chunk(2, dim=0)
                out[f"{prefix}.{e}.gate_proj.weight"] = gate
                out[f"{prefix}.{e}.up_proj.weight"] = up
        elif k.endswith("experts.down_proj"):
            prefix = k[: -len(".down_proj")]
            for e in range(v.shape[0]):
                out[f"{prefix}.{e}.down_proj.weight"] = v[e]
        else:
            out[k] = v
    return out
