"""The FastAPI application: OpenAI-compatible endpoints, health, metrics and the web chat page.

`create_app(settings, load)` returns the app; `load()` runs in a background thread at start-up so
that GET /health answers 503 while the model loads and 200 once it is ready. Every error, whatever
the request, is an OpenAI-shaped JSON body with a content-free log line; /openapi.json describes
the endpoints, their bodies and their errors (saessak/serve/openapi.py).
"""


import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from saessak.serve.batching import BatchingLoop, Failure, Overloaded
from saessak.serve.engine_process import EngineProcess, EngineSpec, EngineStopped
from saessak.serve.loading import ServedModel
from saessak.serve.metrics import Metrics
from saessak.serve.openapi import openapi_schema
from saessak.serve.privacy_log import RequestLog, now
from saessak.serve.protocol import (
    DEFAULT_MAX_REQUEST_BYTES,
    APIError,
    GenerationRequest,
    check_content_type,
    parse_chat_request,
    parse_completion_request,
    parse_json_body,
)

STATIC_DIR = Path(__file__).parent / "static"
DISCONNECT_POLL_S = 0.5


@dataclass
class ServeSettings:
    api_key: str | None = None
    max_batch_size: int = 32
    max_queue: int = 64
    max_n: int = 8
    max_seq_len: int | None = None
    log_content: bool = False
    dtype: str | None = None  # None: the checkpoint's dtype; "bfloat16" for a bf16 copy
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # The engine in a child process (saessak/serve/engine_process.py; `saessak serve`'s default):
    # `load` then returns the tokenizer only and the child loads the weights from `served.source`.
    engine_process: bool = False
    threads: int | None = None  # the child's torch threads (default: this process's)


class _State:
    def __init__(self):
        self.served: ServedModel | None = None
        self.batcher: BatchingLoop | None = None
        self.load_error: str | None = None
        self.ready = threading.Event()


def create_app(settings: ServeSettings, load: Callable[[], ServedModel]):
    from contextlib import asynccontextmanager

    import torch
    from fastapi import FastAPI, Request
    from fastapi.responses import (
        FileResponse,
        JSONResponse,
        PlainTextResponse,
        StreamingResponse,
    )
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from saessak.model.engine import Engine

    state = _State()
    metrics = Metrics()
    reqlog = RequestLog(log_content=settings.log_content)
    metrics.gauge("saessak_queue_depth", "requests waiting for a batch slot",
                  lambda: state.batcher.queue_depth() if state.batcher else 0)
    metrics.gauge("saessak_running_requests", "sequences in the running batch",
                  lambda: state.batcher.running() if state.batcher else 0)
    metrics.gauge("saessak_model_ready", "1 once the model is loaded", lambda: 1 if state.ready.is_set() else 0)

    def load_in_background():
        try:
            served = load()
            if settings.engine_process:
                batcher = EngineProcess(EngineSpec(served.source, served.name, settings.max_batch_size,
                                                   settings.max_seq_len, settings.dtype,
                                                   settings.threads or torch.get_num_threads()),
                                        max_queue=settings.max_queue)
            else:
                dtype = getattr(torch, settings.dtype) if settings.dtype else None
                engine = Engine(served.model, served.tokenizer, max_batch_size=settings.max_batch_size,
                                max_seq_len=settings.max_seq_len, dtype=dtype)
                engine.warm_up()
                batcher = BatchingLoop(engine, max_queue=settings.max_queue)
            batcher.start()
            kernel = batcher.engine.linear_kernel if settings.engine_process else engine.kernel.describe()
            reqlog.logger.info("linear layers: %s", kernel)
            state.served, state.batcher = served, batcher
            state.ready.set()
        except EngineStopped as e:  # the child's own "Type: message"
            state.load_error = str(e)
            reqlog.logger.error("model load failed: %s", state.load_error)
        except Exception as e:  # noqa: BLE001 - reported by /health; the message names a path, never content
            state.load_error = f"{type(e).__name__}: {e}"
            reqlog.logger.error("model load failed: %s", state.load_error)

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=load_in_background, name="saessak-load", daemon=True).start()
        yield
        if state.batcher:
            state.batcher.stop()

    # No Swagger UI: it would load its scripts from a CDN, and the server makes no outbound requests.
    app = FastAPI(title="saessak", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.saessak = state
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    schemas: dict[str | None, dict] = {}

    def current_schema() -> dict:  # the served model's id is its example once it is loaded
        name = state.served.name if state.ready.is_set() else None
        if name not in schemas:
            schemas[name] = openapi_schema(max_n=settings.max_n, auth=bool(settings.api_key),
                                           max_request_bytes=settings.max_request_bytes, model=name)
        return schemas[name]

    app.openapi = current_schema

    def error_response(e: APIError, headers: dict | None = None) -> JSONResponse:
        if e.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    def log_error(request: Request, e: APIError, rid: str | None = None) -> None:
        # The generation endpoints log their own requests; this covers every other path. The route
        # template (never the path itself, which a client chooses) names the endpoint.
        route = request.scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        metrics.inc("saessak_requests_total", endpoint=endpoint, status=str(e.status))
        reqlog.request(request_id=rid or "req-" + uuid.uuid4().hex[:24], endpoint=endpoint, status=e.status,
                       error_type=e.type, error_code=e.code)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        log_error(request, e)
        return error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        err = APIError(e.status_code, f"{request.method} {request.url.path[:200]}: {e.detail}", kind, code=code)
        log_error(request, err)
        return error_response(err, headers=getattr(e, "headers", None))  # 405 keeps its Allow header

    def unexpected(request: Request, e: Exception) -> JSONResponse:
        # A bug outside generation: OpenAI's shape, and only the exception's type in the log.
        rid = "req-" + uuid.uuid4().hex[:24]
        reqlog.server_error(rid, e)
        err = APIError(500, "internal error while handling the request", type="server_error", code="internal_error")
        log_error(request, err, rid)
        return error_response(err)

    app.add_middleware(_ContainErrors, on_error=unexpected)

    async def read_body(request: Request) -> bytes:
        """The body, refused with 413 as soon as it is known to exceed --max-request-bytes: from
        Content-Length before reading anything, else while counting the bytes as they arrive."""
        check_content_type(request.headers.get("content-type"))
        limit = settings.max_request_bytes
        too_big = APIError(413, f"the request body is larger than this server's limit of {limit} bytes "
                           "(saessak serve --max-request-bytes)", code="request_too_large")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def require_ready() -> tuple[ServedModel, BatchingLoop]:
        if not state.ready.is_set():
            msg = "the model failed to load" if state.load_error else "the model is still loading"
            raise APIError(503, msg, type="service_unavailable", code="model_not_ready")
        if state.batcher.error:
            raise APIError(503, state.batcher.error, type="service_unavailable", code="engine_stopped")
        return state.served, state.batcher

    def check_auth(request: Request) -> None:
        if not settings.api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                           type="authentication_error", code="invalid_api_key")

    # -- plain endpoints ---------------------------------------------------------------------
    @app.get("/")
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/health")
    async def health():
        if state.ready.is_set() and state.batcher.error:
            return JSONResponse({"status": "error", "error": state.batcher.error}, status_code=503)
        if state.ready.is_set():
            return {"status": "ok", "model": state.served.name}
        if state.load_error:
            return JSONResponse({"status": "error", "error": state.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models(request: Request):
        check_auth(request)
        served, _ = require_ready()
        return {"object": "list", "data": [_model_card(served)]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str, request: Request):
        check_auth(request)
        served, _ = require_ready()
        if model_id != served.name:
            raise APIError(404, f"model '{model_id[:200]}' does not exist (this server serves '{served.name}')",
                           type="not_found_error", param="model", code="model_not_found")
        return _model_card(served)

    # -- generation ----------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _generate_safely(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _generate_safely(request, chat=False)

    async def _generate_safely(request: Request, chat: bool):
        # Unexpected exceptions are caught here: left to the framework, their traceback (and
        # message, which may quote the request) would reach the server log.
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        try:
            return await _generate(request, chat, rid)
        except Exception as e:  # noqa: BLE001 - a bug: 500, its type logged, never its message
            reqlog.server_error(rid, e)
            metrics.inc("saessak_requests_total", endpoint="chat.completions" if chat else "completions", status="500")
            return error_response(APIError(500, "internal error while handling the request", type="server_error",
                                           code="internal_error"))

    async def _generate(request: Request, chat: bool, rid: str):
        t0 = now()
        endpoint = "chat.completions" if chat else "completions"
        meta = {"request_id": rid, "endpoint": endpoint}
        try:
            check_auth(request)
            served, batcher = require_ready()
            body = parse_json_body(await read_body(request))
            req = (parse_chat_request if chat else parse_completion_request)(body, settings.max_n)
            meta.update(stream=req.stream, n=req.n)
            if req.model is not None and req.model != served.name:
                raise APIError(404, f"model '{req.model[:200]}' does not exist (this server serves '{served.name}')",
                               type="not_found_error", param="model", code="model_not_found")
            prompt = _prompt_ids(served, req, chat)
            limit = batcher.engine.max_seq_len
            if len(prompt) >= limit:
                raise APIError(400, f"the prompt has {len(prompt)} tokens; this model's context limit is {limit} "
                               f"tokens (prompt + completion), so at most {limit - 1} prompt tokens fit",
                               param="messages" if chat else "prompt", code="context_length_exceeded")
            reqlog.content(rid, "request", req.messages if chat else req.prompt)
            queue: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            tickets = []
            try:
                for i in range(req.n):
                    tickets.append(batcher.submit(prompt, _sampling(req, i), queue, loop))
            except Overloaded as e:
                for t in tickets:
                    batcher.cancel(t)
                raise APIError(429, str(e), type="rate_limit_error", code="server_busy") from None
            except EngineStopped as e:
                raise APIError(503, str(e), type="service_unavailable", code="engine_stopped") from None
        except APIError as e:
            metrics.inc("saessak_requests_total", endpoint=endpoint, status=str(e.status))
            reqlog.request(**meta, status=e.status, error_type=e.type, error_code=e.code,
                           latency_s=round(now() - t0, 4))
            return error_response(e)
        run = _Run(rid, req, served, batcher, tickets, queue, len(prompt), t0, chat)
        if req.stream:
            return StreamingResponse(_stream(run, request, meta), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _complete(run, request, meta)

    def _finish_log(run: "_Run", meta: dict, status: int, disconnected: bool = False, error: str | None = None):
        metrics.inc("saessak_requests_total", endpoint=meta["endpoint"], status=str(status))
        metrics.inc("saessak_prompt_tokens_total", run.prompt_tokens)
        metrics.inc("saessak_generation_tokens_total", run.completion_tokens)
        latency = now() - run.t0
        if not disconnected and status == 200:
            metrics.observe("saessak_request_latency_seconds", latency)
        reqlog.request(**meta, status=status, prompt_tokens=run.prompt_tokens,
                       completion_tokens=run.completion_tokens,
                       finish_reason=",".join(sorted({r for r in run.finish if r})) or None,
                       latency_s=round(latency, 4),
                       ttft_s=round(run.t_first - run.t0, 4) if run.t_first else None,
                       client_disconnected=disconnected or None, error_code=error)
        reqlog.content(run.rid, "completion", run.texts)

    async def _next(run: "_Run", request: Request):
        """The next output of any of the run's choices; None if the client went away."""
        while True:
            if not run.queue.empty():  # the common case under load: no timer, no task per token
                item = run.queue.get_nowait()
                break
            try:
                item = await asyncio.wait_for(run.queue.get(), timeout=DISCONNECT_POLL_S)
                break
            except TimeoutError:
                if await request.is_disconnected():
                    return None
        if run.t_first is None and not isinstance(item, Failure) and item.new_token_ids:
            run.t_first = now()
            metrics.observe("saessak_time_to_first_token_seconds", run.t_first - run.t0)
        return item

    async def _complete(run: "_Run", request: Request, meta: dict):
        try:
            while run.open:
                item = await _next(run, request)
                if item is None:
                    _finish_log(run, meta, 499, disconnected=True)
                    return JSONResponse({}, status_code=499)
                if isinstance(item, Failure):
                    raise _failure_error(item)
                run.absorb(item)
        except APIError as e:
            run.cancel()
            _finish_log(run, meta, e.status, error=e.code)
            return error_response(e)
        finally:
            run.cancel()
        _finish_log(run, meta, 200)
        return run.response_body()

    async def _stream(run: "_Run", request: Request, meta: dict):
        status, disconnected, error = 200, True, None
        try:
            for i in range(run.req.n):
                yield run.sse(run.first_chunk(i))
            while run.open:
                item = await _next(run, request)
                if item is None:
                    return
                if isinstance(item, Failure):
                    e = _failure_error(item)
                    status, error = e.status, e.code
                    yield run.sse(e.body())
                    break
                i = run.absorb(item)
                if item.delta_text:
                    yield run.sse(run.delta_chunk(i, item.delta_text))
                if item.finished:
                    yield run.sse(run.final_chunk(i, run.finish[i]))
            if run.req.include_usage and error is None:
                yield run.sse(run.usage_chunk())
            yield "data: [DONE]\n\n"
            disconnected = False
        except Exception as e:  # noqa: BLE001 - not CancelledError: a disconnect is not an error
            reqlog.server_error(run.rid, e)
            status, error, disconnected = 500, "internal_error", False
            yield run.sse(APIError(500, "internal error while streaming", type="server_error",
                                   code="internal_error").body())
        finally:
            # a client that disconnects cancels this generator: free its slots at once
            run.cancel()
            _finish_log(run, meta, 499 if disconnected else status, disconnected=disconnected, error=error)

    return app


class _ContainErrors:
    """ASGI middleware: an exception no handler took becomes `on_error(request, exc)`'s response and
    stops here. (Starlette's own last-resort handler re-raises it, and the server would then log a
    traceback whose message may quote the request.)"""

    def __init__(self, app, on_error):
        self.app, self.on_error = app, on_error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request

        started = False

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as e:  # noqa: BLE001 - the point of this middleware
            response = self.on_error(Request(scope), e)
            if not started:  # a response already under way cannot be replaced
                await response(scope, receive, send)


def _failure_error(f: Failure) -> APIError:
    if f.user_error:
        return APIError(400, f.message, code="invalid_value")
    return APIError(500, f.message, type="server_error", code="internal_error")


def _model_card(served: ServedModel) -> dict:
    return {"id": served.name, "object": "model", "created": int(time.time()), "owned_by": "saessak"}


def _prompt_ids(served: ServedModel, req: GenerationRequest, chat: bool) -> list[int]:
    from saessak.tokenizer.chat_format import prompt_ids

    tok = served.tokenizer
    if chat:
        return prompt_ids(tok, req.messages)
    return ([tok.bos_id] if tok.bos_id is not None else []) + tok.encode(req.prompt)  # Qwen has no bos


def _sampling(req: GenerationRequest, choice: int):
    from saessak.model.engine import SamplingParams

    # n choices with one seed must differ from each other yet stay reproducible
    seed = None if req.seed is None else (req.seed + choice) & ((1 << 63) - 1)
    return SamplingParams(max_tokens=req.max_tokens or 1 << 30, temperature=req.temperature, top_p=req.top_p,
                          top_k=req.top_k, seed=seed, stop=tuple(req.stop))


class _Run:
    """One API request's choices while they generate, and the OpenAI objects built from them."""

    def __init__(self, rid, req, served, batcher, tickets, queue, prompt_tokens, t0, chat):
        self.rid, self.req, self.served, self.batcher = rid, req, served, batcher
        self.tickets, self.queue, self.prompt_tokens, self.t0, self.chat = tickets, queue, prompt_tokens, t0, chat
        self.created = int(time.time())
        self.index = {t.request_id: i for i, t in enumerate(tickets)}
        self.texts = [""] * len(tickets)
        self.tokens = [0] * len(tickets)
        self.finish: list[str | None] = [None] * len(tickets)
        self.t_first: float | None = None

    @property
    def open(self) -> bool:
        return any(f is None for f in self.finish)

    @property
    def completion_tokens(self) -> int:
        return sum(self.tokens)

    def absorb(self, out) -> int:
        i = self.index[out.request_id]
        self.texts[i] += out.delta_text
        self.tokens[i] = out.num_generated_tokens
        if out.finished:
            self.finish[i] = "length" if out.finish_reason == "length" else "stop"
        return i

    def cancel(self) -> None:
        for t, f in zip(self.tickets, self.finish):
            if f is None:
                self.batcher.cancel(t)

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def _envelope(self, obj: str, choices: list) -> dict:
        return {"id": self.rid, "object": obj, "created": self.created, "model": self.served.name,
                "choices": choices}

    def response_body(self) -> dict:
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                        "finish_reason": self.finish[i]} for i, text in enumerate(self.texts)]
            body = self._envelope("chat.completion", choices)
        else:
            choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": self.finish[i]}
                       for i, text in enumerate(self.texts)]
            body = self._envelope("text_completion", choices)
        body["usage"] = self.usage()
        return body

    # streaming chunks
    @property
    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def _choice(self, i: int, text: str | None, finish: str | None, first: bool = False) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}

    def first_chunk(self, i: int) -> dict:
        return self._envelope(self._chunk_object, [self._choice(i, None, None, first=True)])

    def delta_chunk(self, i: int, text: str) -> dict:
        return self._envelope(self._chunk_object, [self._choice(i, text, None)])

    def final_chunk(self, i: int, finish: str) -> dict:
        return self._envelope(self._chunk_object, [self._choice(i, None, finish)])

    def usage_chunk(self) -> dict:
        body = self._envelope(self._chunk_object, [])
        body["usage"] = self.usage()
        return body

    @staticmethod
    def sse(obj: dict) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
