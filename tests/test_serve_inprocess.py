"""Server behaviour that needs a controlled model or loader: loading state, a full queue, and
byte-exact Korean streaming (a scripted model emits byte-fallback tokens)."""

from __future__ import annotations

import json
import threading

import httpx

from saessak.serve.app import ServeSettings
from saessak.serve.loading import ServedModel
from tests.helpers import tiny_tokenizer
from tests.serve_util import InProcessServer, wait_healthy
from tests.test_engine import KOREAN_REPLY, ScriptedModel

MESSAGES = [{"role": "user", "content": "안녕?"}]


def scripted(script: list[int], max_pos: int = 128) -> ServedModel:
    from saessak.tokenizer.chat_format import prompt_ids

    tok = tiny_tokenizer()
    model = ScriptedModel(tok.vocab_size, len(prompt_ids(tok, MESSAGES)), script, max_pos=max_pos)
    return ServedModel(model=model, tokenizer=tok, name="scripted", source="test")


def sse_events(raw: bytes) -> list:
    events = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        assert block.startswith(b"data: ")
        data = block[len(b"data: "):].decode("utf-8")  # each event is whole UTF-8 on its own
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_health_is_503_while_loading_then_200():
    release = threading.Event()
    tok = tiny_tokenizer()

    def slow_load():
        release.wait(30)
        return scripted([tok.eot_id])

    with InProcessServer(ServeSettings(), slow_load, wait=False) as srv:
        r = httpx.get(srv.base_url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = httpx.get(srv.base_url + "/v1/models")
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready"
        assert "saessak_model_ready 0" in httpx.get(srv.base_url + "/metrics").text
        release.set()
        wait_healthy(srv.base_url, timeout=10)
        assert httpx.get(srv.base_url + "/v1/models").json()["data"][0]["id"] == "scripted"


def test_failed_load_is_reported_by_health():
    def broken():
        raise FileNotFoundError("/nowhere/model.safetensors")

    with InProcessServer(ServeSettings(), broken, wait=False) as srv:
        for _ in range(100):
            r = httpx.get(srv.base_url + "/health")
            if r.json()["status"] == "error":
                break
            threading.Event().wait(0.05)
        assert r.status_code == 503 and "FileNotFoundError" in r.json()["error"]


def test_korean_byte_fallback_stream_is_byte_exact():
    tok = tiny_tokenizer()
    ids = tok.encode(KOREAN_REPLY)
    with InProcessServer(ServeSettings(), lambda: scripted(ids + [tok.eot_id])) as srv:
        body = {"messages": MESSAGES, "stream": True, "temperature": 0, "stream_options": {"include_usage": True}}
        raw = httpx.post(srv.base_url + "/v1/chat/completions", json=body).content
        events = sse_events(raw)
        assert events[-1] == "[DONE]"
        deltas = [e["choices"][0]["delta"].get("content") for e in events[:-1] if e["choices"]]
        text = "".join(d for d in deltas if d)
        assert text == KOREAN_REPLY and "\ufffd" not in text
        assert len([d for d in deltas if d]) >= 5  # streamed in pieces, not in one chunk
        assert events[-2]["usage"]["completion_tokens"] == len(ids) + 1  # + <|end|>
        finish = [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]]
        assert finish[-1] == "stop"
        plain = httpx.post(srv.base_url + "/v1/chat/completions", json={"messages": MESSAGES, "temperature": 0})
        assert plain.json()["choices"][0]["message"]["content"] == KOREAN_REPLY


def test_full_queue_answers_429_and_recovers():
    tok = tiny_tokenizer()
    word = tok.encode("새싹")[0]
    settings = ServeSettings(max_batch_size=1, max_queue=0)
    with InProcessServer(settings, lambda: scripted([word] * 2000, max_pos=2048)) as srv:
        url = srv.base_url + "/v1/chat/completions"
        body = {"messages": MESSAGES, "stream": True, "temperature": 0}
        with httpx.stream("POST", url, json=body) as first:
            lines = first.iter_lines()
            next(lines)  # the first request now holds the only slot
            busy = httpx.post(url, json={"messages": MESSAGES, "max_tokens": 2})
            assert busy.status_code == 429
            assert busy.json()["error"]["type"] == "rate_limit_error"
        # closing the stream freed the slot: the next request is served
        for _ in range(100):
            r = httpx.post(url, json={"messages": MESSAGES, "max_tokens": 2, "temperature": 0})
            if r.status_code != 429:
                break
            threading.Event().wait(0.05)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


class ExplodingModel(ScriptedModel):
    def hidden_states(self, input_ids, position_ids, kv_cache=None):
        raise RuntimeError("secret 010-2345-6789 inside an exception message")


def test_engine_failure_is_a_500_and_keeps_content_out_of_logs(caplog):
    tok = tiny_tokenizer()
    served = ServedModel(ExplodingModel(tok.vocab_size, 3, [tok.eot_id]), tok, "exploding", "test")
    with InProcessServer(ServeSettings(), lambda: served) as srv:
        with caplog.at_level("INFO", logger="saessak.serve"):
            r = httpx.post(srv.base_url + "/v1/chat/completions", json={"messages": MESSAGES})
            assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
            r = httpx.post(srv.base_url + "/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
            events = sse_events(r.content)
            assert events[-1] == "[DONE]" or "error" in events[-1]
            assert any(isinstance(e, dict) and "error" in e for e in events)
            assert httpx.get(srv.base_url + "/health").status_code == 200  # the server survives
    assert "RuntimeError" in caplog.text and "010-2345-6789" not in caplog.text


def test_content_is_logged_only_when_asked(caplog):
    import logging

    from saessak.serve.privacy_log import RequestLog

    logger = logging.getLogger("saessak.serve.test")
    with caplog.at_level("INFO", logger="saessak.serve.test"):
        quiet = RequestLog(log_content=False, logger=logger)
        quiet.request(request_id="r1", endpoint="chat.completions", status=200, prompt_tokens=5, messages="비밀")
        quiet.content("r1", "request", [{"role": "user", "content": "비밀 이야기"}])
        assert '"prompt_tokens": 5' in caplog.text and "비밀" not in caplog.text
        RequestLog(log_content=True, logger=logger).content("r2", "request", [{"role": "user", "content": "비밀 이야기"}])
        assert "비밀 이야기" in caplog.text


class BatchRecordingModel(ScriptedModel):
    """Records the batch size of every decode step (one new token per row)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.decode_batches: list[int] = []

    def hidden_states(self, input_ids, position_ids, kv_cache=None):
        if input_ids.shape[1] == 1:
            self.decode_batches.append(input_ids.shape[0])
        return super().hidden_states(input_ids, position_ids, kv_cache)


def test_concurrent_requests_share_decode_steps():
    from concurrent.futures import ThreadPoolExecutor

    from saessak.tokenizer.chat_format import prompt_ids

    tok = tiny_tokenizer()
    word = tok.encode("새싹")[0]
    model = BatchRecordingModel(tok.vocab_size, len(prompt_ids(tok, MESSAGES)), [word] * 300, max_pos=512)
    served = ServedModel(model, tok, "recording", "test")
    with InProcessServer(ServeSettings(max_batch_size=8), lambda: served) as srv:
        body = {"messages": MESSAGES, "max_tokens": 200, "temperature": 0}
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda _: httpx.post(srv.base_url + "/v1/chat/completions", json=body,
                                                         timeout=60).json(), range(6)))
    assert all(r["usage"]["completion_tokens"] == 200 for r in replies)
    assert all(r["choices"][0]["message"]["content"] == replies[0]["choices"][0]["message"]["content"] for r in replies)
    # 6 x 199 decode tokens were produced in far fewer steps than one request at a time would take
    assert max(model.decode_batches) >= 4
    assert len(model.decode_batches) < 6 * 199 / 2


class _NameThatBreaks:
    """A served model whose `name` raises: a stand-in for a bug outside generation."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.source = model, tokenizer, "test"

    @property
    def name(self):
        raise RuntimeError("secret 010-2345-6789 inside a bug's message")


def test_a_bug_outside_generation_is_an_openai_500_without_a_traceback(caplog, capfd):
    tok = tiny_tokenizer()
    served = _NameThatBreaks(ScriptedModel(tok.vocab_size, 3, [tok.eot_id]), tok)
    with InProcessServer(ServeSettings(), lambda: served, wait=False) as srv, \
            caplog.at_level("INFO", logger="saessak.serve"):
        for _ in range(100):  # wait for the load (health itself is what breaks)
            r = httpx.get(srv.base_url + "/health")
            if r.status_code != 503:
                break
            threading.Event().wait(0.05)
        assert r.status_code == 500
        assert r.json()["error"] == {"message": "internal error while handling the request",
                                     "type": "server_error", "param": None, "code": "internal_error"}
        assert httpx.get(srv.base_url + "/metrics").status_code == 200  # the server goes on
    assert "RuntimeError" in caplog.text and '"endpoint": "/health", "status": 500' in caplog.text
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err):
        assert "010-2345-6789" not in text and "Traceback" not in text
