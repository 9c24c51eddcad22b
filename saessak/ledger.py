"""The cost ledger: what each stage spent (recorded as it runs) and what that cost (priced on reading).

Recording: every stage run appends one JSON line to RUN/ledger.jsonl through `StageTimer`, with
raw measured facts only: wall and CPU time measured around the stage, the device, and the
stage's own counts (tokens, FLOPs from the tokens it actually processed, MFU, ...). Nothing in
a record is estimated after the fact, and no record holds money.

Pricing: a reader (the report, the model card) turns records into energy and money with a price
table (`saessak/prices.toml`, or a user file that overrides some of its keys):

    device-hours = wall_s / 3600 x (vCPUs used | GPUs used)
    rental cost  = device-hours x hourly price           (what a cloud bill would say)
    energy kWh   = device-hours x device watts / 1000 x PUE   (nameplate power: an upper bound)
    power cost   = energy kWh x electricity price         (what running your own box would cost)

Every price must be present and non-negative; a bad table is a UserError naming the key.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import platform
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saessak import __version__
from saessak.errors import UserError
from saessak.io import append_jsonl, fmt, md_table, pct, read_jsonl

# ----------------------------------------------------------------------------- recording


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


# ----------------------------------------------------------------------------- pricing

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")

# (section path, key) pairs that must hold a non-negative number.
_REQUIRED_NUMBERS = [
    ("currency", "usd_to_krw"),
    ("electricity", "krw_per_kwh"),
    ("electricity", "pue"),
    ("cpu", "usd_per_hour"),
    ("cpu", "vcpus"),
    ("cpu", "watts"),
]
_GPU_NUMBERS = ["usd_per_hour", "watts", "peak_bf16_tflops"]


@dataclass
class PriceTable:
    data: dict[str, Any]
    source: str  # the file(s) the numbers came from

    @property
    def usd_to_krw(self) -> float:
        return float(self.data["currency"]["usd_to_krw"])

    @property
    def pue(self) -> float:
        return float(self.data["electricity"]["pue"])

    @property
    def krw_per_kwh(self) -> float:
        return float(self.data["electricity"]["krw_per_kwh"])

    def gpu_row(self, gpu_name: str | None) -> tuple[str, dict[str, Any]]:
        """The [gpu.X] row whose `match` substrings occur in the CUDA device name."""
        name = (gpu_name or "").upper()
        for key, row in self.data.get("gpu", {}).items():
            for pattern in row.get("match", [key]):
                if str(pattern).upper() in name:
                    return key, row
        known = ", ".join(sorted(self.data.get("gpu", {})))
        raise UserError(
            f"price table {self.source}: no [gpu.*] row matches device {gpu_name!r} (known: {known}); "
            "add one with `match`, `usd_per_hour`, `watts`, `peak_bf16_tflops` and pass --prices FILE"
        )


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: price table not found") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not a valid TOML price table ({e})") from None


def _check_number(source: str, key: str, value: Any) -> None:
    if value is None:
        raise UserError(f"price table {source}: missing price '{key}'")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"price table {source}: '{key}' must be a number, got {value!r}")
    if value < 0:
        raise UserError(f"price table {source}: '{key}' is negative ({value}); prices must be >= 0")


def validate_prices(data: dict, source: str) -> None:
    for section, key in _REQUIRED_NUMBERS:
        sec = data.get(section)
        _check_number(source, f"{section}.{key}", sec.get(key) if isinstance(sec, dict) else None)
    if data["cpu"]["vcpus"] == 0:
        raise UserError(f"price table {source}: 'cpu.vcpus' must be > 0")
    gpus = data.get("gpu", {})
    if not isinstance(gpus, dict):
        raise UserError(f"price table {source}: 'gpu' must be a table of [gpu.NAME] rows")
    for name, row in gpus.items():
        if not isinstance(row, dict):
            raise UserError(f"price table {source}: 'gpu.{name}' must be a table")
        for key in _GPU_NUMBERS:
            _check_number(source, f"gpu.{name}.{key}", row.get(key))


def load_prices(override: str | os.PathLike | None = None) -> PriceTable:
    """The shipped table, with `override` (a TOML file of the same layout) merged on top."""
    data = _read_toml(DEFAULT_PRICES)
    source = str(DEFAULT_PRICES.name)
    if override is not None:
        path = Path(override)
        data = _merge(data, _read_toml(path))
        source = f"{path} (over {source})"
    validate_prices(data, source)
    return PriceTable(data, source)


def record_cost(record: dict[str, Any], prices: PriceTable) -> dict[str, Any]:
    """Energy and money for one ledger record, with the figures used (so a reader can redo it)."""
    wall_h = float(record.get("wall_s") or 0.0) / 3600.0
    device = record.get("device") or {}
    if device.get("type") == "cuda":
        key, row = prices.gpu_row(device.get("gpu"))
        units = max(1, int(device.get("gpu_count") or 1))
        unit_name = f"GPU ({key})"
        usd_per_unit_hour = float(row["usd_per_hour"])
        watts_per_unit = float(row["watts"])
        watts_source = row.get("watts_source", "")
        price_source = row.get("price_source", "")
    else:
        cpu = prices.data["cpu"]
        units = max(1, int(device.get("cpu_cores") or cpu["vcpus"]))
        unit_name = "vCPU"
        usd_per_unit_hour = float(cpu["usd_per_hour"]) / float(cpu["vcpus"])
        watts_per_unit = float(cpu["watts"]) / float(cpu["vcpus"])
        watts_source = cpu.get("watts_source", "")
        price_source = cpu.get("price_source", "")
    device_hours = wall_h * units
    usd = device_hours * usd_per_unit_hour
    kwh = device_hours * watts_per_unit / 1000.0 * prices.pue
    return {
        "device_hours": device_hours,
        "unit": unit_name,
        "units": units,
        "usd_per_unit_hour": usd_per_unit_hour,
        "watts": watts_per_unit * units,
        "watts_source": watts_source,
        "price_source": price_source,
        "energy_kwh": kwh,
        "cost_usd": usd,
        "cost_krw": usd * prices.usd_to_krw,
        "power_cost_krw": kwh * prices.krw_per_kwh,
    }


_SUM_KEYS = ["wall_s", "cpu_s", "tokens", "flops", "device_hours", "energy_kwh", "cost_usd", "cost_krw", "power_cost_krw"]


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else 0.0


def ledger_costs(records: list[dict[str, Any]], prices: PriceTable) -> dict[str, Any]:
    """Per-record costs, per-stage sums (a stage resumed twice has two records) and the total."""
    rows = []
    per_stage: dict[str, dict[str, Any]] = {}
    for rec in records:
        cost = record_cost(rec, prices)
        row = {**rec, **cost}
        rows.append(row)
        stage = str(rec.get("stage", "?"))
        agg = per_stage.setdefault(stage, {k: 0.0 for k in _SUM_KEYS} | {"runs": 0})
        agg["runs"] += 1
        for k in _SUM_KEYS:
            agg[k] += _num(row.get(k))
        # Facts that do not add up across runs: keep the latest one seen.
        for k in ("params", "mfu", "device"):
            if k in rec:
                agg[k] = rec[k]
        for k in ("watts", "watts_source", "unit", "units"):
            agg[k] = cost[k]
    total = {k: sum(s[k] for s in per_stage.values()) for k in _SUM_KEYS}
    return {"records": rows, "stages": per_stage, "total": total}


def _device_text(d: dict | None) -> str:
    if not d:
        return "—"
    if d.get("type") == "cuda":
        return f"{d.get('gpu_count', 1)}x {d.get('gpu')}"
    return f"{d.get('cpu', 'CPU')} ({d.get('cpu_cores')} cores)"


def markdown_table(ledger: dict) -> str:
    rows = []
    for stage, s in ledger["stages"].items():
        rows.append([stage, s["runs"], fmt(s["wall_s"], 1), fmt(s["cpu_s"], 1), _device_text(s.get("device")),
                     fmt(s["tokens"] or None), fmt(s["flops"] or None), pct(s.get("mfu")) if s.get("mfu") is not None else "—",
                     fmt(s.get("watts"), 1), fmt(s["energy_kwh"], 3), fmt(s["cost_krw"], 2), fmt(s["cost_usd"], 4)])
    t = ledger["total"]
    rows.append(["**total**", "", fmt(t["wall_s"], 1), fmt(t["cpu_s"], 1), "", fmt(t["tokens"] or None),
                 fmt(t["flops"] or None), "", "", fmt(t["energy_kwh"], 3), f"**{fmt(t['cost_krw'], 2)}**", f"**{fmt(t['cost_usd'], 4)}**"])
    out = md_table(["stage", "runs", "wall s", "CPU s", "device", "tokens", "FLOPs", "MFU", "power W", "kWh", "KRW", "USD"], rows)
    sources = sorted({s["watts_source"] for s in ledger["stages"].values() if s.get("watts_source")})
    if sources:
        out += "\n\nPower figures: " + "; ".join(sources) + "."
    return out
