"""What a training loop reports: per-step metrics, a progress line, and the measured peak for MFU.

- `MetricsLog`: `RUN/<stage>/metrics.jsonl`, truncated back to the checkpoint on resume.
- `Progress`: one status line with loss, tokens/s, MFU, ETA.
- `peak_flops`: the measured matmul peak of this process's device, the denominator of MFU.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from saessak.io import append_jsonl, read_jsonl, write_text


class MetricsLog:
    """Append-only JSONL of per-step metrics (`RUN/<stage>/metrics.jsonl`), written by rank 0."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled:
            append_jsonl(self.path, {**record, "time": round(time.time(), 3)})

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: a killed run may have logged steps its last checkpoint lacks."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) <= step]
        write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))


class Progress:
    """A one-line status: step, loss, tokens/s, MFU, ETA; redrawn in place on a terminal."""

    def __init__(self, total_steps: int, start_step: int = 0, stream=None, every: int = 1):
        self.total = total_steps
        self.start_step = start_step
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = 1 if self.tty else max(1, every)
        self.t0 = time.perf_counter()

    def line(self, step: int, loss: float, tok_per_s: float, mfu: float | None, extra: str = "") -> str:
        done = step - self.start_step
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        width = 20
        filled = int(width * step / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        mfu_s = f" mfu {100 * mfu:.1f}%" if mfu is not None else ""
        return (f"[{bar}] {step}/{self.total} loss {loss:.4f} {tok_per_s:,.0f} tok/s{mfu_s} "
                f"eta {_fmt_secs(eta)}{(' ' + extra) if extra else ''}")

    def update(self, step: int, loss: float, tok_per_s: float, mfu: float | None, extra: str = "") -> None:
        if step % self.every and step != self.total:
            return
        text = self.line(step, loss, tok_per_s, mfu, extra)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            if step == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


def _fmt_secs(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@functools.lru_cache(maxsize=None)
def peak_flops(device: str = "cpu", dtype: str = "bf16", seconds: float = 0.4) -> float:
    """Measured dense matmul peak (FLOP/s) of this process's device and threads, in `dtype`.

    The best of a few square sizes, each timed for `seconds`; MFU = achieved / this. Measuring
    (instead of a datasheet figure) keeps MFU honest on shared or virtualised CPUs. A size whose
    first product already takes `seconds` is measured by that product and ends the search: on an
    AVX2-only AMD EPYC bf16 ran at 3 GFLOP/s, a 2048 product took about 6 s, and the fixed warm-up
    and window made one call take about 3 minutes.
    """
    tdtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    dev = torch.device(device)
    sizes = (1024, 2048) if dev.type == "cpu" else (4096, 8192)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, dtype=tdtype, device=dev)
        b = torch.randn(n, n, dtype=tdtype, device=dev)
        _sync(dev)
        t0 = time.perf_counter()
        a @ b
        _sync(dev)
        first = time.perf_counter() - t0
        if first >= seconds:
            best = max(best, 2 * n**3 / first)
            break
        a @ b
        _sync(dev)
        count, t0 = 0, time.perf_counter()
        while True:
            a @ b
            count += 1
            _sync(dev)
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        best = max(best, 2 * n**3 * count / dt)
    return best


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
