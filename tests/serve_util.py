"""Helpers for the serving tests: tiny checkpoints, a CLI server subprocess, an in-process server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_checkpoint(folder: Path, **config) -> Path:
    """A tiny random model + the test tokenizer saved as a checkpoint folder."""
    from saessak.checkpoint import save_model
    from tests.helpers import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    config.setdefault("initializer_range", 0.3)  # varied (not single-token) greedy output
    model = tiny_model(tok.vocab_size, seed=0, **config)
    save_model(folder, model)
    tok.save(folder / "tokenizer.json")
    return folder


def wait_healthy(base_url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(base_url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not healthy after {timeout}s")


class CliServer:
    """`python -m saessak serve ...` in a subprocess; stdout+stderr go to `console_log`."""

    def __init__(self, model: Path, workdir: Path, *extra: str):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.console_log = workdir / "console.log"
        self.log_file = workdir / "requests.log"
        cmd = [sys.executable, "-m", "saessak", "serve", "--model", str(model), "--port", str(self.port),
               "--log-file", str(self.log_file), "--threads", "1", *extra]
        env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
        self._console = open(self.console_log, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._console, stderr=subprocess.STDOUT, env=env)

    def __enter__(self) -> "CliServer":
        try:
            wait_healthy(self.base_url, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("server did not start:\n" + self.console_log.read_text(errors="replace"))
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._console.close()

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self) -> str:
        text = self.console_log.read_text(encoding="utf-8", errors="replace")
        if self.log_file.exists():
            text += self.log_file.read_text(encoding="utf-8", errors="replace")
        return text


class InProcessServer:
    """The app from `create_app(settings, load)` under uvicorn in a thread, on a free port."""

    def __init__(self, settings, load, wait: bool = True):
        import uvicorn

        from saessak.serve.app import create_app

        self.app = create_app(settings, load)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.wait = wait

    def __enter__(self) -> "InProcessServer":
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise TimeoutError("in-process server did not start")
            time.sleep(0.02)
        if self.wait:
            wait_healthy(self.base_url)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
