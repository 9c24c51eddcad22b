"""Render conversations to token ids in the saessak chat format (see saessak/tokenizer/special_tokens.py).

    <s><|system|>{system}<|end|><|user|>{user}<|end|><|assistant|>{reply}<|end|>

`render(tokenizer, messages, add_generation_prompt)` returns ids and a loss mask that is 1 only on
assistant content and its closing <|end|> (what SFT trains on). Each message's content is encoded
on its own; because the tokenizer splits on special tokens before anything else and prepends "▁"
to every text segment, the result equals encoding the whole rendered string at once, which is
what Hugging Face `apply_chat_template` does with CHAT_TEMPLATE (tested in tests/test_chat_format.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from saessak.tokenizer import special_tokens as st
from saessak.errors import UserError

ROLES = ("system", "user", "assistant")

# Jinja template for tokenizer_config.json; renders exactly `render_text`.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@dataclass
class Rendered:
    ids: list[int]
    loss_mask: list[int]


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
    messages = validate_messages(messages)
    ids = [tokenizer.bos_id]
    mask = [0]
    for m in messages:
        content = tokenizer.encode(m["content"]) if m["content"] else []
        trained = 1 if m["role"] == "assistant" else 0
        ids.append(tokenizer.role_ids[m["role"]])
        mask.append(0)
        ids.extend(content)
        mask.extend([trained] * len(content))
        ids.append(tokenizer.eot_id)
        mask.append(trained)
    if add_generation_prompt:
        ids.append(tokenizer.role_ids["assistant"])
        mask.append(0)
    return Rendered(ids, mask)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Ids of a conversation ready for the assistant's reply (ends with <|assistant|>)."""
    return render(tokenizer, messages, add_generation_prompt=True).ids
