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


def block_tokens(model, ids, lift: float) -> None:
    """Make `model` (untied head) never emit `ids`: hidden dimension 0 carries the constant `lift`
    from the embeddings to the head (no layer writes to it), and the head gives `ids` -100 x lift there."""
    import torch

    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = lift
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[ids] = 0.0
        model.lm_head.weight[ids, 0] = -100.0


def make_checkpoint(folder: Path, never_ends: bool = False, **config) -> Path:
    """A tiny random model + the test tokenizer saved as a checkpoint folder.

    `never_ends`: the model can never emit <|end|>, so a reply runs to max_tokens (tests that
    stop or disconnect mid-reply need one that is still going). Residual dimension 0 is held at
    a constant positive value (set in every embedding, written by no layer), and <|end|>'s output
    row reads only that dimension with a large negative weight.
    """
    from saessak.model.checkpoint import save_model
    from tests.helpers import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    config.setdefault("initializer_range", 0.3)  # varied (not single-token) greedy output
    if never_ends:
        config["tie_word_embeddings"] = False
    model = tiny_model(tok.vocab_size, seed=0, **config)
    if never_ends:
        block_tokens(model, [tok.eot_id], lift=5.0)
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

    def __init__(self, model: Path, workdir: Path, *extra: str, wait: bool = True):
        self.wait = wait
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
        if not self.wait:
            return self
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


DEMO_CHATS = [
    ("안녕하세요", "안녕하세요! 저는 새싹이에요. 이 컴퓨터 안에서만 돌아가고, 대화 내용을 서버에 남기지 않아요."),
    ("파이썬으로 인사하는 코드를 보여 줘", "**파이썬** 예시입니다:\n```python\nprint(\"안녕하세요\")\n```\n실행하면 `안녕하세요`가 출력돼요."),
    ("오늘은 월요일이야. 내일은?", "내일은 **화요일**입니다."),
]


def train_demo_chat_model(folder: Path, steps: int = 300, seed: int = 0, lr: float = 1e-2,
                          chats: list[tuple[str, str]] = DEMO_CHATS, **shape) -> Path:
    """A tiny model that memorises DEMO_CHATS (a few seconds), so the web page shows real Korean
    replies with Markdown in the documentation screenshot; or `chats` (question, answer), for a
    teacher that knows its answers (tests/test_distill.py). `shape`: ModelConfig overrides."""
    import torch

    from saessak.tokenizer.chat_format import render
    from saessak.model.checkpoint import save_model
    from tests.helpers import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    model = tiny_model(tok.vocab_size, seed=seed, **{"hidden_size": 96, "intermediate_size": 256, **shape}).train()
    turns = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in chats]
    # single turns, and the first two as one conversation (the screenshot asks them in a row)
    rows = [render(tok, t) for t in turns] + [render(tok, turns[0] + turns[1])]
    T = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), T), tok.pad_id)
    targets = torch.full((len(rows), T), -100)
    for i, r in enumerate(rows):
        ids[i, : len(r.ids)] = torch.tensor(r.ids)
        labels = [t if m else -100 for t, m in zip(r.ids[1:], r.loss_mask[1:])]
        targets[i, : len(labels)] = torch.tensor(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and the test machine is shared
    try:
        for _ in range(steps):
            loss = model(ids, targets=targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    save_model(folder, model.eval())
    tok.save(folder / "tokenizer.json")
    return folder
