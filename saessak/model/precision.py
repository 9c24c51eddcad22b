"""Precision chosen by measurement: fp32 or bf16 autocast, whichever is faster on this machine.

Which one is faster on a CPU depends on the CPU, not on a flag one can read: on a 2-core Intel Xeon
without AMX bf16 matmuls ran at half the fp32 rate, on a 2-core AMD EPYC (Zen, avx512_bf16) at
2-4x (docs/BENCHMARKS.md). So `--dtype auto` measures. `choose_dtype` times the model's own
linear layers (their (in, out) shapes, weighted by how many the model has) at the stage's row count:

- `train`: forward and both backward matmuls, bf16 paying what autocast pays (casting the fp32
  master weight to bf16 on the way in, the weight's gradient back to fp32 on the way out);
- `generate`: the forward matmul at the engine's batch width, weights already in bf16 (the engine
  keeps a bf16 copy).

fp32 and bf16 are timed in alternating rounds (the best of three each), about 0.1-0.4 s in all on
the CPU shapes. bf16 is chosen when its time is at most 1/`MARGIN` of fp32's: the matmuls are
most of a step, but autocast's casts and the element-wise work are not in the measurement.

The verdict is cached in `${SAESSAK_CACHE:-~/.cache/saessak}/precision.json` under a key naming the
CPU model, the torch version, the thread count, the mode and the shapes; another CPU or torch is
another key, so a changed machine measures again. CUDA needs no measurement (bf16 where the GPU
supports it). An explicit `--dtype bf16|fp32` is used as given. Every stage records the choice and
its figures in the ledger (`precision`), and the report shows them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from saessak.errors import UserError

DTYPES = ("auto", "bf16", "fp32")
MARGIN = {"train": 1.2, "generate": 1.1}
CACHE_VERSION = 2  # 2: the generate probe times decode steps only (1 timed mostly prefill)
ROUNDS = 3
_MAX_ROWS = {"train": 512, "generate": 256}


@dataclass
class PrecisionChoice:
    dtype: str  # "bf16" or "fp32"
    source: str  # "given" (an explicit --dtype), "cuda", "measured", "cached"
    mode: str = "train"
    fp32_gflops: float | None = None  # measured on the model's shapes (None when not measured)
    bf16_gflops: float | None = None
    speedup: float | None = None  # bf16 over fp32
    rows: int | None = None
    seconds: float | None = None  # the measurement's own wall time (0 when read from the cache)
    key: str | None = None

    def facts(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        if self.source in ("given", "cuda") or self.speedup is None:
            return f"{self.dtype} ({ {'given': '--dtype', 'cuda': 'CUDA with bf16'}.get(self.source, self.source)})"
        work = "decode steps" if self.mode == "generate" else "train matmuls"
        return (f"{self.dtype} ({self.source}: bf16 {self.bf16_gflops:.0f} vs fp32 {self.fp32_gflops:.0f} "
                f"GFLOP/s on the model's {work}, {self.speedup:.2f}x)")


def linear_shapes(model_or_cfg) -> Counter:
    """(in_features, out_features) -> count over the model's nn.Linear layers (a config is built on
    the meta device, so no memory is spent); a tied lm_head counts once, as it runs once."""
    model = model_or_cfg
    if not isinstance(model_or_cfg, torch.nn.Module):
        from saessak.model import build_model

        with torch.device("meta"):
            model = build_model(model_or_cfg)
    return Counter((m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear))


def cache_path() -> Path:
    from saessak.data.cache import cache_dir

    return cache_dir() / "precision.json"


def machine_key() -> dict[str, Any]:
    from saessak.ledger import cpu_info

    return {**cpu_info(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def _key(mode: str, shapes: Counter, rows: int) -> str:
    sig = json.dumps({"machine": machine_key(), "mode": mode, "rows": rows,
                      "shapes": sorted([list(s) + [n] for s, n in shapes.items()])}, sort_keys=True)
    return hashlib.sha256(sig.encode()).hexdigest()[:20]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _write_cache(path: Path, key: str, entry: dict) -> None:
    from saessak.io import write_json

    entries = _read_cache(path)
    entries[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"version": CACHE_VERSION, "entries": entries})
    except OSError:  # a read-only cache folder costs a re-measurement next time, nothing else
        pass


def _store_verdict(path: Path, key: str, facts: dict) -> None:
    """Cache a measured verdict, stamped with the machine it was measured on and when."""
    _write_cache(path, key, {**facts, "machine": machine_key(),
                             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _time_once(work) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def measure(shapes: Counter, rows: int, mode: str = "train") -> dict[str, float]:
    """Seconds per pass over the model's linear layers in fp32 and in bf16 (each distinct shape timed,
    then weighted by how many layers have it), and the FLOP rates: per shape the best of ROUNDS
    alternating rounds after one warm-up."""
    if mode not in MARGIN:
        raise ValueError(f"precision mode {mode!r}: train or generate")
    gen = torch.Generator().manual_seed(0)
    total = {"fp32": 0.0, "bf16": 0.0}
    flops = 0
    for (k, n), count in sorted(shapes.items()):
        x = torch.randn(rows, k, generator=gen)
        w = torch.randn(n, k, generator=gen) * k ** -0.5
        gy = torch.randn(rows, n, generator=gen)
        xb, wb, gyb = x.bfloat16(), w.bfloat16(), gy.bfloat16()

        def fp32():
            x @ w.t()
            if mode == "train":
                gy @ w
                gy.t() @ x

        def bf16():
            if mode == "train":
                wc = w.to(torch.bfloat16)  # autocast casts the fp32 master weight each forward
                xb @ wc.t()
                gyb @ wc
                (gyb.t() @ xb).float()  # the weight's gradient goes back to fp32
            else:
                xb @ wb.t()

        fp32(), bf16()  # warm-up (oneDNN primitives, page faults)
        best = {"fp32": float("inf"), "bf16": float("inf")}
        for _ in range(ROUNDS):
            best["fp32"] = min(best["fp32"], _time_once(fp32))
            best["bf16"] = min(best["bf16"], _time_once(bf16))
        for name in total:
            total[name] += count * best[name]
        flops += count * (3 if mode == "train" else 1) * 2 * rows * k * n
    return {"fp32_s": total["fp32"], "bf16_s": total["bf16"],
            "fp32_gflops": flops / total["fp32"] / 1e9, "bf16_gflops": flops / total["bf16"] / 1e9}


def _probe(probe, shapes: Counter, rows: int) -> dict[str, float]:
    probe("fp32"), probe("bf16")  # warm-up
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(2):
        for name in best:
            best[name] = min(best[name], probe(name))
    flops = 2 * sum(k * n * c for (k, n), c in shapes.items())  # per token: what the FLOP rate is over
    return {"fp32_s": best["fp32"], "bf16_s": best["bf16"],
            "fp32_gflops": flops / best["fp32"] / 1e9, "bf16_gflops": flops / best["bf16"] / 1e9}


def choose_dtype(device: str, dtype: str | None, model_or_cfg=None, *, rows: int = 1024, mode: str = "train",
                 use_cache: bool = True, probe=None) -> PrecisionChoice:
    """The precision a stage runs in. `dtype` bf16/fp32 is used as given; auto/None measures (CPU)
    or asks CUDA. `model_or_cfg` gives the shapes to measure on; `rows` the tokens per matmul (a
    training micro-batch's tokens, the engine's batch width). `probe(dtype_name) -> seconds`, when
    given, times the real work instead of the matmuls (the engine's decode steps, where attention
    over the cache and per-step overheads weigh as much as the matmuls); its figures are then the
    model's FLOP rate over that work."""
    if dtype not in (None, "auto"):
        if dtype not in ("bf16", "fp32"):
            raise UserError(f"--dtype {dtype!r}: must be auto, bf16 or fp32")
        return PrecisionChoice(dtype, "given", mode)
    if str(device).startswith("cuda"):
        return PrecisionChoice("bf16" if torch.cuda.is_bf16_supported() else "fp32", "cuda", mode)
    if model_or_cfg is None:
        raise ValueError("choose_dtype needs the model (or its config) to measure on")
    shapes = linear_shapes(model_or_cfg)
    rows = max(1, min(int(rows), _MAX_ROWS[mode]))
    key = _key(mode, shapes, rows)
    path = cache_path()
    if use_cache:
        hit = _read_cache(path).get(key)
        if isinstance(hit, dict) and hit.get("dtype") in ("bf16", "fp32"):
            return PrecisionChoice(hit["dtype"], "cached", mode, hit.get("fp32_gflops"), hit.get("bf16_gflops"),
                                   hit.get("speedup"), rows, 0.0, key)
    t0 = time.perf_counter()
    m = measure(shapes, rows, mode) if probe is None else _probe(probe, shapes, rows)
    speedup = m["fp32_s"] / m["bf16_s"]
    choice = PrecisionChoice("bf16" if speedup >= MARGIN[mode] else "fp32", "measured", mode,
                             round(m["fp32_gflops"], 1), round(m["bf16_gflops"], 1), round(speedup, 3), rows,
                             round(time.perf_counter() - t0, 3), key)
    if use_cache:
        _store_verdict(path, key, choice.facts())
    return choice


def torch_dtype(name: str) -> torch.dtype:
    return torch.bfloat16 if name == "bf16" else torch.float32
