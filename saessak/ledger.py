"""The cost ledger: one JSON line per stage run in RUN/ledger.jsonl, with raw measured facts.

Money is not computed here: the report stage turns these facts into KRW and USD with a price
table. Nothing in a record is estimated after the fact: wall and CPU time are measured around
the stage, FLOPs are counted by the stage from the tokens it actually processed.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from saessak import __version__
from saessak.io import append_jsonl, read_jsonl


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: str = "cpu") -> dict[str, Any]:
    """What the stage ran on: CPU model and core count, or GPU name and count."""
    info: dict[str, Any] = {"type": "cpu", "cpu": cpu_model(), "cpu_cores": os.cpu_count()}
    if str(device).startswith("cuda"):
        import torch

        n = torch.cuda.device_count()
        info.update(type="cuda", gpu=torch.cuda.get_device_name(0) if n else None, gpu_count=n)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        info["gpu_count"] = max(1, world) if n else 0
    else:
        info["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
    return info


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class StageTimer:
    """Measures one stage run and appends its ledger record on `finish`.

    Usage:
        timer = StageTimer(run_dir, "pretrain", device="cpu")
        ... work ...
        timer.finish(tokens=..., flops=..., params=..., extra={...})
    """

    def __init__(self, run_dir: str | os.PathLike, stage: str, device: str = "cpu"):
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.device = device
        self.start_time = now_iso()
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()

    def finish(self, **facts: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        cpu = time.process_time() - self._c0
        record: dict[str, Any] = {
            "stage": self.stage,
            "start": self.start_time,
            "end": now_iso(),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "device": describe_device(self.device),
            "saessak_version": __version__,
            "git_commit": git_commit(),
        }
        record.update(facts)
        if int(os.environ.get("RANK", "0")) == 0:
            append_jsonl(self.run_dir / "ledger.jsonl", record)
        return record


def read_ledger(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "ledger.jsonl")
