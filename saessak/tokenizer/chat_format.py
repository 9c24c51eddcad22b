"""Conversations to token ids through the model's own chat template; saessak's format is one of them.

saessak's template (see saessak/tokenizer/special_tokens.py), the one a model trained here uses:

    <s><|system|>{system}<|end|><|user|>{user}<|end|><|assistant|>{reply}<|end|>

An imported model brings its own (ChatML for Qwen, Llama 3's headers, Mistral's [INST], ...).
Every tokenizer carries `chat_template`; `render(tokenizer, messages, add_generation_prompt)`
renders it as Hugging Face `apply_chat_template` does and returns ids with a loss mask that is 1
only on each assistant reply and the end token that closes it (saessak/tokenizer/chat_template.py).
"""

from __future__ import annotations

from saessak.tokenizer import special_tokens as st
from saessak.tokenizer.chat_template import Rendered, render as render_template
from saessak.errors import UserError

__all__ = ["CHAT_TEMPLATE", "Rendered", "prompt_ids", "render", "render_text", "validate_messages"]

ROLES = ("system", "user", "assistant")

# Jinja template for tokenizer_config.json; renders exactly `render_text`.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def validate_messages(messages, where: str = "messages") -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise UserError(f"{where}[{i}]: must be an object with 'role' and 'content'")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise UserError(f"{where}[{i}].role: {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise UserError(f"{where}[{i}].content: must be a string")
        out.append({"role": role, "content": content})
    return out


def render_text(messages: list[dict], add_generation_prompt: bool = False) -> str:
    parts = [st.BOS]
    for m in messages:
        parts.append(st.ROLE_TOKENS[m["role"]] + m["content"] + st.END_OF_TURN)
    if add_generation_prompt:
        parts.append(st.ASSISTANT)
    return "".join(parts)


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> Rendered:
    """Ids of the conversation in the tokenizer's own chat template, with the assistant-only loss mask."""
    return render_template(tokenizer, validate_messages(messages), add_generation_prompt)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Ids of a conversation ready for the assistant's reply (ends with <|assistant|>)."""
    return render(tokenizer, messages, add_generation_prompt=True).ids
