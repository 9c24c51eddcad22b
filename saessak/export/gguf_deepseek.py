"""A DeepSeek-V3-architecture model as one GGUF file of llama.cpp's `deepseek2` architecture.

Follows llama.cpp's converter (`DeepseekV2Model` in conversion/deepseek.py, which serves
"DeepseekV2ForCausalLM" and "DeepseekV3ForCausalLM", with the generic keys of `TextModel`), as of
ggml-org/llama.cpp master, conversion/deepseek.py 7bca1fd9 / conversion/base.py 2bbcf7fc (2026):

- Input: a state dict with Hugging Face `DeepseekV3ForCausalLM` names (torch tensors or numpy
  arrays) and its config as a dict. Routed experts come either stacked as transformers 5 keeps
  them (`mlp.experts.gate_up_proj` [E, 2*I, H], gate rows first, and `mlp.experts.down_proj`
  [E, H, I]) or one module per expert as DeepSeek's own checkpoints store them
  (`mlp.experts.N.{gate,up,down}_proj.weight`); both become `ffn_{gate,up,down}_exps`, stacked
  [E, out, in] in expert order (GGUF shape {in, out, E}).
- MLA: `kv_b_proj` is written split, as the current converter does and as llama.cpp's MLA path
  (`is_mla`: key_length_mla / value_length_mla set) requires: per head its first
  qk_nope_head_dim rows become `attn_k_b` (transposed: [H, kv_lora_rank, qk_nope]) and the
  remaining v_head_dim rows `attn_v_b` ([H, v_head_dim, kv_lora_rank]); no `attn_kv_b` (only
  legacy GGUFs have it). head_count_kv is 1 and key_length / value_length are
  kv_lora_rank + qk_rope_head_dim / kv_lora_rank (MLA as MQA over the latent); the per-head
  sizes go in key_length_mla / value_length_mla.
- RoPE: no reordering. DeepSeek's weights keep each rotary pair adjacent (`rope_interleave`,
  the transformers default), which is what llama.cpp's deepseek2 RoPE (NORM type) rotates, so
  the converter writes q and kv_a_mqa unchanged. A config with `rope_interleave: false` (pairs
  are the two halves, rotate-half) gets the rope rows of q / q_b and of kv_a_mqa's k_pe part
  interleaved, as saessak's Llama export does (the converter has no such case).
- MoE: router `ffn_gate_inp` (kept f32, as the converter keeps it), `exp_probs_b.bias`
  (e_score_correction_bias), shared experts `ffn_*_shexp`; group-limited routing keys
  (expert_group_count / expert_group_used_count) when n_group / topk_group are set.
- Dropped as the converter drops them: MTP layers (index >= num_hidden_layers) and a tied
  lm_head (llama.cpp then reuses token_embd).
- Two deliberate additions over the converter, both so llama.cpp reads the file as transformers
  runs the model: `expert_gating_func` is always written (sigmoid = 2; transformers'
  DeepseekV3 router is sigmoid only, and llama.cpp falls back to softmax when the key is
  missing, which the converter leaves out when config.json has no `scoring_func`); and
  `attention.q_lora_rank` is written as 0 when q_lora_rank is None (llama.cpp reads the key as
  required unless the layer count is that of a known "lite" model; 0 makes it load `attn_q`).
- Tokenizer: the same metadata as saessak's Llama export (saessak/export/gguf_export.py) for
  saessak's own tokenizer; an imported tokenizer (a folder with tokenizer_config.json or
  chat_template.jinja) as the imported-model export writes it (byte-level BPE as "gpt2" with
  its merges, pre-tokenizer "deepseek-v3" unless told otherwise).

Norms, 1-D tensors and the router stay f32 in f16 / bf16 files; everything else is converted.
Written to a temporary name and renamed, so an interrupted export leaves no partial file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from saessak.errors import UserError
from saessak.io import atomic_path

ARCH = "deepseek2"

# Fields every export needs; the rest have defaults (n_group, topk_group, routed_scaling_factor ...).
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
             "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
             "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "first_k_dense_replace",
             "rms_norm_eps", "max_position_embeddings")
_OUTTYPES = ("f32", "f16", "bf16")


# ---------------------------------------------------------------- config

def _check_config(cfg: Mapping[str, Any]) -> dict:
    """The config's values the export uses, or a UserError naming the field at fault. What the
    maths allows is `DeepseekConfig.from_hf_config`'s to decide (the model's own rules); here only
    what a file needs on top: the fields present, the architecture, no quantization. The one
    thing the writer computes that the model does not is `rope_interleave: false` (see above)."""
    from saessak.model.deepseek import DeepseekConfig

    for key in _REQUIRED:
        if cfg.get(key) is None:
            raise UserError(f"DeepSeek config: field {key!r} is missing")
    archs = cfg.get("architectures") or []
    if archs and "DeepseekV3ForCausalLM" not in archs:
        raise UserError(f"DeepSeek config: architectures {archs} is not DeepseekV3ForCausalLM")
    if cfg.get("quantization_config"):
        raise UserError("DeepSeek config: quantization_config is set; export a dequantized (bf16/f32) checkpoint")
    try:
        checked = DeepseekConfig.from_hf_config({**cfg, "rope_interleave": True})
    except UserError as e:
        raise UserError(f"DeepSeek config: {str(e).removeprefix('config.json: ').removeprefix('deepseek config: ')}"
                        ) from None
    except (TypeError, ValueError) as e:
        raise UserError(f"DeepSeek config: invalid field ({e})") from None
    c = dict(cfg)
    c["rope_theta"] = checked.rope_theta
    c["q_lora_rank"] = checked.q_lora_rank or None
    return c


def _add_metadata(w, c: dict, outtype: str) -> None:
    import gguf

    w.add_block_count(c["num_hidden_layers"])
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(1)  # MLA runs as MQA over the shared latent
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(float(c["rms_norm_eps"]))
    w.add_expert_count(c["n_routed_experts"])
    w.add_expert_used_count(c["num_experts_per_tok"])
    if c.get("n_group") is not None:
        w.add_expert_group_count(c["n_group"])
    if c.get("topk_group") is not None:
        w.add_expert_group_used_count(c["topk_group"])
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    w.add_leading_dense_block_count(c["first_k_dense_replace"])
    w.add_vocab_size(c["vocab_size"])
    w.add_q_lora_rank(c["q_lora_rank"] or 0)
    w.add_kv_lora_rank(c["kv_lora_rank"])
    w.add_key_length(c["kv_lora_rank"] + c["qk_rope_head_dim"])
    w.add_value_length(c["kv_lora_rank"])
    w.add_key_length_mla(c["qk_nope_head_dim"] + c["qk_rope_head_dim"])
    w.add_value_length_mla(c["v_head_dim"])
    w.add_expert_feed_forward_length(c["moe_intermediate_size"])
    w.add_expert_shared_count(c["n_shared_experts"])
    if c.get("routed_scaling_factor") is not None:
        w.add_expert_weights_scale(float(c["routed_scaling_factor"]))
    if c.get("norm_topk_prob"):
        w.add_expert_weights_norm(True)
    w.add_rope_dimension_count(c["qk_rope_head_dim"])
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "bf16": gguf.LlamaFileType.MOSTLY_BF16}[outtype])


# ---------------------------------------------------------------- tokenizer

def _add_tokenizer(w, tokenizer_json: Path, vocab_size: int, tokenizer_pre: str | None) -> None:
    """tokenizer.ggml.* and the chat template: saessak's own tokenizer as saessak's Llama export
    writes it, an imported one as the imported-model export writes it."""
    from saessak.export.gguf_imported import _vocab as imported_vocab
    from saessak.export.gguf_parts import vocab_for_gguf
    from saessak.tokenizer import Tokenizer
    from saessak.tokenizer.imported import load_tokenizer

    tokenizer_json = Path(tokenizer_json)
    if not tokenizer_json.is_file():
        raise UserError(f"{tokenizer_json}: tokenizer.json not found")
    tok = load_tokenizer(tokenizer_json)
    if isinstance(tok, Tokenizer):
        tokens, scores, types = vocab_for_gguf(tokenizer_json, vocab_size)
        merges = None
    else:
        tokens, scores, types, merges = imported_vocab(tok, tokenizer_json, vocab_size)
    if len(tokens) != vocab_size:
        raise UserError(f"{tokenizer_json}: {len(tokens)} tokens do not fit the model's vocab_size {vocab_size}")
    w.add_tokenizer_model("gpt2" if merges is not None else "llama")
    w.add_tokenizer_pre(tokenizer_pre or ("deepseek-v3" if merges is not None else "default"))
    w.add_token_list(tokens)
    if scores is not None:
        w.add_token_scores(scores)
    w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    for key, value in (("bos", tok.bos_id), ("eos", tok.eot_id), ("eot", tok.eot_id), ("unk", tok.unk_id),
                       ("pad", tok.pad_id)):
        if value is not None:  # eos = end of the assistant's turn, where generation stops
            getattr(w, f"add_{key}_token_id")(value)
    w.add_add_bos_token(False)  # the chat template writes the bos token itself
    if isinstance(tok, Tokenizer):
        w.add_add_eos_token(False)
        w.add_add_space_prefix(True)  # Metaspace "always": "▁" before every text segment
    w.add_chat_template(tok.chat_template)


# ---------------------------------------------------------------- tensors

def _np(t) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t.astype(np.float32, copy=False)
    return t.detach().to("cpu").float().numpy()  # torch (also bf16, which numpy lacks)


def _interleave_rope_part(w: np.ndarray, n_heads: int, head_dim: int, start: int, rope_dim: int) -> np.ndarray:
    """Rows [start, start+rope_dim) of each head reordered from halves to adjacent pairs."""
    from saessak.export.gguf_parts import interleave_rope_rows

    w = w.reshape(n_heads, head_dim, -1).copy()
    part = w[:, start:start + rope_dim].reshape(n_heads * rope_dim, -1)
    w[:, start:start + rope_dim] = interleave_rope_rows(part, n_heads).reshape(n_heads, rope_dim, -1)
    return w.reshape(n_heads * head_dim, -1)


class _Source:
    """The state dict, taken name by name; what is left at the end is unknown."""

    def __init__(self, state_dict: Mapping[str, Any], n_layers: int):
        self.sd = dict(state_dict)
        for name in list(self.sd):
            m = re.match(r"(?:model\.)?layers\.(\d+)\.", name)
            if m and int(m.group(1)) >= n_layers:  # multi-token-prediction layers: llama.cpp's converter skips them
                del self.sd[name]

    def has(self, name: str) -> bool:
        return name in self.sd

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.sd:
            raise UserError(f"DeepSeek state dict: tensor {name} is missing")
        t = _np(self.sd.pop(name))
        if tuple(t.shape) != tuple(shape):
            raise UserError(f"DeepSeek state dict: tensor {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        return t

    def finish(self) -> None:
        if self.sd:
            extra = sorted(self.sd)
            hint = " (a quantized checkpoint? export a dequantized one)" if any("scale" in n for n in extra) else ""
            raise UserError(f"DeepSeek state dict: unknown tensor {extra[0]}{hint}"
                            + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))


def _tensors(state_dict: Mapping[str, Any], c: dict):
    """(GGUF name, array in torch layout [out, in] / [E, out, in]) for every tensor llama.cpp reads."""
    import gguf

    T, N = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES

    def name(kind, bid=None, suffix="weight"):
        return N[kind].format(bid=bid) + "." + suffix

    H, D, V = c["hidden_size"], c["num_attention_heads"], c["vocab_size"]
    nope, rope, vd = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    qk, r_kv, r_q = nope + rope, c["kv_lora_rank"], c["q_lora_rank"]
    E, I_moe, I = c["n_routed_experts"], c["moe_intermediate_size"], c["intermediate_size"]
    I_sh = I_moe * c["n_shared_experts"]
    interleave = c.get("rope_interleave", True) is False
    src = _Source(state_dict, c["num_hidden_layers"])

    yield name(T.TOKEN_EMBD), src.take("model.embed_tokens.weight", (V, H))
    for b in range(c["num_hidden_layers"]):
        p = f"model.layers.{b}."
        yield name(T.ATTN_NORM, b), src.take(p + "input_layernorm.weight", (H,))
        if r_q is None:
            q = src.take(p + "self_attn.q_proj.weight", (D * qk, H))
            yield name(T.ATTN_Q, b), _interleave_rope_part(q, D, qk, nope, rope) if interleave else q
        else:
            yield name(T.ATTN_Q_A, b), src.take(p + "self_attn.q_a_proj.weight", (r_q, H))
            yield name(T.ATTN_Q_A_NORM, b), src.take(p + "self_attn.q_a_layernorm.weight", (r_q,))
            q = src.take(p + "self_attn.q_b_proj.weight", (D * qk, r_q))
            yield name(T.ATTN_Q_B, b), _interleave_rope_part(q, D, qk, nope, rope) if interleave else q
        kv_a = src.take(p + "self_attn.kv_a_proj_with_mqa.weight", (r_kv + rope, H))
        yield name(T.ATTN_KV_A_MQA, b), _interleave_rope_part(kv_a, 1, r_kv + rope, r_kv, rope) if interleave else kv_a
        yield name(T.ATTN_KV_A_NORM, b), src.take(p + "self_attn.kv_a_layernorm.weight", (r_kv,))
        kv_b = src.take(p + "self_attn.kv_b_proj.weight", (D * (nope + vd), r_kv)).reshape(D, nope + vd, r_kv)
        yield name(T.ATTN_K_B, b), np.ascontiguousarray(kv_b[:, :nope].transpose(0, 2, 1))  # [D, r_kv, nope]
        yield name(T.ATTN_V_B, b), np.ascontiguousarray(kv_b[:, nope:])  # [D, vd, r_kv]
        yield name(T.ATTN_OUT, b), src.take(p + "self_attn.o_proj.weight", (H, D * vd))
        yield name(T.FFN_NORM, b), src.take(p + "post_attention_layernorm.weight", (H,))
        m = p + "mlp."
        if b < c["first_k_dense_replace"]:
            yield name(T.FFN_GATE, b), src.take(m + "gate_proj.weight", (I, H))
            yield name(T.FFN_UP, b), src.take(m + "up_proj.weight", (I, H))
            yield name(T.FFN_DOWN, b), src.take(m + "down_proj.weight", (H, I))
            continue
        yield name(T.FFN_GATE_INP, b), src.take(m + "gate.weight", (E, H))
        yield name(T.FFN_EXP_PROBS_B, b, "bias"), src.take(m + "gate.e_score_correction_bias", (E,))
        if src.has(m + "experts.gate_up_proj") or not src.has(m + "experts.0.gate_proj.weight"):
            gate_up = src.take(m + "experts.gate_up_proj", (E, 2 * I_moe, H))
            gate, up = gate_up[:, :I_moe], gate_up[:, I_moe:]  # transformers: gate, up = (x @ W.T).chunk(2)
            down = src.take(m + "experts.down_proj", (E, H, I_moe))
        else:
            per = {w: np.stack([src.take(f"{m}experts.{e}.{w}.weight", shape) for e in range(E)])
                   for w, shape in (("gate_proj", (I_moe, H)), ("up_proj", (I_moe, H)), ("down_proj", (H, I_moe)))}
            gate, up, down = per["gate_proj"], per["up_proj"], per["down_proj"]
        yield name(T.FFN_GATE_EXP, b), np.ascontiguousarray(gate)
        yield name(T.FFN_UP_EXP, b), np.ascontiguousarray(up)
        yield name(T.FFN_DOWN_EXP, b), down
        yield name(T.FFN_GATE_SHEXP, b), src.take(m + "shared_experts.gate_proj.weight", (I_sh, H))
        yield name(T.FFN_UP_SHEXP, b), src.take(m + "shared_experts.up_proj.weight", (I_sh, H))
        yield name(T.FFN_DOWN_SHEXP, b), src.take(m + "shared_experts.down_proj.weight", (H, I_sh))
    yield name(T.OUTPUT_NORM), src.take("model.norm.weight", (H,))
    if c.get("tie_word_embeddings"):
        src.sd.pop("lm_head.weight", None)  # llama.cpp reuses token_embd
    else:
        yield name(T.OUTPUT), src.take("lm_head.weight", (V, H))
    src.finish()


def _keep_f32(gguf_name: str, data: np.ndarray) -> bool:
    """The converter's rule: 1-D tensors, norms, the router and non-weights stay f32."""
    return (data.ndim <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight")
            or re.fullmatch(r"blk\.\d+\.ffn_gate_inp\.weight", gguf_name) is not None)


# ---------------------------------------------------------------- entry points

def write_deepseek_gguf(out: str | os.PathLike, state_dict: Mapping[str, Any], hf_config: Mapping[str, Any],
                        tokenizer_json: str | os.PathLike, *, name: str = "deepseek-v3", outtype: str = "f32",
                        tokenizer_pre: str | None = None) -> Path:
    """Write `state_dict` (Hugging Face DeepseekV3ForCausalLM names) with `hf_config` and the
    tokenizer at `tokenizer_json` as a deepseek2 GGUF at `out`."""
    import gguf

    if outtype not in _OUTTYPES:
        raise UserError(f"outtype {outtype!r}: choose one of {', '.join(_OUTTYPES)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name such as model.gguf")
    if out.exists() and out.read_bytes()[:4] != b"GGUF":
        raise UserError(f"--out {out}: exists and is not a GGUF file; choose another path")
    c = _check_config(hf_config)
    tensors = list(_tensors(state_dict, c))  # every check before the file is started
    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(str(tmp), ARCH)
        w.add_name(name)
        _add_metadata(w, c, outtype)
        _add_tokenizer(w, Path(tokenizer_json), c["vocab_size"], tokenizer_pre)
        for gguf_name, data in tensors:
            data = np.ascontiguousarray(data, dtype=np.float32)
            if outtype == "f32" or _keep_f32(gguf_name, data):
                w.add_tensor(gguf_name, data)
            elif outtype == "f16":
                w.add_tensor(gguf_name, data.astype(np.float16))
            else:
                q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16)
                w.add_tensor(gguf_name, q, raw_dtype=gguf.GGMLQuantizationType.BF16)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out


def _read_state_dict(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (model_dir / "model.safetensors").exists():
        shards = ["model.safetensors"]
    else:
        raise UserError(f"{model_dir}: no model.safetensors (or model.safetensors.index.json)")
    sd: dict = {}
    for shard in shards:
        sd.update(load_file(str(model_dir / shard)))
    return sd


def export_deepseek_gguf(model_dir: str | os.PathLike, out: str | os.PathLike, tokenizer_json: str | os.PathLike,
                         outtype: str = "f32", name: str | None = None, tokenizer_pre: str | None = None) -> Path:
    """A Hugging Face DeepseekV3ForCausalLM folder (config.json, model*.safetensors) and a
    tokenizer.json (the run's, saessak's own or an imported one) -> one deepseek2 GGUF file."""
    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.json"
    if not cfg_path.exists():
        raise UserError(f"{model_dir}: no config.json")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    return write_deepseek_gguf(out, _read_state_dict(model_dir), cfg, tokenizer_json,
                               name=name or model_dir.name, outtype=outtype, tokenizer_pre=tokenizer_pre)
