"""The teacher: one OpenAI-compatible Chat Completions endpoint, asked over plain HTTP (urllib).

Any server that speaks the Chat Completions shape works: vLLM, llama.cpp's server, Ollama, a
hosted API, `saessak serve`. Each sample is one request with its own `seed` (llama.cpp and Ollama
ignore `n`; a per-sample seed makes each reply reproducible where the server honours it).

Failures, by what the user can do about them:
- transient (429, any 5xx, 408, a timeout, a dropped connection once the server has answered):
  retried with exponential back-off and jitter, up to `max_retries`; a `Retry-After` (seconds or
  an HTTP date) is honoured instead, and a 429's pauses every worker, not only the one told;
- the user's mistake (nothing listening at the URL, an unknown host, a 401/403 key, a 404 path
  or model, any other 4xx, a reply that is not Chat Completions JSON): a UserError at once that
  names the URL, the key's variable or the model, never the key itself.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from saessak.errors import UserError

RETRY_STATUS = {408, 429}  # and every 5xx


@dataclass
class Reply:
    text: str  # the reasoning (when the server returns it apart) and the answer, as one assistant turn
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_reported: bool


def endpoint_of(url: str) -> str:
    """The Chat Completions URL for an API base (`http://host:8000/v1`) or the full endpoint URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"--teacher-url {url!r}: give an http(s) URL of an OpenAI-compatible API, "
                        "e.g. http://localhost:8000/v1")
    base = url.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def host_of(url: str) -> str:
    """host[:port] of a URL, without any user:password part (what the data card may keep)."""
    netloc = urlsplit(url).netloc
    return netloc.rsplit("@", 1)[-1]


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """A `Retry-After` header: delta seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_message(raw: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body."""
    text = raw.decode("utf-8", errors="replace")
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    except (ValueError, AttributeError):
        pass
    return " ".join(text.split())[:200] or "(empty body)"


class Teacher:
    """Chat Completions client shared by the worker threads; counts requests, retries and tokens."""

    def __init__(self, url: str, model: str, api_key: str | None = None, *, key_name: str | None = None,
                 timeout_s: float = 300.0, max_retries: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print):
        self.url = url
        self.endpoint = endpoint_of(url)
        self.host = host_of(url)
        self.model = model
        self._key = api_key
        self.key_name = key_name
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._sleep, self._log = sleep, log
        self._lock = threading.Lock()
        self._pause_until = 0.0  # set by a 429: every worker waits until then
        self.answered = False  # the server has answered once: a refused connection is now transient
        self.requests = 0
        self.retries: Counter = Counter()  # reason -> count
        self.prompt_tokens = 0
        self.completion_tokens = 0

    # --- one sample
    def chat(self, messages: list[dict], *, temperature: float, top_p: float, max_tokens: int, seed: int) -> Reply:
        body = {"model": self.model, "messages": messages, "temperature": temperature, "top_p": top_p,
                "max_tokens": max_tokens, "seed": seed, "n": 1, "stream": False}
        data = self._post(body)
        try:
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise UserError(f"teacher {self.endpoint}: the reply is not a Chat Completions object "
                            f"(no choices[0].message): {json.dumps(data, ensure_ascii=False)[:200]}") from None
        # Reasoning servers (DeepSeek's API, vLLM with a reasoning parser) return the thinking apart.
        reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        text = f"{reasoning.strip()}\n\n{content}" if isinstance(reasoning, str) and reasoning.strip() else content
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        pt, ct = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        with self._lock:
            self.prompt_tokens += pt
            self.completion_tokens += ct
        return Reply(text, choice.get("finish_reason"), pt, ct, "completion_tokens" in usage)

    def usage(self) -> dict[str, Any]:
        with self._lock:
            return {"host": self.host, "model": self.model, "requests": self.requests,
                    "retries": dict(sorted(self.retries.items())), "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens}

    # --- HTTP with retries
    def _post(self, body: dict) -> dict:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            self._wait_for_pause()
            delay = None
            try:
                with self._lock:
                    self.requests += 1
                req = urllib.request.Request(self.endpoint, data=payload, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
                self.answered = True
                try:
                    return json.loads(raw)
                except ValueError:
                    raise UserError(f"teacher {self.endpoint}: answered with something that is not JSON "
                                    f"({_error_message(raw)}): is --teacher-url an OpenAI-compatible API base?") from None
            except urllib.error.HTTPError as e:
                self.answered = True
                message = _error_message(e.read() or b"")
                status = e.code
                if status not in RETRY_STATUS and status < 500:
                    raise self._client_error(status, message) from None
                reason = f"HTTP {status}"
                last = f"{reason}: {message}"
                delay = retry_after_s(e.headers.get("Retry-After"))  # 429's, and a 503's when it sends one
                if delay is not None and status == 429:
                    self._pause(delay)
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError) as e:
                cause = getattr(e, "reason", e)
                if not self.answered and not isinstance(cause, TimeoutError):
                    raise UserError(f"--teacher-url {self.url}: cannot reach the teacher at {self.endpoint} "
                                    f"({cause}); is the server running and the URL right?") from None
                reason = "timeout" if isinstance(cause, TimeoutError) else "connection"
                last = f"{reason}: {cause}"
            if attempt == self.max_retries:
                break
            with self._lock:
                self.retries[reason] += 1
            wait = delay if delay is not None else self._backoff(attempt)
            self._log(f"distill: teacher {self.host}: {last}; retry {attempt + 1}/{self.max_retries} in {wait:.1f} s")
            self._sleep(wait)
        raise UserError(f"teacher {self.host}: no answer after {self.max_retries + 1} tries (last: {last}). "
                        "Finished prompts are kept: rerun the same command to continue")

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        return base * (0.5 + random.random() / 2)  # jitter: workers that failed together retry apart

    def _pause(self, seconds: float) -> None:
        with self._lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _wait_for_pause(self) -> None:
        with self._lock:
            left = self._pause_until - time.monotonic()
        if left > 0:
            self._sleep(left)

    def _client_error(self, status: int, message: str) -> UserError:
        if status in (401, 403):
            key = (f"the key in ${self.key_name}" if self.key_name and self._key
                   else "no API key was sent (pass --api-key-env VAR naming the variable that holds it)")
            return UserError(f"teacher {self.host} refused the request (HTTP {status}: {message}): check {key}")
        if status == 404:
            if "model" in message.lower():
                return UserError(f"teacher {self.host}: --teacher-model {self.model!r} not found (HTTP 404: {message})")
            return UserError(f"--teacher-url {self.url}: no Chat Completions endpoint at {self.endpoint} (HTTP 404); "
                             "give the API base, e.g. http://host:8000/v1")
        return UserError(f"teacher {self.endpoint} rejected the request (HTTP {status}: {message})")


def _count(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else 0
