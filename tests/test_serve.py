"""`saessak serve` as a user runs it (a subprocess), checked with the official `openai` client."""

from __future__ import annotations

import re
import time

import httpx
import openai
import pytest

from tests.serve_util import CliServer, make_checkpoint

API_KEY = "test-key"
PHONE = "010-2345-6789"
RRN = "900101-1234567"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    # a long context so a reply can outlast the disconnect test's reads
    ckpt = make_checkpoint(work / "ckpt", never_ends=True, max_position_embeddings=1024)
    with CliServer(ckpt, work, "--api-key", API_KEY, "--served-model-name", "saessak-tiny") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def chat(client, content="안녕하세요, 오늘 날씨 어때요?", **kw):
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model="saessak-tiny", messages=[{"role": "user", "content": content}], **kw)


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["saessak-tiny"]
    assert httpx.get(server.base_url + "/health").json()["status"] == "ok"


def test_chat_completion_with_usage(client):
    from saessak.tokenizer.chat_format import prompt_ids
    from tests.helpers import tiny_tokenizer

    r = chat(client, max_tokens=7, extra_body={"unknown_field": 1})  # unknown fields are ignored
    assert r.object == "chat.completion" and r.model == "saessak-tiny"
    assert r.choices[0].message.role == "assistant"
    want_prompt = len(prompt_ids(tiny_tokenizer(), [{"role": "user", "content": "안녕하세요, 오늘 날씨 어때요?"}]))
    assert r.usage.prompt_tokens == want_prompt
    assert r.usage.completion_tokens == 7 and r.usage.total_tokens == want_prompt + 7
    assert r.choices[0].finish_reason == "length"
    assert chat(client, max_completion_tokens=3).usage.completion_tokens == 3


def test_streaming_chunks(client):
    plain = chat(client, max_tokens=10).choices[0].message.content
    stream = chat(client, max_tokens=10, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain


def test_stop_sequences(client):
    full = chat(client, max_tokens=30).choices[0].message.content
    # a stop string taken from the middle of the greedy reply (avoiding replacement characters)
    start = next(i for i in range(3, len(full) - 2) if "\ufffd" not in full[i:i + 2])
    stop = full[start:start + 2]
    cut = full.index(stop)
    r = chat(client, max_tokens=30, stop=stop)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[:cut]
    streamed = "".join(c.choices[0].delta.content or "" for c in chat(client, max_tokens=30, stop=[stop, "없는말"],
                                                                           stream=True) if c.choices)
    assert streamed == full[:cut]


def test_seed_and_n(client):
    a = chat(client, temperature=1.0, seed=7, n=2, max_tokens=10)
    b = chat(client, temperature=1.0, seed=7, n=2, max_tokens=10)
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert a.choices[0].message.content != a.choices[1].message.content
    assert a.usage.completion_tokens == 20


def test_text_completions(client):
    r = client.completions.create(model="saessak-tiny", prompt="대한민국의 주권은", max_tokens=5, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens == 5
    chunks = list(client.completions.create(model="saessak-tiny", prompt="대한민국의 주권은", max_tokens=5,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text


def test_errors_are_openai_shaped(server, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, content="가나다라 " * 400)
    assert "context limit is 1024" in e.value.body["message"] and e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, temperature="hot")
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        chat(client, n=1000)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url + "/v1", api_key="wrong", max_retries=0).models.list()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    url = server.base_url + "/v1/chat/completions"
    r = httpx.post(url, content=b"{not json", headers=headers)
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(url, json={"messages": [{"role": "robot", "content": "x"}]}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].role"
    r = httpx.post(url, json={"messages": [{"role": "user", "content": "x"}]})  # no key
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.base_url + "/v1/nothing-here").json()["error"]["type"] == "not_found_error"


def test_disconnect_frees_the_slot(server):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"messages": [{"role": "user", "content": "길게 말해 주세요"}], "max_tokens": 900, "stream": True,
            "temperature": 0}
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, headers=headers) as r:
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
    # the stream is closed here, long before 900 tokens
    deadline = time.time() + 10
    while time.time() < deadline:
        metrics = httpx.get(server.base_url + "/metrics").text
        if re.search(r"^saessak_running_requests 0$", metrics, re.M) and '"client_disconnected": true' in server.logs():
            break
        time.sleep(0.05)
    else:
        pytest.fail("the disconnected stream still holds its slot:\n" + metrics)
    line = [ln for ln in server.logs().splitlines() if '"client_disconnected": true' in ln][-1]
    assert int(re.search(r'"completion_tokens": (\d+)', line).group(1)) < 900


def test_metrics_exposition(server, client):
    chat(client, max_tokens=2)
    text = httpx.get(server.base_url + "/metrics").text
    assert re.search(r'^saessak_requests_total\{endpoint="chat.completions",status="200"\} [1-9]', text, re.M)
    assert re.search(r"^saessak_generation_tokens_total [1-9]", text, re.M)
    assert re.search(r'^saessak_time_to_first_token_seconds_bucket\{le="\+Inf"\} [1-9]', text, re.M)
    assert "saessak_queue_depth 0" in text
    assert "# TYPE saessak_request_latency_seconds histogram" in text


def test_personal_data_leaves_no_trace_in_logs(server, client):
    secret = f"제 전화번호는 {PHONE}이고 주민등록번호는 {RRN}입니다."
    chat(client, content=secret, max_tokens=3)
    list(chat(client, content=secret, max_tokens=3, stream=True))
    client.completions.create(model="saessak-tiny", prompt=secret, max_tokens=3)
    with pytest.raises(openai.BadRequestError):  # an error path too: the message must not be logged
        chat(client, content=secret * 300)
    time.sleep(0.3)
    logs = server.logs()
    assert logs.count('"status": 200') >= 3  # the requests were logged (metadata only)...
    for needle in (PHONE, PHONE.replace("-", ""), RRN, "2345-6789", "1234567", "전화번호", "주민등록번호"):
        assert needle not in logs  # ...without their content
