"""Export a run's model as a Hugging Face folder that needs no custom code.

    config.json             LlamaForCausalLM config (our ModelConfig maps 1:1 onto it), or for a DeepSeek
                            model DeepseekV3ForCausalLM's (`DeepseekConfig.to_hf_config`)
    model.safetensors       the checkpoint as saved (parameter names are already Llama's); a DeepSeek
                            model's without its MTP modules, which transformers does not load
    tokenizer.json          the trained tokenizer; role markers made non-special text-less tokens so every
                            decoder drops the word-boundary "▁" a reply starts with (see export_tokenizer)
    tokenizer_config.json   PreTrainedTokenizerFast, special tokens, Jinja chat_template
    special_tokens_map.json
    generation_config.json  end-of-turn <|end|> (and </s>) stop generation
    README.md               the model card (data card summary, cost ledger, evaluation, licence)

The folder is built under a temporary name and renamed into place, so an interrupted export
never leaves a half-written folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from saessak.errors import UserError
from saessak.io import atomic_dir
from saessak.ledger import StageTimer
from saessak.model.loading import find
from saessak.tokenizer import special_tokens as st
from saessak.tokenizer.chat_format import CHAT_TEMPLATE


def hf_config(cfg: dict, token_ids: dict[str, int]) -> dict:
    """transformers' LlamaConfig fields from our config.json (saessak.model.ModelConfig)."""
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg["max_position_embeddings"],
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        # transformers >= 5 reads RoPE settings from here; older versions read rope_theta above.
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg["rope_theta"]},
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": cfg["tie_word_embeddings"],
        "initializer_range": cfg.get("initializer_range", 0.02),
        "bos_token_id": token_ids[st.BOS],
        "eos_token_id": token_ids[st.END_OF_TURN],
        "pad_token_id": token_ids[st.PAD],
        "torch_dtype": "float32",
        "use_cache": True,
    }


def deepseek_hf_config(cfg: dict, token_ids: dict[str, int]) -> dict:
    """transformers' DeepseekV3Config fields from our DeepseekConfig config.json."""
    from saessak.model.deepseek import DeepseekConfig

    return {**DeepseekConfig.from_dict(cfg).to_hf_config(),
            "bos_token_id": token_ids[st.BOS], "eos_token_id": token_ids[st.END_OF_TURN],
            "pad_token_id": token_ids[st.PAD], "torch_dtype": "float32", "use_cache": True}


def is_deepseek_checkpoint(cfg: dict) -> bool:
    from saessak.model.deepseek import DeepseekConfig

    return cfg.get("architecture") == DeepseekConfig.architecture


def deepseek_export_weights(checkpoint: Path, cfg: dict) -> dict:
    """The checkpoint's tensors without the MTP modules (`model.layers.{L+i}.*`), as
    `DeepSeek.state_dict_for_export(keep_mtp=False)` gives them, read without building the model."""
    from safetensors.torch import load_file

    L = cfg["num_hidden_layers"]
    mtp = tuple(f"model.layers.{L + i}." for i in range(cfg.get("num_nextn_predict_layers") or 0))
    sd = load_file(str(checkpoint / "model.safetensors"))
    return {k: v for k, v in sd.items() if not (mtp and k.startswith(mtp))}


def _prepends_to_every_segment(pre_tokenizer: dict | None) -> bool:
    """Whether the pre-tokenizer is (or contains) Metaspace prepending "▁" to every text segment."""
    if not pre_tokenizer:
        return False
    parts = pre_tokenizer.get("pretokenizers", [pre_tokenizer])
    return any(p.get("type") == "Metaspace" and p.get("prepend_scheme") == "always" for p in parts)


def export_tokenizer(spec: dict) -> dict:
    """The run's tokenizer.json as the export writes it (same vocabulary, merges and encoding).

    Why: our Metaspace pre-tokenizer prepends "▁" to every text segment, including each message's
    content after its role marker, so a reply's first token carries a word-boundary "▁". The
    trained decoder strips only the one space that starts the whole text, which is enough for
    saessak (it decodes a reply on its own) but not for servers that detokenize with the prompt as
    context (vLLM's DecodeStream, transformers' text-generation pipeline: text(prompt + reply) minus
    text(prompt)): there the "▁" sits mid-text and becomes a leading space of every reply.
    `skip_special_tokens` removes special tokens before the decoder runs, so the decoder cannot
    know where a segment began. Hence the role markers (<|system|>, <|user|>, <|assistant|>) become
    non-special added tokens (still one id each, still matched in text, so the chat template's ids
    are unchanged), and a decoder step after Fuse deletes each marker together with the one space
    that the pre-tokenizer put after it: role markers never appear in decoded text, and a segment
    decodes the same whether or not the prompt is decoded with it. <|end|>, <s>, </s> stay special.
    A tokenizer that does not prepend to every segment, or whose decoder is not the Fuse-based
    sequence saessak trains, is returned unchanged.
    """
    decoder = spec.get("decoder") or {}
    steps = decoder.get("decoders") if decoder.get("type") == "Sequence" else None
    roles = [t for t in st.ROLE_TOKENS.values() if any(a["content"] == t for a in spec.get("added_tokens", []))]
    fuse = [i for i, d in enumerate(steps or []) if d.get("type") == "Fuse"]
    if not (roles and fuse and _prepends_to_every_segment(spec.get("pre_tokenizer"))):
        return spec
    spec = json.loads(json.dumps(spec))  # a copy
    for tok in spec["added_tokens"]:
        if tok["content"] in roles:
            tok["special"] = False
    pattern = "(?:" + "|".join(re.escape(t) for t in roles) + ") ?"
    spec["decoder"]["decoders"].insert(fuse[0] + 1, {"type": "Replace", "pattern": {"Regex": pattern}, "content": ""})
    return spec


def tokenizer_config(max_length: int) -> dict:
    return {
        # Loads tokenizer.json as it is: no slow-tokenizer conversion, no extra normaliser.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": st.BOS,
        "eos_token": st.END_OF_TURN,  # what a chat model ends its turn with
        "pad_token": st.PAD,
        "unk_token": st.UNK,
        # The role markers are added tokens but not special ones (see export_tokenizer).
        "additional_special_tokens": [st.EOS],
        # Our encoder never adds BOS; the chat template writes it explicitly.
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "padding_side": "left",
        "chat_template": CHAT_TEMPLATE,
    }


def special_tokens_map() -> dict:
    return {"bos_token": st.BOS, "eos_token": st.END_OF_TURN, "pad_token": st.PAD, "unk_token": st.UNK,
            "additional_special_tokens": [st.EOS]}


def generation_config(token_ids: dict[str, int]) -> dict:
    return {
        "bos_token_id": token_ids[st.BOS],
        # <|end|> closes an assistant turn; </s> closes a document (what a base model may emit).
        "eos_token_id": [token_ids[st.END_OF_TURN], token_ids[st.EOS]],
        "pad_token_id": token_ids[st.PAD],
    }


def _token_ids(tokenizer_json: Path) -> dict[str, int]:
    from saessak.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer_json)
    return {t: tok.token_to_id(t) for t in st.SPECIAL_TOKENS}


def guard_output(out: Path, must_contain: str) -> None:
    """Refuse to replace an existing path that is not an earlier export (a typo must not wipe a folder)."""
    if not out.exists():
        return
    if out.is_dir():
        if any(out.iterdir()) and not (out / must_contain).exists():
            raise UserError(f"--out {out}: exists and is not an earlier export (no {must_contain}); choose another path")
    elif must_contain != "":
        raise UserError(f"--out {out}: exists and is a file, not an export folder")


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def export_hf(run_dir: str | os.PathLike, out: str | os.PathLike, stage: str | None = None,
              prices: str | os.PathLike | None = None, adapter_only: bool = False) -> Path:
    """Write the HF folder for `stage` of `run_dir` at `out` (replacing an earlier export there);
    an imported model's run or `adapter_only` go through saessak/export/imported.py."""
    from saessak.export import imported
    from saessak.export.model_card import render_model_card

    src = find(run_dir, stage, needed_by="export", option="--run", checkpoint_ok=False)
    out = Path(out)
    # The export is an attempt of its own in the run's ledger (a bad --out ends it as failed); the
    # model card prices every attempt before it.
    with StageTimer(src.run.root, "export", facts={"format": "hf", "model_stage": src.stage, "out": str(out)}) as timer:
        guard_output(out, must_contain="adapter_config.json" if adapter_only else "tokenizer_config.json")
        if adapter_only or imported.is_imported(src):
            card = render_model_card(src, prices=prices, exclude_attempt=timer.attempt)
            with atomic_dir(out) as tmp:
                (imported.write_adapter if adapter_only else imported.write_model)(src, tmp)
                (tmp / "README.md").write_text(card, encoding="utf-8")
            return out
        cfg = json.loads((src.checkpoint / "config.json").read_text(encoding="utf-8"))
        ids = _token_ids(src.tokenizer_json)
        # Before touching `out`: a bad run fails early.
        card = render_model_card(src, prices=prices, exclude_attempt=timer.attempt)
        deepseek = is_deepseek_checkpoint(cfg)
        with atomic_dir(out) as tmp:
            if deepseek:
                from safetensors.torch import save_file

                save_file(deepseek_export_weights(src.checkpoint, cfg), str(tmp / "model.safetensors"),
                          metadata={"format": "pt"})
            else:
                shutil.copyfile(src.checkpoint / "model.safetensors", tmp / "model.safetensors")
            spec = json.loads(src.tokenizer_json.read_text(encoding="utf-8"))
            _write_json(tmp / "tokenizer.json", export_tokenizer(spec))
            _write_json(tmp / "config.json", (deepseek_hf_config if deepseek else hf_config)(cfg, ids))
            _write_json(tmp / "tokenizer_config.json", tokenizer_config(cfg["max_position_embeddings"]))
            _write_json(tmp / "special_tokens_map.json", special_tokens_map())
            _write_json(tmp / "generation_config.json", generation_config(ids))
            (tmp / "README.md").write_text(card, encoding="utf-8")
    return out
