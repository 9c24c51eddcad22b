"""`saessak serve` runs its engine in a child process: what happens when that process is there, when
it dies, and when it cannot load the model; and `--engine-in-process` keeps the old single process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.serve_util import CliServer, make_checkpoint


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


def engine_child(pid: int) -> int:
    """The spawned engine process (multiprocessing also starts a resource tracker)."""
    for c in children(pid):
        cmd = Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "spawn_main" in cmd:
            return c
    raise AssertionError(f"no engine process under {pid}: {children(pid)}")


def chat_body(**kw) -> dict:
    return {"messages": [{"role": "user", "content": "안녕하세요"}], "max_tokens": 8, "temperature": 0, **kw}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt", never_ends=True, max_position_embeddings=2048)


def test_engine_process_dies_requests_fail_cleanly(ckpt, tmp_path):
    with CliServer(ckpt, tmp_path) as srv:
        url = srv.base_url + "/v1/chat/completions"
        assert httpx.post(url, json=chat_body()).json()["usage"]["completion_tokens"] == 8
        child = engine_child(srv.proc.pid)
        with httpx.stream("POST", url, json=chat_body(max_tokens=2000, stream=True), timeout=60) as r:
            lines = r.iter_lines()
            for _ in range(3):
                next(lines)
            os.kill(child, signal.SIGKILL)
            rest = "\n".join(lines)  # the stream ends (no hang), with an error event
        assert '"code": "internal_error"' in rest and "the engine process stopped" in rest
        health = httpx.get(srv.base_url + "/health")
        assert health.status_code == 503 and "engine process stopped" in health.json()["error"]
        r = httpx.post(url, json=chat_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_stopped"
        assert srv.proc.poll() is None  # the HTTP side stays up and says what is wrong


def test_in_process_flag_gives_the_same_reply_without_a_child(ckpt, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with CliServer(ckpt, tmp_path / "a") as two, CliServer(ckpt, tmp_path / "b", "--engine-in-process") as one:
        replies = [httpx.post(s.base_url + "/v1/chat/completions", json=chat_body(max_tokens=16)).json()
                   for s in (two, one)]
        assert replies[0]["choices"][0]["message"]["content"] == replies[1]["choices"][0]["message"]["content"]
        assert replies[0]["usage"] == replies[1]["usage"]
        engine_child(two.proc.pid)
        with pytest.raises(AssertionError):
            engine_child(one.proc.pid)


def test_weights_the_child_cannot_load_are_reported(tmp_path):
    bad = make_checkpoint(tmp_path / "bad")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with CliServer(bad, tmp_path, wait=False) as srv:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                health = httpx.get(srv.base_url + "/health", timeout=2)
                if health.json().get("status") == "error":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the load error never reached /health:\n" + srv.logs())
        assert health.status_code == 503 and "model.safetensors" in health.json()["error"]
        r = httpx.post(srv.base_url + "/v1/chat/completions", json=chat_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready"
        assert "Traceback" not in srv.logs()
