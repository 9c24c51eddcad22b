"""`saessak chat` (terminal REPL) and the user-error paths of `saessak serve` / `saessak chat`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from saessak.io import write_json
from tests.serve_util import REPO, make_checkpoint


def run_cli(*args: str, stdin: str = "", timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    env.pop("SAESSAK_API_KEY", None)  # a key in the developer's shell would change what serve does
    return subprocess.run([sys.executable, "-m", "saessak", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder with pretrain and sft stages done: `--model RUN` must serve sft."""
    from tests.helpers import tiny_tokenizer

    run = tmp_path_factory.mktemp("run")
    tiny_tokenizer().save(run / "tokenizer" / "tokenizer.json")
    make_checkpoint(run / "pretrain" / "final")
    make_checkpoint(run / "sft" / "final")
    (run / "sft" / "final" / "tokenizer.json").unlink()  # the run's tokenizer/ must be found instead
    (run / "pretrain" / "final" / "tokenizer.json").unlink()
    for stage in ("pretrain", "sft"):
        write_json(run / stage / "done.json", {})
    return run


def test_terminal_chat_session(run_folder):
    script = "안녕하세요\n/temp 0\n/system 너는 친절한 도우미야\n/temp 9\n/reset\n/help\n두 번째 질문\n"
    r = run_cli("chat", "--model", str(run_folder), "--max-tokens", "5", "--seed", "1", "--threads", "1",
                stdin=script)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"모델 {run_folder.name}-sft" in out  # the latest stage of the run folder
    assert out.count("새싹> ") == 2  # two replies streamed
    assert "(온도: 0)" in out and "온도는 0 과 2 사이" in out
    assert "(시스템 프롬프트: 너는 친절한 도우미야)" in out and "(대화를 지웠습니다)" in out
    assert "/reset" in out  # the help text
    assert "Traceback" not in r.stderr


def test_terminal_chat_history_is_trimmed_to_the_context(tmp_path):
    from saessak.serve.terminal_chat import _fit_history
    from tests.helpers import tiny_tokenizer

    tok = tiny_tokenizer()
    history = [{"role": "user", "content": "가나다라마바사 " * 10}, {"role": "assistant", "content": "아자차카 " * 10}] * 5
    ids = _fit_history(tok, "시스템", history, "마지막 질문", limit=120)
    assert ids is not None and len(ids) < 120
    assert tok.decode(ids).endswith("마지막 질문")
    assert _fit_history(tok, "", [], "아주 긴 질문 " * 100, limit=50) is None


@pytest.mark.parametrize("command", ["serve", "chat"])
def test_bad_model_path_is_a_clear_error(command, tmp_path):
    r = run_cli(command, "--model", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "saessak: error: --model" in r.stderr and "Traceback" not in r.stderr
    empty = tmp_path / "empty_run"
    empty.mkdir()
    r = run_cli(command, "--model", str(empty))
    assert r.returncode == 2 and "finished model stage" in r.stderr


def test_checkpoint_without_tokenizer_is_a_clear_error(tmp_path):
    ckpt = make_checkpoint(tmp_path / "lonely" / "ckpt")
    (ckpt / "tokenizer.json").unlink()
    r = run_cli("serve", "--model", str(ckpt))
    assert r.returncode == 2 and "tokenizer.json" in r.stderr


def test_model_resolution(run_folder, tmp_path):
    import shutil

    from saessak.model.loading import find

    found = find(run_folder, needed_by="serve")
    assert found.checkpoint == run_folder / "sft" / "final"
    assert found.tokenizer_json == run_folder / "tokenizer" / "tokenizer.json"
    assert found.name == f"{run_folder.name}-sft" and found.stage == "sft"
    found = find(run_folder / "pretrain" / "final", needed_by="serve")  # a checkpoint inside a run
    assert found.tokenizer_json == run_folder / "tokenizer" / "tokenizer.json"
    assert found.name == f"{run_folder.name}-pretrain"
    write_json(run_folder / "rl" / "done.json", {})  # rl marked done but no model: a clear error
    try:
        with pytest.raises(Exception, match="no config.json"):
            find(run_folder, needed_by="serve")
    finally:
        (run_folder / "rl" / "done.json").unlink()
    # A run folder written before the stage had one name keeps its pretrained model in base/.
    old = tmp_path / "old-run"
    shutil.copytree(run_folder / "tokenizer", old / "tokenizer")
    shutil.copytree(run_folder / "pretrain", old / "base")
    found = find(old, needed_by="serve")
    assert found.checkpoint == old / "base" / "final" and found.stage == "pretrain"
    assert find(old / "base" / "final", needed_by="serve").name == "old-run-pretrain"


def test_ctrl_c_stops_a_reply_then_exits(tmp_path):
    import signal
    import threading
    import time

    ckpt = make_checkpoint(tmp_path / "ckpt", never_ends=True, max_position_embeddings=2048)
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "saessak", "chat", "--model", str(ckpt), "--max-tokens", "1900",
                             "--threads", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, env=env,
                            # a suite started in the background (`cmd &` in a script) ignores SIGINT, and
                            # the child would inherit that: give it the default, as a terminal would
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    buf = bytearray()
    threading.Thread(target=lambda: [buf.extend(b) for b in iter(lambda: proc.stdout.read1(4096), b"")],
                     daemon=True).start()

    def wait_until(done, timeout: float = 60, poll: float = 0.02) -> None:
        deadline = time.time() + timeout
        while not done():
            assert time.time() < deadline and proc.poll() is None, bytes(buf).decode(errors="replace")
            time.sleep(poll)

    def wait_for(text: str, count: int = 1) -> None:
        wait_until(lambda: bytes(buf).count(text.encode()) >= count)

    try:
        proc.stdin.write("아주 길게 말해 줘\n".encode())
        proc.stdin.flush()
        wait_for("새싹> ")
        # Signal as soon as the reply is streaming: a fixed wait (0.3 s) let a fast machine finish all
        # 1,900 tokens first, and the test then waited for a "(멈춤)" that could not come.
        start = bytes(buf).index("새싹> ".encode())
        wait_until(lambda: len(buf) >= start + 64, poll=0.005)
        proc.send_signal(signal.SIGINT)
        wait_for("(멈춤)")
        wait_for("나> ", count=2)  # back at the prompt
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # at the prompt: a clean exit
        assert proc.wait(timeout=20) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


# -- who may use the server: the API key and the refusal to serve the network without one --------

def serve_args(**kw):
    import argparse

    base = {"host": "127.0.0.1", "api_key": None, "api_key_file": None, "no_auth": False}
    return argparse.Namespace(**{**base, **kw})


def test_a_network_host_without_a_key_is_refused_before_binding(run_folder):
    from tests.serve_util import free_port

    port = free_port()
    r = run_cli("serve", "--model", str(run_folder), "--host", "0.0.0.0", "--port", str(port), timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    msg = r.stderr
    assert "--host '0.0.0.0'" in msg and "--api-key-file" in msg and "SAESSAK_API_KEY" in msg and "--no-auth" in msg
    assert "serving" not in msg  # it stopped before the server started


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.0.10", False), ("myhost.example", False),
])
def test_loopback_hosts(host, loopback):
    from saessak.serve.cli import is_loopback

    assert is_loopback(host) is loopback


def test_where_the_key_comes_from(tmp_path):
    from saessak.serve.cli import resolve_api_key

    key_file = tmp_path / "key"
    key_file.write_text("  from-file-key\n")
    assert resolve_api_key(serve_args(host="0.0.0.0", api_key_file=str(key_file)), {}) == "from-file-key"
    env = {"SAESSAK_API_KEY": "from-env-key"}
    assert resolve_api_key(serve_args(host="0.0.0.0"), env) == "from-env-key"
    assert resolve_api_key(serve_args(api_key="flag-key"), env) == "flag-key"  # a flag beats the env
    assert resolve_api_key(serve_args(host="0.0.0.0", no_auth=True), {}) is None
    assert resolve_api_key(serve_args(), {}) is None  # loopback: open, as before


@pytest.mark.parametrize("kw, env, message", [
    ({"host": "0.0.0.0"}, {}, "no API key is set"),
    ({"host": "", "api_key": ""}, {}, "--api-key: the API key is empty"),
    ({"host": "0.0.0.0"}, {"SAESSAK_API_KEY": " "}, "SAESSAK_API_KEY environment variable: the API key is empty"),
    ({"api_key": "키"}, {}, "printable ASCII"),
    ({"api_key": "a b"}, {}, "printable ASCII"),
    ({"api_key": "k", "api_key_file": "KEYFILE"}, {}, "give the key one way"),
    ({"host": "0.0.0.0", "no_auth": True, "api_key": "k"}, {}, "--no-auth contradicts --api-key"),
    ({"no_auth": True}, {"SAESSAK_API_KEY": "k"}, "--no-auth contradicts the SAESSAK_API_KEY"),
    ({"api_key_file": "MISSING"}, {}, "MISSING: no such file"),
    ({"api_key_file": "EMPTY"}, {}, "EMPTY: the API key is empty"),
    ({"api_key_file": "TWOLINES"}, {}, "TWOLINES: the API key spans several lines"),
    ({"api_key_file": "LATIN1"}, {}, "LATIN1: is not UTF-8 text"),
    ({"api_key_file": "FOLDER"}, {}, "FOLDER: is a folder"),
])
def test_key_mistakes_are_clear_errors(tmp_path, kw, env, message):
    from saessak.errors import UserError
    from saessak.serve.cli import resolve_api_key

    files = {"KEYFILE": b"k\n", "EMPTY": b"\n\n", "TWOLINES": b"one\ntwo\n", "LATIN1": b"\xe9t\xe9"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "FOLDER").mkdir()
    if kw.get("api_key_file"):
        kw["api_key_file"] = str(tmp_path / kw["api_key_file"])
    with pytest.raises(UserError) as e:
        resolve_api_key(serve_args(**kw), env)
    assert message in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_is_named(tmp_path):
    from saessak.errors import UserError
    from saessak.serve.cli import resolve_api_key

    key_file = tmp_path / "key"
    key_file.write_text("k")
    key_file.chmod(0)
    with pytest.raises(UserError, match="key: cannot be read"):
        resolve_api_key(serve_args(api_key_file=str(key_file)), {})


def test_a_missing_key_file_stops_the_cli(tmp_path, run_folder):
    r = run_cli("serve", "--model", str(run_folder), "--api-key-file", str(tmp_path / "no-key"), timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"--api-key-file {tmp_path / 'no-key'}: no such file" in r.stderr
