"""Malformed and hostile requests to `saessak serve`: schemathesis fuzzes every operation of
/openapi.json against the live server, and each hostile input docs/API.md lists is sent by hand.
Every answer must be a 4xx with an OpenAI error body, never a 500.

This file is also schemathesis's hooks module (SCHEMATHESIS_HOOKS): the two checks below run in
the fuzzer's process, next to its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.serve_util import REPO, CliServer, make_checkpoint

schemathesis = pytest.importorskip("schemathesis")

API_KEY = "fuzz-key-0123"
MODEL = "saessak-fuzz"
MAX_N = 2
MAX_EXAMPLES = 80  # per operation in the fuzzing phase (the coverage phase adds its own cases)
MESSAGES = [{"role": "user", "content": "안녕하세요"}]


@schemathesis.check
def served_unless_too_long(ctx, response, case):
    """Schema-valid data is served; like schemathesis's positive_data_acceptance, but a prompt longer
    than the tiny test model's context may be refused (the schema cannot count tokens)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code < 400:
        return
    if response.status_code in (401, 404, 429):  # a fuzzed key or model id, a busy server
        return
    code = _error_code(response)
    if response.status_code == 400 and code == "context_length_exceeded":
        return
    raise AssertionError(f"schema-valid request refused: {response.status_code} {code}")


@schemathesis.check
def openai_error_body(ctx, response, case):
    """Every error, documented status or not (405 too), is {"error": {message, type, param, code}}."""
    if response.status_code < 400:
        return
    try:
        err = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(f"{response.status_code} without an OpenAI error body: {response.content[:200]!r}")
    if set(err) != {"message", "type", "param", "code"} or not isinstance(err["message"], str):
        raise AssertionError(f"{response.status_code}: error body of the wrong shape: {err}")


def _error_code(response) -> str | None:
    try:
        return json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# -- the live server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    # the smallest model that runs: every reply stops within 64 positions
    ckpt = make_checkpoint(work / "ckpt", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    key_file = work / "api-key"
    key_file.write_text(API_KEY + "\n")
    with CliServer(ckpt, work, "--api-key-file", str(key_file), "--served-model-name", MODEL,
                   "--max-n", str(MAX_N)) as srv:
        yield srv


def post(server, body, path: str = "/v1/chat/completions", **headers) -> httpx.Response:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **headers}
    content = json.dumps(body) if isinstance(body, (dict, list)) else body
    return httpx.post(server.base_url + path, content=content, headers=headers, timeout=60)


def assert_error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text[:300]
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


def test_schemathesis_finds_no_server_error_and_no_schema_violation(server, tmp_path):
    started = time.monotonic()
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", server.base_url + "/openapi.json",
           "--phases", "examples,coverage,fuzzing", "--checks", "all",
           "--exclude-checks", "positive_data_acceptance",  # replaced by served_unless_too_long
           "-H", f"Authorization: Bearer {API_KEY}", "--max-examples", str(MAX_EXAMPLES), "--seed", "13",
           "--workers", "1", "--request-timeout", "30", "--generation-database", "none", "--no-color"]
    env = dict(os.environ, PYTHONPATH=str(REPO), SCHEMATHESIS_HOOKS=__file__, TOKENIZERS_PARALLELISM="false")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "7 selected / 7 total" in out  # every operation of the schema was fuzzed
    cases = int(out.rsplit(" generated,", 1)[0].rsplit(None, 1)[-1])
    assert cases >= 2 * MAX_EXAMPLES, out[-2000:]  # the two request bodies were fuzzed at least
    print(f"schemathesis: {cases} cases in {time.monotonic() - started:.1f} s")


def test_schema_lists_every_route(server):
    from saessak.serve.app import ServeSettings, create_app

    schema = httpx.get(server.base_url + "/openapi.json").json()
    app = create_app(ServeSettings(), lambda: None)
    routes = {r.path for r in app.routes if getattr(r, "include_in_schema", False) and r.path != "/openapi.json"}
    assert routes == set(schema["paths"])
    assert schema["paths"]["/v1/models/{model_id}"]["get"]["parameters"][0]["example"] == MODEL
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]["n"]["maximum"] == MAX_N


# -- the hostile inputs, one by one --------------------------------------------------------------

def test_a_lone_surrogate_and_deep_nesting_answer_400(server):  # both were 500s once
    r = post(server, b'{"model":"x","messages":[{"role":"user","content":"\\ud800"}]}')
    err = assert_error(r, 400, "invalid_value", "messages[0].content")
    assert "surrogate" in err["message"]
    r = post(server, b"[" * 100_000 + b"]" * 100_000)
    assert "nests more than 64 levels" in assert_error(r, 400, "invalid_json")["message"]


@pytest.mark.parametrize("body, code, param", [
    (b'{"messages":[{"role":"user","content":"\\udc00\\ud800"}]}', "invalid_value", "messages[0].content"),
    (b'{"messages":[{"role":"user","content":"x"}],"extra":{"\\udfff":1}}', "invalid_value", "extra.\\udfff"),
    (b'{"messages":[{"role":"user","content":"\xff\xfe"}]}', "invalid_json", None),  # not UTF-8
    ('{"messages":[{"role":"user","content":"x"}]}'.encode("utf-16"), "invalid_json", None),
    (b'{"a":' * 70 + b"1" + b"}" * 70, "invalid_json", None),  # past the 64-level limit
    (b'{"messages":' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json", None),
    (b'{"messages":[{"role":"user","content":"x"}],"temperature":NaN}', "invalid_json", None),
    (b'{"messages":[{"role":"user","content":"x"}],"top_p":-Infinity}', "invalid_json", None),
    (b'{"messages":[{"role":"user","content":"x"}],"unknown":Infinity}', "invalid_json", None),
    (b'{"messages":[{"role":"user","content":"x"}],"max_tokens":1e400}', "invalid_type", "max_tokens"),
    (b'{"messages":[{"role":"user","content":"x"}],"max_tokens":' + b"1" + b"0" * 100 + b"}",
     "invalid_value", "max_tokens"),
    (b'{"messages":[{"role":"user","content":"x"}],"max_tokens":' + b"9" * 5000 + b"}", "invalid_json", None),
    (b'{"messages":[{"role":"user","content":"x"}],"top_k":' + b"1" + b"0" * 100 + b"}", "invalid_value", "top_k"),
    (b'{"messages":[{"role":"user","content":"x"}],"temperature":1e400}', "invalid_value", "temperature"),
    (b'{"messages":[{"role":"user","content":"x"}],"seed":1e30}', "invalid_value", "seed"),
    (b'{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":4,"max_tokens":0}',
     "invalid_value", "max_tokens"),
    (b'{"messages":[{"role":["user"],"content":"x"}]}', "invalid_value", "messages[0].role"),
    (b'{"messages":[{"role":"user","content":{"text":"x"}}]}', "invalid_type", "messages[0].content"),
    (b'{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}', "invalid_value", "messages[0].content"),
    (b'{"messages":"hello"}', "invalid_type", "messages"),
    (b'{"messages":[]}', "invalid_type", "messages"),
    (b'{"messages":[{"role":"user","content":"x"}],"stream":"yes"}', "invalid_type", "stream"),
    (b'{"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}', "invalid_value", "stop"),
    (b'{"messages":[{"role":"user","content":"x"}],"model":7}', "invalid_type", "model"),
    (b"", "invalid_json", None),
    (b"   ", "invalid_json", None),
    (b"{not json", "invalid_json", None),
    (b"[1, 2]", "invalid_json", None),
    (b'"a string"', "invalid_json", None),
    (b"null", "invalid_json", None),
])
def test_hostile_bodies_answer_400(server, body, code, param):
    assert_error(post(server, body), 400, code, param)


def test_completions_endpoint_is_hardened_the_same_way(server):
    assert_error(post(server, b'{"prompt":"\\ud800"}', "/v1/completions"), 400, "invalid_value", "prompt")
    assert_error(post(server, b"[" * 100_000, "/v1/completions"), 400, "invalid_json")
    assert_error(post(server, b'{"prompt":["a","b"]}', "/v1/completions"), 400, "invalid_type", "prompt")


def test_valid_odd_requests_are_served(server):
    ok = {"messages": MESSAGES, "max_tokens": 2, "temperature": 0}
    assert post(server, {**ok, "max_tokens": 2.0}).status_code == 200  # an integral number is an integer
    assert post(server, {**ok, "tools": [{"deeply": [[[{"nested": True}]]]}], "user": "u1"}).status_code == 200
    assert post(server, b"\xef\xbb\xbf" + json.dumps(ok).encode()).status_code == 200  # UTF-8 BOM
    pair = json.dumps({**ok, "messages": [{"role": "user", "content": "\U0001F600 a\x00b"}]})  # escaped pair, NUL
    assert "\\ud83d\\ude00" in pair and post(server, pair).status_code == 200
    r = post(server, {**ok, "max_tokens": 2**31 - 1})  # more than the context: stops at its end
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_content_type_must_be_json(server):
    body = json.dumps({"messages": MESSAGES, "max_tokens": 2})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert_error(post(server, body, **{"Content-Type": ctype}), 415, "unsupported_media_type")
    for ctype in ("application/json; charset=utf-8", "application/vnd.api+json", "APPLICATION/JSON"):
        assert post(server, body, **{"Content-Type": ctype}).status_code == 200


def test_a_body_over_the_limit_is_413_without_being_read(server):
    from saessak.serve.protocol import DEFAULT_MAX_REQUEST_BYTES as LIMIT

    body = json.dumps({"messages": [{"role": "user", "content": "가" * (LIMIT // 3)}]}, ensure_ascii=False).encode()
    assert LIMIT < len(body) < LIMIT + 100
    assert_error(post(server, body), 413, "request_too_large")
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: counted as it comes
    assert_error(post(server, chunks), 413, "request_too_large")

    def raw(request: bytes) -> bytes:
        """Send `request` and wait for the answer without ever finishing the body."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(request)
            return s.recv(65536)

    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            "Content-Type: application/json\r\n").encode()
    # 10 GiB announced, nothing sent: refused from the header alone
    assert raw(head + b"Content-Length: 10737418240\r\n\r\n").startswith(b"HTTP/1.1 413 ")
    # a chunked body past the limit whose last chunk never comes: refused all the same
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    assert raw(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * (LIMIT // 0x10000 + 1)).startswith(
        b"HTTP/1.1 413 ")


def test_errors_outside_generation_are_openai_shaped(server):
    r = httpx.put(server.base_url + "/v1/chat/completions")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert_error(httpx.get(server.base_url + "/v1/models/" + "x" * 5000,
                           headers={"Authorization": f"Bearer {API_KEY}"}), 404, "model_not_found")
    assert_error(httpx.get(server.base_url + "/nothing/010-2345-6789"), 404, "not_found")
    assert_error(httpx.get(server.base_url + "/v1/models"), 401, "invalid_api_key")


def test_every_error_leaves_a_content_free_log_line(server):
    secret = "010-9876-5432"
    post(server, json.dumps({"messages": [{"role": "user", "content": secret}], "temperature": "hot"}))
    post(server, ('{"messages":[{"role":"user","content":"' + secret + '\\ud800"}]}').encode())
    post(server, ('{"messages":[{"role":"user","content":"' + secret + '"}]}').encode(), **{"Content-Type": "text/plain"})
    httpx.get(server.base_url + "/v1/models/" + secret, headers={"Authorization": f"Bearer {API_KEY}"})
    httpx.get(server.base_url + "/" + secret)
    time.sleep(0.3)
    logs = server.logs()
    for status, endpoint in (("415", "chat.completions"), ("404", "/v1/models/{model_id}"), ("404", "unmatched")):
        assert f'"endpoint": "{endpoint}", "status": {status}' in logs, logs[-3000:]
    assert secret not in logs and "9876-5432" not in logs
    assert "Traceback" not in logs
