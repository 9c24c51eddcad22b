"""GGUF of an imported model (Llama 3, Mistral, Qwen2, Qwen3) for llama.cpp and Ollama.

What differs from saessak's own model (saessak/export/gguf_export.py):
- architecture: Llama and Mistral are llama.cpp's `llama` (q/k rows interleaved for its adjacent-
  pair RoPE, as for saessak's model); Qwen2 and Qwen3 are `qwen2` / `qwen3`, whose RoPE is
  rotate-half already (NEOX), so their rows stay as they are; biases and q/k norms keep GGUF's
  names for them;
- Llama 3's RoPE scaling travels as the `rope_freqs` tensor: per frequency, how much slower it
  turns than unscaled (1 for the kept high frequencies, `factor` for the low ones);
- tokenizer: byte-level BPE (Llama 3, Qwen) is GGUF's "gpt2" model with its merges and the
  family's pre-tokenizer name; a SentencePiece-style one (Mistral) is "llama" as saessak's is;
- metadata: the model's own chat template, bos/eos/pad ids and `head_dim` (key/value length).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saessak.errors import UserError
from saessak.io import atomic_path
from saessak.model.loading import Finished

# architecture -> (GGUF architecture name, q/k rows interleaved?, tokenizer pre-tokenizer name)
_ARCH = {
    "LlamaForCausalLM": ("LLAMA", True, "llama-bpe"),
    "MistralForCausalLM": ("LLAMA", True, "default"),
    "Qwen2ForCausalLM": ("QWEN2", False, "qwen2"),
    "Qwen3ForCausalLM": ("QWEN3", False, "qwen2"),
}


def _vocab(tok, tokenizer_json: Path, size: int):
    """Tokens, scores (SentencePiece-style) or None, types, and merges (byte-level BPE) or None, by id."""
    from gguf import TokenType

    from saessak.export.gguf_parts import vocab_for_gguf

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    if not tok.byte_level:
        tokens, scores, types = vocab_for_gguf(tokenizer_json, size)
        for i, t in added.items():  # the family's own control tokens ([INST], ...), not only saessak's
            if t.get("special") and types[i] != int(TokenType.UNKNOWN):
                types[i] = int(TokenType.CONTROL)
        return tokens, scores, types, None
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(TokenType.UNUSED)] * size
    for text, i in spec["model"]["vocab"].items():
        tokens[i], types[i] = text, int(TokenType.NORMAL)
    for i, t in added.items():
        tokens[i] = t["content"]
        types[i] = int(TokenType.CONTROL if t.get("special") else TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    return tokens, None, types, merges


def _rope_freqs(cfg) -> np.ndarray:
    """Llama 3 scaling as llama.cpp applies it: unscaled frequency / scaled frequency."""
    import dataclasses

    from saessak.model.llama import rope_inv_freq

    plain = rope_inv_freq(dataclasses.replace(cfg, rope_scaling=None))
    return (plain / rope_inv_freq(cfg)).numpy().astype(np.float32)


def write_imported_gguf(src: Finished, out: Path, outtype: str) -> Path:
    import gguf

    from saessak.export.gguf_parts import interleave_rope_rows
    from saessak.model.checkpoint import load_config, read_weights
    from saessak.tokenizer.imported import load_tokenizer

    cfg = load_config(src.checkpoint)
    arch_name, interleave, pre = _ARCH[cfg.architecture]
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    tok = load_tokenizer(src.tokenizer_json)
    tokens, scores, types, merges = _vocab(tok, src.tokenizer_json, cfg.vocab_size)
    if len(tokens) != cfg.vocab_size:
        raise UserError(f"{src.tokenizer_json}: {len(tokens)} tokens do not fit the model's vocab_size {cfg.vocab_size}")
    name_map = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
        w.add_name(f"{src.name}")
        w.add_context_length(cfg.max_position_embeddings)
        w.add_embedding_length(cfg.hidden_size)
        w.add_block_count(cfg.num_hidden_layers)
        w.add_feed_forward_length(cfg.intermediate_size)
        w.add_head_count(cfg.num_attention_heads)
        w.add_head_count_kv(cfg.num_key_value_heads)
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_rope_freq_base(float(cfg.rope_theta))
        w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        w.add_vocab_size(cfg.vocab_size)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
        w.add_tokenizer_model("gpt2" if tok.byte_level else "llama")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        if merges is not None:
            w.add_token_merges(merges)
        else:
            w.add_token_scores(scores)
        for key, value in (("bos", tok.bos_id), ("eos", tok.eot_id), ("pad", tok.pad_id), ("unk", tok.unk_id)):
            if value is not None:
                getattr(w, f"add_{key}_token_id")(value)
        w.add_add_bos_token(False)  # the chat template writes the bos token itself
        w.add_chat_template(tok.chat_template)
        sd = read_weights(src.checkpoint, cfg)
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        if cfg.rope_scaling:
            w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", _rope_freqs(cfg))
        for name in sorted(sd):
            t = sd[name].float().numpy()
            if interleave and name.endswith("self_attn.q_proj.weight"):
                t = interleave_rope_rows(t, cfg.num_attention_heads)
            elif interleave and name.endswith("self_attn.k_proj.weight"):
                t = interleave_rope_rows(t, cfg.num_key_value_heads)
            gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise UserError(f"{src.checkpoint}: no GGUF name for tensor {name}")
            if outtype == "f16" and t.ndim == 2:
                t = t.astype(np.float16)
            w.add_tensor(gguf_name, np.ascontiguousarray(t))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out
