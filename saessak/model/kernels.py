"""Which matmul implementation the generation engine's linear layers run on a CPU, by measurement.

On a CPU `F.linear` runs MKL's GEMM for fp32. oneDNN, also inside every torch CPU build, is the
other implementation (`torch.ops.mkldnn._linear_pointwise`, what torch.compile's CPU backend and
vLLM's CPU build call). Which is faster depends on the CPU and the shapes: on the 2-core AMD EPYC
(Zen) of docs/BENCHMARKS.md oneDNN ran the cpu-tiny and d12 layers 1.5-2.1x faster at 32-128 rows,
because MKL does not take its fastest path on AMD; on an Intel CPU MKL may well win. So the engine
does not guess from CPU flags: `choose_linear_kernel` times both on the model's own linear shapes, at
the engine's decode width and at a prefill-sized row count (the best of ROUNDS alternating rounds
each), and takes oneDNN only when it is at least MARGIN faster in total and gives the same numbers
(to fp32 rounding). The verdict is cached beside the precision verdict
(`${SAESSAK_CACHE}/precision.json`, keyed by CPU model, torch version, threads, dtype and shapes).

`linear_kernel(model, "onednn")` is a context: while it is open the model's nn.Linear layers (also
the base and adapter layers inside peft's LoRA wrappers) run their forward through oneDNN; on exit
they are plain nn.Linear again. The engine opens it around its forward passes only, so training on
the same model (GRPO between rollouts) is untouched.

Prepacked weights (`PackedWeights`). oneDNN computes from weights in its own blocked layout; given a
plain [out, in] tensor it reorders it on every call, which at decode widths costs about as much as
the product itself (the d12 shape at 8 rows: 30.9 ms per step with plain weights, 18.4 ms with
packed ones, on the 2-core EPYC). The engine keeps a packed copy of each layer's weight (made with
`torch.ops.mkldnn._reorder_linear_weight`, what torch.compile's CPU backend does for frozen
weights), re-packs a layer only when its weight may have changed (`weights_stamp`: its version
counter, or any optimizer step since), and times the packed form when it chooses. The copy costs
the linear weights' size in memory once more, so it is made only while that fits in a quarter of
the memory available (`packed_weights_fit`); otherwise oneDNN runs on the plain weights. Training
always uses the plain weights (they change every step) with its own autograd backward
(`_OneDNNLinear`).
"""

from __future__ import annotations

import dataclasses
import time
import types
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

KERNELS = ("aten", "onednn")
MARGIN = 1.15
# Timed inside the engine (best of ROUNDS whole steps, kernels alternating) the figures vary less than
# isolated layer timings, and the two kernels give the same numbers, so a smaller margin decides.
ENGINE_MARGIN = 1.05
ROUNDS = 3
_PREFILL_ROWS = 512


@dataclass
class KernelChoice:
    kernel: str  # "aten" (F.linear) or "onednn"
    source: str  # "measured", "cached", "given", "not-cpu", "unavailable", "distributed"
    aten_ms: float | None = None  # one pass over the model's linear layers at the measured rows
    onednn_ms: float | None = None
    speedup: float | None = None  # oneDNN over aten
    rows: list[int] | None = None
    packed: bool | None = None  # oneDNN timed (and run) on prepacked weights
    key: str | None = None
    # The engine chooses for its two phases apart: `kernel` and the figures above are its decode step,
    # these its prefill (None: the same kernel as decode).
    prefill_kernel: str | None = None
    prefill_aten_ms: float | None = None
    prefill_onednn_ms: float | None = None
    prefill_speedup: float | None = None

    @property
    def prefill(self) -> str:
        return self.prefill_kernel or self.kernel

    def uses(self, kernel: str) -> bool:
        return kernel in (self.kernel, self.prefill)

    def facts(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        if self.speedup is None:
            return f"{self.kernel} ({self.source})"
        if self.prefill_speedup is not None:
            return (f"decode {self.kernel}, prefill {self.prefill} ({self.source}: a decode step {self.onednn_ms:.2f} ms "
                    f"with oneDNN vs {self.aten_ms:.2f} ms with aten, {self.speedup:.2f}x; a prefill "
                    f"{self.prefill_onednn_ms:.2f} vs {self.prefill_aten_ms:.2f} ms, {self.prefill_speedup:.2f}x)")
        return (f"{self.kernel} ({self.source}: oneDNN {self.onednn_ms:.2f} ms vs aten {self.aten_ms:.2f} ms per "
                f"pass over the model's linear layers, {self.speedup:.2f}x)")


_DTYPE_SUPPORT: dict[torch.dtype, bool] = {}


def onednn_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch build has oneDNN's linear and this CPU runs it in `dtype`, plain and on
    prepacked weights. oneDNN's bf16 path needs AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT: on an
    AVX2-only CPU (a 2-core AMD EPYC guest without AVX-512, 12-06) both ops raise in bf16, so a bf16
    engine must run aten there. Tried once per dtype and process on a tiny product."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    if dtype not in _DTYPE_SUPPORT:
        try:
            w, x = torch.ones(8, 16, dtype=dtype), torch.ones(2, 16, dtype=dtype)
            _onednn(x, w, None)
            _onednn(x, pack_weight(w, 2), None)
            _DTYPE_SUPPORT[dtype] = True
        except RuntimeError:
            _DTYPE_SUPPORT[dtype] = False
    return _DTYPE_SUPPORT[dtype]


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if x.dim() == 2:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, "none", [], "")
    return y.view(*x.shape[:-1], weight.shape[0])


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with oneDNN for the forward and for both backward products (the input's and the
    weight's gradients are linear maps too: dx = dy W, dW = dy^T x)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        gy2 = gy.reshape(-1, gy.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _onednn(gy2, weight.t().contiguous(), None).view(x.shape)
        if ctx.needs_input_grad[1]:
            gw = _onednn(gy2.t().contiguous(), x.reshape(-1, x.shape[-1]).t().contiguous(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy2.sum(0)
        return gx, gw, gb


def _onednn_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if (x.dtype != self.weight.dtype or not x.is_contiguous() or x.device.type != "cpu"
            or torch.is_autocast_enabled("cpu")):  # autocast decides the dtype of F.linear: leave it to it
        return torch.nn.functional.linear(x, self.weight, self.bias)
    if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
        return _OneDNNLinear.apply(x, self.weight, self.bias)
    return _onednn(x, self.weight, self.bias)


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor, packed: "PackedWeights") -> torch.Tensor:
    w = packed.get(self)
    if (w is None or x.dtype != self.weight.dtype or not x.is_contiguous() or x.device.type != "cpu"
            or torch.is_autocast_enabled("cpu") or (torch.is_grad_enabled() and x.requires_grad)):
        return _onednn_forward(self, x)
    return _onednn(x, w, self.bias)


def linear_layers(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def pack_weight(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` [out, in] in oneDNN's blocked layout for products of about `rows` rows (the layout
    chosen for one row count served every count from 1 to 128 as fast as its own, measured)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), max(1, int(rows)))


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_OPTIMIZER_STEPS = 0
_HOOKED = False


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _OPTIMIZER_STEPS
    _OPTIMIZER_STEPS += 1


def optimizer_steps() -> int:
    """How many torch optimizer steps this process has taken since the count was first asked for.

    A weight's version counter alone does not tell whether it changed: torch's fused AdamW (what
    `build_optimizer` makes) updates the parameters in place without bumping their `_version`, so
    copies kept by version (the engine's packed and dtype-cast weights) went stale after every GRPO
    step and rollouts kept sampling the SFT model. Every optimizer step, fused or not, runs the
    global step hooks, so the count moves whenever any optimizer may have changed a weight."""
    global _HOOKED
    if not _HOOKED:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(_count_optimizer_step)
        _HOOKED = True
    return _OPTIMIZER_STEPS


def weights_stamp(tensors) -> tuple[int, int]:
    """Changes whenever one of `tensors` may have changed: (sum of their version counters, optimizer
    steps so far). In-place writes bump the versions; optimizer steps (fused ones included) the count."""
    return sum(t._version for t in tensors), optimizer_steps()


def packed_weights_fit(layers: list[torch.nn.Linear]) -> bool:
    """Whether a packed copy of these layers' weights fits in a quarter of the available memory."""
    need = sum(m.weight.numel() * m.weight.element_size() for m in layers if m.weight.device.type == "cpu")
    avail = _mem_available()
    return avail is None or need <= avail // 4


class PackedWeights:
    """oneDNN-packed copies of layers' weights, kept in step with the weights (`refresh`)."""

    def __init__(self, layers: list[torch.nn.Linear], rows: int):
        # plain CPU tensors only (a sharded DTensor weight stays with F.linear)
        self.layers = [m for m in layers if type(m.weight.data) is torch.Tensor and m.weight.device.type == "cpu"
                       and m.weight.dtype in (torch.float32, torch.bfloat16) and onednn_available(m.weight.dtype)]
        self.rows = rows
        self._packed: dict[int, tuple[tuple, torch.Tensor]] = {}  # id(layer) -> (weight state, packed)

    def refresh(self) -> int:
        """Pack every layer whose weight may have changed since it was last packed (`weights_stamp`);
        returns how many."""
        changed = 0
        with torch.no_grad():
            for m in self.layers:
                w = m.weight
                state = (w.data_ptr(), weights_stamp([w]), w.dtype, tuple(w.shape))
                held = self._packed.get(id(m))
                if held is None or held[0] != state:
                    self._packed[id(m)] = (state, pack_weight(w, self.rows))
                    changed += 1
        return changed

    def get(self, layer: torch.nn.Linear) -> torch.Tensor | None:
        held = self._packed.get(id(layer))
        return None if held is None else held[1]

    def nbytes(self) -> int:
        return sum(m.weight.numel() * m.weight.element_size() for m in self.layers)


@contextmanager
def linear_kernel(model: torch.nn.Module, kernel: str, layers: list[torch.nn.Linear] | None = None,
                  packed: PackedWeights | None = None):
    """Run `model`'s nn.Linear layers (or the given `layers` of it) through `kernel` while the context
    is open; with `packed`, oneDNN reads those layers' packed weights (inference only)."""
    if kernel == "aten":
        yield
        return
    if kernel != "onednn":
        raise ValueError(f"linear kernel {kernel!r}: one of {KERNELS}")
    patched = [m for m in (linear_layers(model) if layers is None else layers) if "forward" not in m.__dict__]
    for m in patched:
        if packed is not None and packed.get(m) is not None:
            m.forward = types.MethodType(lambda self, x: _packed_forward(self, x, packed), m)
        else:
            m.forward = types.MethodType(_onednn_forward, m)
    try:
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


def warm_up(layers: list[torch.nn.Linear], max_rows: int, packed: PackedWeights | None = None) -> float:
    """Create oneDNN's primitives for every row count 1..max_rows of each distinct layer shape; returns
    the seconds it took. oneDNN builds (JIT-compiles) a primitive the first time it sees an input
    shape: about 0.4-1.4 ms each on the 2-core EPYC, so a server whose decode batch grows from 1 to
    32 sequences would otherwise pay 32 x (layers) of them while answering its first clients. A
    server calls this once at start-up (oneDNN keeps 1,024 primitives per process by default)."""
    t0 = time.perf_counter()
    seen = set()
    with torch.no_grad():
        for m in layers:
            sig = (tuple(m.weight.shape), m.weight.dtype, m.bias is not None)
            if sig in seen or m.weight.device.type != "cpu":
                continue
            seen.add(sig)
            w = packed.get(m) if packed is not None else None
            for rows in range(1, max_rows + 1):
                _onednn(torch.zeros(rows, m.in_features, dtype=m.weight.dtype), m.weight if w is None else w, m.bias)
    return time.perf_counter() - t0


def measure(shapes: Counter, rows: list[int], dtype: torch.dtype = torch.float32,
            backward: bool = False, packed: bool = False) -> dict[str, float]:
    """Seconds per pass over the model's linear layers (each distinct shape timed at each row count,
    weighted by how many layers have it) with F.linear and with oneDNN (on packed weights if
    `packed`), forward only or (`backward`) forward and both gradients, and the largest difference
    between the two results relative to the result's scale."""
    from saessak.model.precision import _time_once

    gen = torch.Generator().manual_seed(0)
    total = {"aten": 0.0, "onednn": 0.0}
    worst = 0.0
    with torch.set_grad_enabled(backward):
        for (k, n), count in sorted(shapes.items()):
            w = (torch.randn(n, k, generator=gen) * k ** -0.5).to(dtype).requires_grad_(backward)
            pw = pack_weight(w, max(rows)) if packed and not backward else None
            for r in rows:
                x = torch.randn(r, k, generator=gen).to(dtype).requires_grad_(backward)
                gy = torch.randn(r, n, generator=gen).to(dtype)

                def run(fn):
                    y = fn()
                    if backward:
                        gx, gw = torch.autograd.grad(y, (x, w), gy)
                        return torch.cat([y.flatten(), gx.flatten(), gw.flatten()])
                    return y

                work = {"aten": lambda: run(lambda: torch.nn.functional.linear(x, w)),
                        "onednn": lambda: run(lambda: _OneDNNLinear.apply(x, w, None) if pw is None
                                              else _onednn(x, pw, None))}
                a, b = work["aten"]().detach().float(), work["onednn"]().detach().float()  # also the warm-up
                worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)))
                best = {name: float("inf") for name in work}
                for _ in range(ROUNDS):
                    for name, fn in work.items():
                        best[name] = min(best[name], _time_once(fn))
                for name in total:
                    total[name] += count * best[name]
    return {"aten_s": total["aten"], "onednn_s": total["onednn"], "max_rel_diff": worst}


def _tolerance(dtype: torch.dtype) -> float:
    """The largest relative difference between the kernels' results that still counts as the same
    numbers (fp32 rounding; bf16's is coarser)."""
    return 1e-4 if dtype == torch.float32 else 2e-2


def choose_linear_kernel(model: torch.nn.Module, device: str, width: int, kernel: str | None = "auto",
                         use_cache: bool = True, mode: str = "generate", distributed_ok: bool = False,
                         timer: Callable[[], dict] | None = None) -> KernelChoice:
    """The kernel `model`'s linear layers use: `kernel` aten/onednn as given (or the environment's
    SAESSAK_LINEAR_KERNEL), or (auto) the faster of the two on this machine, measured on `model`'s
    shapes. `mode` "generate" (the engine) times forward passes at `width` rows and at a prefill-sized
    row count; "train" times forward and both backward products at `width` rows (a micro-batch's
    tokens). With a `timer` (the engine's own: it times its real decode step and a real prefill with
    each kernel, `Engine._time_kernels`, and returns {"decode": {"aten_s", "onednn_s"}, "prefill":
    {...}, "max_rel_diff"}) generate mode chooses for the two phases apart: isolated layer timings
    misjudged the decode step, where the KV cache's reads evict the weights from the CPU's caches
    (cpu-tiny at 32 sequences: aten 1.09x slower than packed oneDNN alone, 1.2-1.3x inside the engine's
    step). CUDA and builds without oneDNN use aten. In a multi-process group ranks could time
    differently and then disagree on numbers, so they use aten unless the caller makes them agree
    (`distributed_ok`: rank 0 measures and broadcasts, saessak.training.optim.kernel_on_rank0)."""
    import os

    from saessak.model.precision import _key, _read_cache, _store_verdict, cache_path, linear_shapes

    if kernel in (None, "auto"):
        kernel = os.environ.get("SAESSAK_LINEAR_KERNEL") or "auto"
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if kernel != "auto":
        if kernel not in KERNELS:
            raise ValueError(f"linear kernel {kernel!r}: auto or one of {KERNELS}")
        if kernel == "onednn" and str(device).startswith("cpu") and not onednn_available(dtype):
            from saessak.errors import UserError

            raise UserError(f"linear kernel onednn: this CPU or torch build cannot run oneDNN's linear in "
                            f"{str(dtype).removeprefix('torch.')} (bf16 needs AVX-512 or AVX-NE-CONVERT); "
                            f"use aten or auto")
        return KernelChoice(kernel, "given")
    if not str(device).startswith("cpu"):
        return KernelChoice("aten", "not-cpu")
    if not onednn_available(dtype):
        return KernelChoice("aten", "unavailable")
    if (not distributed_ok and torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1):
        return KernelChoice("aten", "distributed")
    shapes = linear_shapes(model)
    if not shapes:
        return KernelChoice("aten", "no linear layers")
    if mode == "generate" and timer is not None:
        return _choose_in_situ(model, dtype, shapes, int(width), timer, use_cache)
    if mode == "train":
        rows = [max(1, min(int(width), 2048))]
        packed = False
    else:
        rows = sorted({max(1, min(int(width), 256)), _PREFILL_ROWS})
        packed = packed_weights_fit(linear_layers(model))
    kind = f"linear-kernel-{mode}{'-packed' if packed else ''}-{str(dtype).removeprefix('torch.')}"
    key = _key(kind, shapes, rows[0] * 1000 + rows[-1])
    path = cache_path()
    if use_cache:
        hit = _read_cache(path).get(key)
        if isinstance(hit, dict) and hit.get("kernel") in KERNELS:
            return KernelChoice(hit["kernel"], "cached", hit.get("aten_ms"), hit.get("onednn_ms"), hit.get("speedup"),
                                rows, packed, key)
    m = measure(shapes, rows, dtype, backward=mode == "train", packed=packed)
    speedup = m["aten_s"] / m["onednn_s"]
    fast = speedup >= MARGIN and m["max_rel_diff"] <= _tolerance(dtype)
    choice = KernelChoice("onednn" if fast else "aten", "measured", round(m["aten_s"] * 1e3, 3),
                          round(m["onednn_s"] * 1e3, 3), round(speedup, 3), rows, packed, key)
    if use_cache:
        _store_verdict(path, key, {**choice.facts(), "max_rel_diff": m["max_rel_diff"]})
    return choice


def _choose_in_situ(model, dtype, shapes, width: int, timer, use_cache: bool) -> KernelChoice:
    from saessak.model.precision import _key, _read_cache, _store_verdict, cache_path

    packed = packed_weights_fit(linear_layers(model))
    key = _key(f"engine-kernel{'-packed' if packed else ''}-{str(dtype).removeprefix('torch.')}", shapes, width)
    path = cache_path()
    names = [f.name for f in dataclasses.fields(KernelChoice)]
    if use_cache:
        hit = _read_cache(path).get(key)
        if isinstance(hit, dict) and hit.get("kernel") in KERNELS and hit.get("prefill_kernel") in KERNELS:
            return KernelChoice(**{**{k: v for k, v in hit.items() if k in names}, "source": "cached"})
    m = timer()
    same = m["max_rel_diff"] <= _tolerance(dtype)
    d, p = m["decode"], m["prefill"]
    d_speed, p_speed = d["aten_s"] / d["onednn_s"], p["aten_s"] / p["onednn_s"]
    choice = KernelChoice(
        "onednn" if same and d_speed >= ENGINE_MARGIN else "aten", "measured", round(d["aten_s"] * 1e3, 3),
        round(d["onednn_s"] * 1e3, 3), round(d_speed, 3), [width], packed, key,
        prefill_kernel="onednn" if same and p_speed >= ENGINE_MARGIN else "aten", prefill_aten_ms=round(p["aten_s"] * 1e3, 3),
        prefill_onednn_ms=round(p["onednn_s"] * 1e3, 3), prefill_speedup=round(p_speed, 3))
    if use_cache:
        _store_verdict(path, key, {**choice.facts(), "max_rel_diff": m["max_rel_diff"]})
    return choice
