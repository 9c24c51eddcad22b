"""Tiny random-weight Hugging Face checkpoints of the four imported families, made in the test.

Each is built with transformers' own config class and `save_pretrained`, with a small tokenizer
trained here (byte-level BPE for Llama 3 and Qwen, SentencePiece-style byte-fallback BPE for
Mistral) and a hand-written chat template of the family's shape. Nothing comes from a hub.
"""

from __future__ import annotations

import json
from pathlib import Path

TEXTS = [
    "안녕하세요. 오늘 날씨가 참 좋네요.", "정답: 42", "사과 세 개와 배 두 개를 더하면 모두 다섯 개입니다.",
    "The quick brown fox jumps over the lazy dog.", "서울특별시 종로구 세종대로 209", "1 + 2 = 3, 10 - 4 = 6",
    "한국어 문장의 띄어쓰기를 고치세요.", "저는 학생입니다. 당신은 누구입니까?", "월요일 다음 날은 화요일입니다.",
] * 4

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set system = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.first and system %}{{ '[INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{% endfor %}"
)

FAMILIES = {
    # family: (config class, special tokens, bos, eos, chat template, byte-level?)
    "llama": ("LlamaConfig", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                              "<|end_header_id|>", "<|eot_id|>"], "<|begin_of_text|>", "<|eot_id|>", LLAMA3, True),
    "qwen2": ("Qwen2Config", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>", CHATML, True),
    "qwen3": ("Qwen3Config", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>", CHATML, True),
    "mistral": ("MistralConfig", ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", MISTRAL, False),
}
ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
        "mistral": "MistralForCausalLM"}


def train_tokenizer(family: str, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    _, specials, *_, byte_level = FAMILIES[family]
    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      special_tokens=specials + [f"<0x{i:02X}>" for i in range(256)])
    tok.train_from_iterator(TEXTS, trainer=trainer)
    if not byte_level:  # byte tokens are ordinary vocabulary (decoded by ByteFallback), as in Mistral's file
        spec = json.loads(tok.to_str())
        spec["added_tokens"] = [t for t in spec["added_tokens"] if not t["content"].startswith("<0x")]
        tok = Tokenizer.from_str(json.dumps(spec))
    return tok


def make_checkpoint(family: str, out: Path, *, shard: bool = False, layers: int = 2, config: dict | None = None,
                    seed: int = 0, template_file: bool = False, generation_config: bool = True,
                    dtype: str = "float32") -> Path:
    """A tiny random `family` checkpoint at `out` (save_pretrained), with tokenizer and chat template."""
    import torch
    import transformers
    from transformers import PreTrainedTokenizerFast

    cls_name, specials, bos, eos, template, _ = FAMILIES[family]
    tok = train_tokenizer(family)
    vocab = tok.get_vocab_size()
    shape = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                 rms_norm_eps=1e-6, eos_token_id=tok.token_to_id(eos),
                 bos_token_id=tok.token_to_id(bos) if bos else None)
    shape["tie_word_embeddings"] = family in ("qwen2", "qwen3")
    if family == "qwen3":
        shape["head_dim"] = 32  # != hidden / heads, as in the real Qwen3
    if family == "llama":
        shape["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 64}
    if family == "mistral":
        shape["sliding_window"] = None
    shape.update(config or {})
    cfg = getattr(transformers, cls_name)(**shape)
    torch.manual_seed(seed)
    model = getattr(transformers, ARCH[family])(cfg).eval()
    with torch.no_grad():  # random biases and norms, so the switches are exercised (HF inits them to 0/1)
        for name, p in model.named_parameters():
            if name.endswith(("bias", "norm.weight")):
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    model.to(getattr(torch, dtype)).save_pretrained(out, max_shard_size="100KB" if shard else "2GB")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   pad_token=specials[0] if family != "mistral" else "<unk>",
                                   unk_token="<unk>" if family == "mistral" else None)
    fast.chat_template = template
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    tc = json.loads(cfg_path.read_text())
    if template_file:  # transformers 5 layout: chat_template.jinja beside tokenizer_config.json
        (out / "chat_template.jinja").write_text(template)
        tc.pop("chat_template", None)
    else:  # older exports: the template inside tokenizer_config.json
        tc["chat_template"] = template
        (out / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2))
    if not generation_config:
        (out / "generation_config.json").unlink(missing_ok=True)
    return out


def conversation() -> list[dict]:
    return [
        {"role": "system", "content": "당신은 친절한 한국어 도우미입니다."},
        {"role": "user", "content": "사과 세 개와 배 두 개는 모두 몇 개입니까?"},
        {"role": "assistant", "content": "모두 다섯 개입니다. 정답: 5"},
        {"role": "user", "content": "오늘은 월요일입니다. 내일은?"},
        {"role": "assistant", "content": "내일은 화요일입니다.\n정답: 화요일"},
    ]
