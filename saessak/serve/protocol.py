"""OpenAI request parsing and error objects.

Requests are parsed by hand from the JSON body rather than through pydantic models, so that every
mistake becomes an OpenAI-shaped 400 naming the field (`{"error": {"message", "type", "param",
"code"}}`) instead of a framework 422, and unknown fields are ignored as OpenAI's API does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_STOP_STRINGS = 4  # OpenAI's limit


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class GenerationRequest:
    """What /v1/chat/completions and /v1/completions have in common, after validation."""

    model: str | None
    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    messages: list[dict] | None = None  # chat
    prompt: str | None = None  # completions


def parse_json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"request body is not valid JSON ({e})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return body


def _number(body: dict, name: str, lo: float, hi: float, default: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise APIError(400, f"'{name}' must be a number, got {type(v).__name__}", param=name, code="invalid_type")
    if not lo <= v <= hi:
        raise APIError(400, f"'{name}' must be between {lo} and {hi}, got {v}", param=name, code="invalid_value")
    return float(v)


def _integer(body: dict, name: str, lo: int, hi: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise APIError(400, f"'{name}' must be an integer, got {type(v).__name__}", param=name, code="invalid_type")
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise APIError(400, f"'{name}' must be {bound}, got {v}", param=name, code="invalid_value")
    return v


def _boolean(obj: dict, name: str, param: str | None = None) -> bool:
    v = obj.get(name)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise APIError(400, f"'{param or name}' must be a boolean", param=param or name, code="invalid_type")
    return v


def _stop(body: dict) -> list[str]:
    v = body.get("stop")
    if v is None:
        return []
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise APIError(400, "'stop' must be a string or a list of strings", param="stop", code="invalid_type")
    if len(items) > MAX_STOP_STRINGS:
        raise APIError(400, f"'stop' may hold at most {MAX_STOP_STRINGS} strings", param="stop", code="invalid_value")
    return [s for s in items if s]


def _content_text(content: Any, i: int) -> str:
    """Message content: a string or a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(400, f"messages[{i}].content: only text parts are supported",
                               param=f"messages[{i}].content", code="invalid_value")
            parts.append(part["text"])
        return "".join(parts)
    raise APIError(400, f"messages[{i}].content must be a string or a list of text parts",
                   param=f"messages[{i}].content", code="invalid_type")


_ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _messages(body: dict) -> list[dict]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(400, "'messages' must be a non-empty list", param="messages",
                       code="invalid_type" if msgs is not None else "missing_required_parameter")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise APIError(400, f"messages[{i}] must be an object", param=f"messages[{i}]", code="invalid_type")
        role = _ROLE_ALIASES.get(m.get("role"))
        if role is None:
            raise APIError(400, f"messages[{i}].role must be one of system, user, assistant",
                           param=f"messages[{i}].role", code="invalid_value")
        out.append({"role": role, "content": _content_text(m.get("content"), i)})
    return out


def _common(body: dict, max_n: int) -> GenerationRequest:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise APIError(400, "'model' must be a string", param="model", code="invalid_type")
    max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1)
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options", code="invalid_type")
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    return GenerationRequest(
        model=model,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0, 1.0),
        top_p=_number(body, "top_p", 0.0, 1.0, 1.0) or 1e-9,  # top_p 0 means "only the top token"
        top_k=_integer(body, "top_k", 0) or 0,  # not OpenAI's, but vLLM clients send it
        stop=_stop(body),
        seed=seed,
        n=_integer(body, "n", 1, max_n) or 1,
        stream=_boolean(body, "stream"),
        include_usage=_boolean(opts or {}, "include_usage", "stream_options.include_usage"),
    )


def parse_chat_request(body: dict, max_n: int) -> GenerationRequest:
    req = _common(body, max_n)
    req.messages = _messages(body)
    return req


def parse_completion_request(body: dict, max_n: int) -> GenerationRequest:
    req = _common(body, max_n)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise APIError(400, "'prompt' must be a string (batched prompts are not supported)", param="prompt",
                       code="invalid_type" if prompt is not None else "missing_required_parameter")
    req.prompt = prompt
    return req
