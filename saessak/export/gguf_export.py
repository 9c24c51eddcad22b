"""Export a run's model as one GGUF file (llama architecture) for llama.cpp and Ollama.

A DeepSeek run's model goes to llama.cpp's deepseek2 architecture instead
(saessak/export/gguf_deepseek.py), from the checkpoint's tensors and `DeepseekConfig.to_hf_config`.

- Tensors: our Llama parameter names mapped to GGUF's with the `gguf` package's name map. The
  q/k projections are re-ordered: Hugging Face Llama applies RoPE to the two halves of each head
  (rotate-half), llama.cpp's llama architecture to adjacent pairs, so each head's rows are
  interleaved (first half, second half) -> (pair 0, pair 1, ...). Norms stay f32.
- Tokenizer: the "llama" (SentencePiece) vocabulary: tokens as in tokenizer.json ("▁" for
  spaces), token types (control for our special tokens, byte for <0xNN>, unknown for <unk>),
  and scores that rank BPE merges (a token created by an earlier merge scores higher), which is
  how llama.cpp's SentencePiece tokenizer decides what to merge first.
- Metadata: shape, RoPE theta, RMSNorm epsilon, special token ids (eos = <|end|>, the end of an
  assistant turn), the Jinja chat template, licence.

Written to a temporary name and renamed, so an interrupted export leaves no partial file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from saessak.errors import UserError
from saessak.export.hf import deepseek_export_weights, is_deepseek_checkpoint
from saessak.export.gguf_parts import interleave_rope_rows, vocab_for_gguf  # noqa: F401  (also imported from here)
from saessak.io import atomic_path
from saessak.ledger import StageTimer
from saessak.model.loading import Finished, find
from saessak.tokenizer import Tokenizer
from saessak.tokenizer.chat_format import CHAT_TEMPLATE


def _tensors(checkpoint: Path, cfg: dict, outtype: str):
    from safetensors.numpy import load_file
    import gguf

    sd = load_file(str(checkpoint / "model.safetensors"))
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    for name in sorted(sd):
        w = sd[name].astype(np.float32)
        if name.endswith("self_attn.q_proj.weight"):
            w = interleave_rope_rows(w, cfg["num_attention_heads"])
        elif name.endswith("self_attn.k_proj.weight"):
            w = interleave_rope_rows(w, cfg["num_key_value_heads"])
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for tensor {name}")
        if outtype == "f16" and w.ndim == 2:
            w = w.astype(np.float16)
        yield gguf_name, np.ascontiguousarray(w)


def export_gguf(run_dir: str | os.PathLike, out: str | os.PathLike, stage: str | None = None,
                outtype: str = "f32") -> Path:
    src = find(run_dir, stage, needed_by="export", option="--run", checkpoint_ok=False)
    # The export is an attempt of its own in the run's ledger (a bad --out ends it as failed).
    with StageTimer(src.run.root, "export", facts={"format": "gguf", "model_stage": src.stage, "out": str(out),
                                                   "outtype": outtype}):
        return _write_gguf(src, Path(out), outtype)


def _write_deepseek(src: Finished, out: Path, outtype: str, cfg: dict, meta: dict) -> Path:
    from saessak.export.gguf_deepseek import write_deepseek_gguf
    from saessak.model.deepseek import DeepseekConfig

    return write_deepseek_gguf(out, deepseek_export_weights(src.checkpoint, cfg),
                               DeepseekConfig.from_dict(cfg).to_hf_config(), src.tokenizer_json,
                               name=f"saessak-{meta.get('preset') or 'model'}-{src.stage}", outtype=outtype)


def _write_gguf(src: Finished, out: Path, outtype: str) -> Path:
    import gguf

    from saessak.export.gguf_imported import write_imported_gguf
    from saessak.export.imported import is_imported

    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name such as model.gguf")
    if out.exists() and out.read_bytes()[:4] != b"GGUF":
        raise UserError(f"--out {out}: exists and is not a GGUF file; choose another path")
    if is_imported(src):
        return write_imported_gguf(src, out, outtype)
    cfg = json.loads((src.checkpoint / "config.json").read_text(encoding="utf-8"))
    meta_path = src.checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    if is_deepseek_checkpoint(cfg):
        return _write_deepseek(src, out, outtype, cfg, meta)
    tok = Tokenizer.load(src.tokenizer_json)
    tokens, scores, types = vocab_for_gguf(src.tokenizer_json, cfg["vocab_size"])
    if len(tokens) != cfg["vocab_size"]:
        raise UserError(f"{src.tokenizer_json}: {len(tokens)} tokens do not fit the model's vocab_size {cfg['vocab_size']}")

    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        w.add_name(f"saessak-{meta.get('preset') or 'model'}-{src.stage}")
        w.add_license("apache-2.0")
        w.add_languages(["ko"])
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(cfg["num_attention_heads"])
        w.add_head_count_kv(cfg["num_key_value_heads"])
        w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
        w.add_rope_freq_base(float(cfg["rope_theta"]))
        w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
        w.add_vocab_size(cfg["vocab_size"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)

        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(tok.bos_id)
        w.add_eos_token_id(tok.eot_id)  # generation ends at the end of the assistant's turn
        w.add_eot_token_id(tok.eot_id)
        w.add_unk_token_id(tok.unk_id)
        w.add_pad_token_id(tok.pad_id)
        w.add_add_bos_token(False)  # as in the HF export: the chat template writes <s> itself
        w.add_add_eos_token(False)
        w.add_add_space_prefix(True)  # Metaspace "always": "▁" before every text segment
        w.add_chat_template(CHAT_TEMPLATE)

        for name, data in _tensors(src.checkpoint, cfg, outtype):
            w.add_tensor(name, data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out
