"""Request logging that keeps conversation content out of the logs unless explicitly asked.

By default one line per request holds metadata only: request id, endpoint, status, token counts,
finish reason, latency. Messages, prompts, completions and error messages (which may quote the
request) are never written. `--log-content` adds the content in separate, clearly marked lines;
it is for debugging on one's own data only.

Uvicorn's own access log (client address + path) is switched off by the server: this logger
writes the one line per request instead, without the client address.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER_NAME = "saessak.serve"


def configure(log_file: str | None = None, level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    if not logger.handlers:
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
        if log_file:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        for h in handlers:
            h.setFormatter(fmt)
            logger.addHandler(h)
    return logger


class RequestLog:
    """Writes request records; content only when `log_content` is True."""

    # The only fields a metadata record may carry: numbers, ids and fixed vocabularies.
    FIELDS = ("request_id", "endpoint", "status", "stream", "n", "prompt_tokens", "completion_tokens",
              "finish_reason", "latency_s", "ttft_s", "error_type", "error_code", "client_disconnected")

    def __init__(self, log_content: bool = False, logger: logging.Logger | None = None):
        self.log_content = log_content
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def request(self, **meta) -> None:
        record = {k: meta[k] for k in self.FIELDS if meta.get(k) is not None}
        self.logger.info("request %s", json.dumps(record, ensure_ascii=True))

    def content(self, request_id: str, kind: str, payload) -> None:
        if self.log_content:
            self.logger.info("content %s %s %s", request_id, kind, json.dumps(payload, ensure_ascii=False))

    def server_error(self, request_id: str, exc: BaseException) -> None:
        # the exception text may quote the request, so it is logged only with --log-content
        if self.log_content:
            self.logger.exception("error %s %s", request_id, exc)
        else:
            self.logger.error("error %s %s (details withheld: run with --log-content)", request_id,
                              type(exc).__name__)


def now() -> float:
    return time.perf_counter()
