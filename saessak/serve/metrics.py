"""Prometheus text-format metrics for GET /metrics (exposition format 0.0.4), without a dependency.

Counters and histograms are updated from the asyncio thread and the batching thread, so every
update takes one lock; gauges for the queue are read from the batching loop at scrape time.
"""

from __future__ import annotations

import bisect
import threading
from typing import Callable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.sum += v
        self.count += 1


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple], float] = {}
        self._hist: dict[str, _Histogram] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self.describe("saessak_requests_total", "counter", "HTTP API requests by endpoint and status code")
        self.describe("saessak_prompt_tokens_total", "counter", "prompt tokens of finished generations")
        self.describe("saessak_generation_tokens_total", "counter", "generated tokens")
        self.describe("saessak_request_latency_seconds", "histogram", "request latency, arrival to last token")
        self.describe("saessak_time_to_first_token_seconds", "histogram", "arrival to first generated token")
        for name in ("saessak_request_latency_seconds", "saessak_time_to_first_token_seconds"):
            self._hist[name] = _Histogram(LATENCY_BUCKETS)

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.describe(name, "gauge", help_text)
        self._gauges[name] = read

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            self._hist[name].observe(value)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in self._help.items():
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    series = [(dict(k[1]), v) for k, v in self._counters.items() if k[0] == name]
                    for labels, v in series or [({}, 0.0)]:
                        lines.append(f"{name}{_labels(labels)} {v:g}")
                elif kind == "gauge":
                    lines.append(f"{name} {float(self._gauges[name]()):g}")
                else:
                    h = self._hist[name]
                    cum = 0
                    for bound, c in zip(h.buckets, h.counts):
                        cum += c
                        lines.append(f'{name}_bucket{{le="{bound:g}"}} {cum}')
                    lines.append(f'{name}_bucket{{le="+Inf"}} {h.count}')
                    lines.append(f"{name}_sum {h.sum:g}")
                    lines.append(f"{name}_count {h.count}")
        return "\n".join(lines) + "\n"
