"""The OpenAPI 3.1 document served at GET /openapi.json.

Request bodies are parsed by hand (saessak/serve/protocol.py), so FastAPI cannot derive their
schemas; they are written here, field for field with the parser's rules, and so are the replies
and every error the server sends. tests/test_serve_fuzz.py holds the two to each other: a fuzzer
sends bodies the schema allows (which must be served) and bodies it forbids (which must get a
4xx), and checks every reply against the schema.
"""

from __future__ import annotations

from saessak.serve.protocol import MAX_INT32, MAX_JSON_DEPTH, MAX_STOP_STRINGS

INT64 = {"minimum": -(2**63), "maximum": 2**63 - 1}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(type_: str, **kw) -> dict:
    return {"type": [type_, "null"], **kw}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Errors each operation can answer (besides its own), by status: what each one means.
ERRORS = {
    400: "invalid request: body not UTF-8 JSON, a field of the wrong type or range, or a prompt longer "
         "than the context (`code` says which, `param` names the field)",
    401: "missing or wrong API key",
    404: "unknown model id",
    413: "request body larger than --max-request-bytes",
    415: "Content-Type other than application/json",
    429: "the queue is full; retry later",
    500: "a bug in the server (the request's content is not logged)",
    503: "the model is still loading or failed to load",
}


def _errors(*statuses: int) -> dict:
    return {str(s): _json(_ref("Error"), ERRORS[s]) for s in statuses}


def _components(max_n: int) -> dict:
    text_part = {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
    message = {
        "type": "object", "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["system", "developer", "user", "assistant"],
                     "description": "`developer` is read as `system`"},
            "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": text_part}]},
        },
    }
    # Fields both generation endpoints read. Any other field is accepted and ignored.
    common = {
        "model": _nullable("string", description="the served model id (GET /v1/models); 404 if another"),
        "max_completion_tokens": _nullable("integer", minimum=1, maximum=MAX_INT32,
                                           description="default: the rest of the context"),
        "max_tokens": _nullable("integer", minimum=1, maximum=MAX_INT32,
                                description="used when max_completion_tokens is not given"),
        "temperature": _nullable("number", minimum=0, maximum=2, description="0 is greedy; default 1"),
        "top_p": _nullable("number", minimum=0, maximum=1),
        "top_k": _nullable("integer", minimum=0, maximum=MAX_INT32, description="0 = off (vLLM's field)"),
        "stop": {"anyOf": [{"type": "string"},
                           {"type": "array", "maxItems": MAX_STOP_STRINGS, "items": {"type": "string"}},
                           {"type": "null"}]},
        "seed": _nullable("integer", **INT64),
        "n": _nullable("integer", minimum=1, maximum=max_n),
        "stream": _nullable("boolean", description="Server-Sent Events of chunk objects, then `data: [DONE]`"),
        "stream_options": _nullable("object", properties={"include_usage": _nullable("boolean")}),
    }
    usage = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
             "properties": {k: {"type": "integer", "minimum": 0}
                            for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
    finish = {"enum": ["stop", "length"]}

    def reply(obj: str, choice: dict, chunk: bool = False) -> dict:
        """A reply object; a chunk carries usage only in the last one (include_usage)."""
        required = ["id", "object", "created", "model", "choices"] + ([] if chunk else ["usage"])
        return {"type": "object", "required": required,
                "properties": {"id": {"type": "string"}, "object": {"const": obj}, "created": {"type": "integer"},
                               "model": {"type": "string"}, "choices": {"type": "array", "items": choice},
                               "usage": _ref("Usage")}}

    chat_choice = {"type": "object", "required": ["index", "message", "finish_reason"],
                   "properties": {"index": {"type": "integer"}, "finish_reason": finish, "logprobs": {"type": "null"},
                                  "message": {"type": "object", "required": ["role", "content"],
                                              "properties": {"role": {"const": "assistant"},
                                                             "content": {"type": "string"}}}}}
    open_finish = {"anyOf": [finish, {"type": "null"}]}
    chunk_choice = {"type": "object", "required": ["index", "delta", "finish_reason"],
                    "properties": {"index": {"type": "integer"}, "finish_reason": open_finish,
                                   "logprobs": {"type": "null"},
                                   "delta": {"type": "object", "properties": {"role": {"const": "assistant"},
                                                                              "content": {"type": "string"}}}}}
    text_chunk_choice = {"type": "object", "required": ["index", "text", "finish_reason"],
                         "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                                        "finish_reason": open_finish, "logprobs": {"type": "null"}}}
    text_choice = {"type": "object", "required": ["index", "text", "finish_reason"],
                   "properties": {"index": {"type": "integer"}, "text": {"type": "string"}, "finish_reason": finish,
                                  "logprobs": {"type": "null"}}}
    model = {"type": "object", "required": ["id", "object", "created", "owned_by"],
             "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                            "owned_by": {"type": "string"}}}
    return {
        "schemas": {
            "ChatCompletionRequest": {"type": "object", "required": ["messages"], "properties": {
                "messages": {"type": "array", "minItems": 1, "items": _ref("Message")}, **common}},
            "CompletionRequest": {"type": "object", "required": ["prompt"], "properties": {
                "prompt": {"anyOf": [{"type": "string"},
                                     {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string"}}],
                           "description": "one prompt (a list holding one string is read as that string)"},
                **common}},
            "Message": message,
            "ChatCompletion": reply("chat.completion", chat_choice),
            "TextCompletion": reply("text_completion", text_choice),
            "ChatCompletionChunk": reply("chat.completion.chunk", chunk_choice, chunk=True),
            "TextCompletionChunk": reply("text_completion", text_chunk_choice, chunk=True),
            "Usage": usage,
            "Model": model,
            "ModelList": {"type": "object", "required": ["object", "data"],
                          "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": model}}},
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["message", "type", "param", "code"],
                "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                               "param": _nullable("string"), "code": _nullable("string")}}}},
        },
    }


def _events(chunk: str) -> dict:
    """One Server-Sent Event (OpenAPI 3.1 describes a stream event by event): its data is a chunk
    object as JSON, an error object if generation fails mid-stream, or the final `[DONE]`."""
    data = {"type": "string", "if": {"const": "[DONE]"},
            "else": {"contentMediaType": "application/json", "contentSchema": {"anyOf": [_ref(chunk), _ref("Error")]}}}
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


def _generation(summary: str, request: str, reply: str, chunk: str, secured: list, example: dict) -> dict:
    examples = {"plain": {"value": example},
                "streamed": {"value": {**example, "stream": True, "stream_options": {"include_usage": True}}}}
    return {"post": {
        "summary": summary, "security": secured,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request),
                                                                           "examples": examples}}},
        "responses": {
            "200": {"description": f"a {reply} object; with `stream: true`, Server-Sent Events of "
                                   f"{chunk} objects ending with `data: [DONE]`",
                    "content": {"application/json": {"schema": _ref(reply)},
                                "text/event-stream": {"schema": _events(chunk)}}},
            **_errors(400, *([401] if secured else []), 404, 413, 415, 429, 500, 503),
        },
    }}


def openapi_schema(max_n: int, auth: bool, max_request_bytes: int, model: str | None = None) -> dict:
    """The document for a server with these settings (`n`'s maximum and the key requirement vary);
    `model`, once loaded, is the example model id."""
    from saessak import __version__

    named = {"model": model} if model else {}
    chat_example = {**named, "messages": [{"role": "user", "content": "안녕하세요"}], "max_tokens": 16}
    completion_example = {**named, "prompt": "대한민국의 수도는", "max_tokens": 16}
    model_id = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
    if model:
        model_id["example"] = model
    secured = [{"bearer": []}] if auth else []
    get_errors = (401, 500, 503) if auth else (500, 503)
    health = {"type": "object", "required": ["status"],
              "properties": {"status": {"enum": ["ok", "loading", "error"]}, "model": {"type": "string"},
                             "error": {"type": "string"}}}
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "saessak", "version": __version__,
                 "description": "OpenAI-compatible chat and completions on one local model. Every error is "
                                "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`. Request bodies: "
                                f"UTF-8 JSON objects of at most {max_request_bytes} bytes, nested at most "
                                f"{MAX_JSON_DEPTH} levels; fields not listed are ignored."},
        "paths": {
            "/v1/chat/completions": _generation("chat", "ChatCompletionRequest", "ChatCompletion",
                                                "ChatCompletionChunk", secured, chat_example),
            "/v1/completions": _generation("text continuation of `prompt`", "CompletionRequest", "TextCompletion",
                                           "TextCompletionChunk", secured, completion_example),
            "/v1/models": {"get": {"summary": "the served model", "security": secured, "responses": {
                "200": _json(_ref("ModelList"), "the one served model"), **_errors(*get_errors)}}},
            "/v1/models/{model_id}": {"get": {
                "summary": "one model", "security": secured,
                "parameters": [model_id],
                "responses": {"200": _json(_ref("Model"), "the served model"), **_errors(404, *get_errors)}}},
            "/health": {"get": {"summary": "readiness", "responses": {
                "200": _json(health, "`status: ok` and the model id"),
                "503": _json(health, "`status: loading`, or `status: error` and why loading failed")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/": {"get": {"summary": "the web chat page", "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        },
        "components": _components(max_n),
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                           "description": "saessak serve --api-key / --api-key-file"}}
    return doc
