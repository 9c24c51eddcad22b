"""Any model's Jinja chat template, rendered to ids as transformers' `apply_chat_template` does,
with the assistant-only loss mask SFT trains on.

Rendering (the same ids as `apply_chat_template(messages, tokenize=True)`):
- a sandboxed Jinja environment with `trim_blocks` and `lstrip_blocks`, the `loopcontrols`
  extension, `raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII text, and the
  `{% generation %}` block accepted (it only marks text);
- the template sees `messages`, `add_generation_prompt` and the tokenizer's special tokens
  (`bos_token`, `eos_token`, ...); the text is then encoded whole with no special tokens added,
  because the template writes them itself.

The loss mask, for any template: the reply of assistant message i is the text between the render
of messages[:i] with the generation prompt and the render of messages[:i+1], less trailing
whitespace (ChatML's newline after <|im_end|>). Tokens whose character span lies inside a reply
are trained on: the reply and the end token the template closes it with, nothing of the prompt.
A template whose earlier turns render differently once later turns exist (so that neither
render is a prefix of the whole) cannot be masked this way and is refused with a clear error.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from saessak.errors import UserError


@dataclass
class Rendered:
    ids: list[int]
    loss_mask: list[int]


@functools.lru_cache(maxsize=16)
def compile_template(source: str):
    import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}`: renders its body (the mask is computed here by spans)."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"chat template: not valid Jinja (line {e.lineno}: {e.message})") from None


def render_text(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    import jinja2

    try:
        return compile_template(tokenizer.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **tokenizer.template_vars)
    except jinja2.TemplateError as e:
        raise UserError(f"chat template of {tokenizer.source}: {e}") from None


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> Rendered:
    """Ids of the conversation and the assistant-only loss mask (see the module doc)."""
    text = render_text(tokenizer, messages, add_generation_prompt)
    enc = tokenizer.hf.encode(text, add_special_tokens=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = render_text(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render_text(tokenizer, messages[: i + 1]).rstrip()
        if not (text.startswith(start) and text.startswith(upto) and len(upto) > len(start)):
            raise UserError(f"chat template of {tokenizer.source}: assistant message {i} does not render as a "
                            f"stable prefix of the conversation, so its loss mask cannot be found")
        spans.append((len(start), len(upto)))
    mask = [int(any(a <= s and e <= b for a, b in spans)) for s, e in enc.offsets]
    return Rendered(list(enc.ids), mask)
