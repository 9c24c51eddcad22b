"""OpenAI request parsing and error objects.

Requests are parsed by hand from the JSON body rather than through pydantic models, so that every
mistake becomes an OpenAI-shaped 4xx naming the field (`{"error": {"message", "type", "param",
"code"}}`) instead of a framework 422, and unknown fields are ignored as OpenAI's API does.
Whatever a client sends (bytes that are not UTF-8, lone surrogate escapes, NaN, numbers too big
for any field, nesting a thousand levels deep) ends here as a 4xx, never as an exception the
server did not expect. saessak/serve/openapi.py describes the same rules as a JSON Schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_STOP_STRINGS = 4  # OpenAI's limit
MAX_INT32 = 2**31 - 1  # the largest max_tokens / top_k accepted (more than any context)
MAX_JSON_DEPTH = 64  # an OpenAI request nests 5 levels; tool schemas (ignored) a few more
DEFAULT_MAX_REQUEST_BYTES = 1 << 20  # `saessak serve --max-request-bytes`
JSON_MEDIA_TYPES = ("application/json",)  # and any application/*+json


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


def check_content_type(content_type: str | None) -> None:
    """A body must be sent as JSON; a request without a Content-Type is read as JSON too."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in JSON_MEDIA_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    raise APIError(415, f"Content-Type '{content_type[:100]}' is not supported: send the body as JSON "
                   "with 'Content-Type: application/json'", code="unsupported_media_type")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def parse_json_body(raw: bytes) -> dict:
    """The request body as a dict, or an APIError (400) that says what is wrong with it."""
    if not raw.strip():
        raise APIError(400, "the request body is empty: send a JSON object", code="invalid_json")
    try:
        text = raw.decode("utf-8-sig")  # JSON is UTF-8 (RFC 8259); a leading BOM is tolerated
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})",
                       code="invalid_json") from None
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise APIError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, f"the request body nests more than {MAX_JSON_DEPTH} levels deep",
                       code="invalid_json") from None
    except ValueError as e:  # NaN/Infinity, or an integer with more digits than Python reads
        what = str(e) if "JSON value" in str(e) else "a number has too many digits"
        raise APIError(400, f"the request body is not valid JSON ({what})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {_json_type(body)}", code="invalid_json")
    _check_tree(body, surrogates=_SURROGATE_ESCAPE.search(text) is not None)
    return body


# A lone surrogate can only come from a \uD800-\uDFFF escape (strict UTF-8 decoding refuses the raw
# code points); a pair of them is joined into one character by json.loads.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _printable(path: str) -> str:
    """A path for an error message: a surrogate in a key is written as its escape (a reply is UTF-8)."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _path(parent: str, key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _check_tree(body: dict, surrogates: bool) -> None:
    """Depth limit and no lone surrogates (text no tokenizer can encode), walked without recursion."""
    stack = [(body, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise APIError(400, f"the request body nests more than {MAX_JSON_DEPTH} levels deep",
                           param=_printable(path), code="invalid_json")
        for key, value in (node.items() if isinstance(node, dict) else enumerate(node)):
            if surrogates and (isinstance(key, str) and _SURROGATE.search(key)
                               or isinstance(value, str) and _SURROGATE.search(value)):
                where = _printable(_path(path, key))
                raise APIError(400, f"{where or 'a key'}: a lone surrogate escape (\\uD800-\\uDFFF) is not a Unicode "
                               "character; send text as valid UTF-8", param=where, code="invalid_value")
            if isinstance(value, (dict, list)):
                stack.append((value, _path(path, key), depth + 1))


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _number(body: dict, name: str, lo: float, hi: float, default: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise APIError(400, f"'{name}' must be a number, got {_json_type(v)}", param=name, code="invalid_type")
    if not lo <= v <= hi:  # also false for NaN and for 1e400 (read as infinity)
        shown = v if len(str(v)) <= 30 else f"a {len(str(v))}-digit number"
        raise APIError(400, f"'{name}' must be between {lo} and {hi}, got {shown}", param=name, code="invalid_value")
    return float(v)


def _integer(body: dict, name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():  # 5.0 is the integer 5 (as JSON Schema reads it)
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        got = repr(v) if isinstance(v, float) else _json_type(v)
        raise APIError(400, f"'{name}' must be an integer, got {got}", param=name, code="invalid_type")
    if not lo <= v <= hi:
        shown = v if len(str(v)) <= 30 else f"a {len(str(v))}-digit number"
        raise APIError(400, f"'{name}' must be between {lo} and {hi}, got {shown}", param=name, code="invalid_value")
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
        role = m.get("role")
        role = _ROLE_ALIASES.get(role) if isinstance(role, str) else None
        if role is None:
            raise APIError(400, f"messages[{i}].role must be one of system, developer, user, assistant",
                           param=f"messages[{i}].role", code="invalid_value")
        out.append({"role": role, "content": _content_text(m.get("content"), i)})
    return out


def _common(body: dict, max_n: int) -> GenerationRequest:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise APIError(400, "'model' must be a string", param="model", code="invalid_type")
    max_completion_tokens = _integer(body, "max_completion_tokens", 1, MAX_INT32)
    max_tokens = _integer(body, "max_tokens", 1, MAX_INT32)  # checked even when the first one is given
    if max_completion_tokens is not None:
        max_tokens = max_completion_tokens
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options", code="invalid_type")
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    return GenerationRequest(
        model=model,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0, 1.0),
        top_p=_number(body, "top_p", 0.0, 1.0, 1.0) or 1e-9,  # top_p 0 means "only the top token"
        top_k=_integer(body, "top_k", 0, MAX_INT32) or 0,  # not OpenAI's, but vLLM clients send it
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
