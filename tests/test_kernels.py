"""The engine's linear-layer kernel chosen by measurement (saessak/model/kernels.py)."""

from __future__ import annotations

import pytest
import torch

from saessak.model import kernels
from saessak.model.engine import Engine, SamplingParams
from saessak.model.precision import linear_shapes
from saessak.training.optim import build_optimizer
from tests.helpers import tiny_model, tiny_tokenizer

needs_onednn = pytest.mark.skipif(not kernels.onednn_available(), reason="this torch build has no oneDNN")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAESSAK_CACHE", str(tmp_path))
    return tmp_path / "precision.json"


def _fake_measure(calls, onednn_s: float, diff: float = 0.0):
    def measure(shapes, rows, dtype=torch.float32, backward=False, packed=False):
        calls.append(tuple(rows))
        return {"aten_s": 1.0, "onednn_s": onednn_s, "max_rel_diff": diff}
    return measure


def test_auto_measures_once_then_reads_the_cache(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "measure", _fake_measure(calls, onednn_s=0.5))
    model = tiny_model(tiny_tokenizer().vocab_size)
    first = kernels.choose_linear_kernel(model, "cpu", 32)
    assert (first.kernel, first.source, first.speedup) == ("onednn", "measured", 2.0)
    assert calls == [(32, 512)]  # the decode width and a prefill-sized row count
    again = kernels.choose_linear_kernel(model, "cpu", 32)
    assert (again.kernel, again.source) == ("onednn", "cached") and len(calls) == 1
    kernels.choose_linear_kernel(model, "cpu", 8)  # another width is another question
    assert len(calls) == 2 and cache.exists()


@pytest.mark.parametrize("onednn_s,diff,want", [(0.9, 0.0, "aten"),  # within the margin: keep aten
                                                 (0.5, 1e-2, "aten"),  # faster, but other numbers
                                                 (0.8, 1e-6, "onednn")])
def test_onednn_only_when_clearly_faster_and_the_same(cache, monkeypatch, onednn_s, diff, want):
    monkeypatch.setattr(kernels, "measure", _fake_measure([], onednn_s, diff))
    assert kernels.choose_linear_kernel(tiny_model(64), "cpu", 16).kernel == want


def test_given_kernels_and_devices_need_no_measurement(cache, monkeypatch):
    monkeypatch.setattr(kernels, "measure", lambda *a, **k: pytest.fail("measured"))
    model = tiny_model(64)
    assert kernels.choose_linear_kernel(model, "cpu", 16, "aten").source == "given"
    assert kernels.choose_linear_kernel(model, "cuda", 16).kernel == "aten"
    with pytest.raises(ValueError, match="linear kernel 'mkl'"):
        kernels.choose_linear_kernel(model, "cpu", 16, "mkl")


@needs_onednn
def test_real_measurement_agrees_with_aten(cache):
    m = kernels.measure(linear_shapes(tiny_model(64)), [4, 64])
    assert m["aten_s"] > 0 and m["onednn_s"] > 0 and m["max_rel_diff"] < 1e-5


@needs_onednn
def test_the_context_changes_the_kernel_not_the_model():
    tok = tiny_tokenizer()
    model = tiny_model(tok.vocab_size)
    x = torch.randint(0, tok.vocab_size, (3, 11))
    with torch.no_grad():
        plain = model(x)
        with kernels.linear_kernel(model, "onednn"):
            assert all("forward" in m.__dict__ for m in kernels.linear_layers(model))
            fast = model(x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert not any("forward" in m.__dict__ for m in kernels.linear_layers(model))  # training sees nn.Linear
    with pytest.raises(RuntimeError, match="boom"), kernels.linear_kernel(model, "onednn"):
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in kernels.linear_layers(model))
    model.train()
    model(x).sum().backward()  # gradients flow through plain nn.Linear after the engine used oneDNN
    assert model.lm_head.weight.grad is not None


@needs_onednn
def test_engine_gives_the_same_greedy_text_with_either_kernel(cache):
    tok = tiny_tokenizer()
    model = tiny_model(tok.vocab_size, initializer_range=0.3)
    prompts = [tok.encode(t) for t in ("대한민국은 민주공화국이다.", "안녕하세요", "사과 3개와 배 2개")]
    params = SamplingParams(max_tokens=24, temperature=0, logprobs=True)
    a = Engine(model, tok, max_batch_size=4, linear_kernel="aten").generate(prompts, params)
    b = Engine(model, tok, max_batch_size=4, linear_kernel="onednn").generate(prompts, params)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    for ca, cb in zip(a, b):
        assert max(abs(x - y) for x, y in zip(ca.logprobs, cb.logprobs)) < 1e-4
    assert not any("forward" in m.__dict__ for m in kernels.linear_layers(model))


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_training_through_onednn_gives_the_same_gradients(bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 40, bias=bias)
    x = torch.randn(3, 7, 24, requires_grad=True)
    gy = torch.randn(3, 7, 40)
    layer(x).backward(gy)
    want = [t.grad.clone() for t in (x, *layer.parameters())]
    x.grad = None
    layer.zero_grad()
    with kernels.linear_kernel(layer, "onednn"):
        layer(x).backward(gy)
    for got, ref in zip([t.grad for t in (x, *layer.parameters())], want):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16), kernels.linear_kernel(layer, "onednn"):
        assert layer(x).dtype == torch.bfloat16  # autocast still decides


@needs_onednn
@pytest.mark.parametrize("optimizer", ["sgd", "build_optimizer"])
def test_packed_weights_follow_an_optimizer_step(cache, optimizer):
    """The engine's packed copies are re-made when the weights change between batches (RL trains the
    model it generates from): after a step the greedy text is the new model's, as aten computes it.
    `build_optimizer` is the fused AdamW every training stage uses: it updates the weights without
    bumping their version counters, so a copy kept by version alone went stale (GRPO's rollouts kept
    sampling the SFT model)."""
    tok = tiny_tokenizer()
    model = tiny_model(tok.vocab_size, initializer_range=0.3)
    prompts = [tok.encode(t) for t in ("대한민국은 민주공화국이다.", "사과 3개와 배 2개")]
    params = SamplingParams(max_tokens=16, temperature=0, logprobs=True)
    fast = Engine(model, tok, max_batch_size=4, linear_kernel="onednn")
    assert fast._packed is not None and all(fast._packed.get(m) is not None for m in kernels.linear_layers(model))
    before = fast.generate(prompts, params)
    opt = (torch.optim.SGD(model.parameters(), lr=0.5) if optimizer == "sgd"
           else build_optimizer(model, lr=0.1, weight_decay=0.0))
    model(torch.tensor([prompts[0]])).logsumexp(-1).sum().backward()
    versions = [p._version for p in model.parameters()]
    opt.step()
    if optimizer == "build_optimizer" and opt.defaults.get("fused"):
        assert [p._version for p in model.parameters()] == versions  # why versions alone cannot tell
    held = fast._packed.get(model.lm_head)
    after = fast.generate(prompts, params)
    assert fast._packed.get(model.lm_head) is not held  # re-packed at the next batch
    want = Engine(model, tok, max_batch_size=4, linear_kernel="aten").generate(prompts, params)
    assert [c.token_ids for c in after] == [c.token_ids for c in want]
    assert [c.token_ids for c in after] != [c.token_ids for c in before]
    for ca, cb in zip(after, want):
        assert max(abs(x - y) for x, y in zip(ca.logprobs, cb.logprobs)) < 1e-4


@needs_onednn
def test_packed_measurement_and_memory_guard(cache, monkeypatch):
    model = tiny_model(64)
    m = kernels.measure(linear_shapes(model), [4, 64], packed=True)
    assert m["onednn_s"] > 0 and m["max_rel_diff"] < 1e-5
    layers = kernels.linear_layers(model)
    need = sum(x.weight.numel() * 4 for x in layers)
    monkeypatch.setattr(kernels, "_mem_available", lambda: 4 * need)
    assert kernels.packed_weights_fit(layers)
    monkeypatch.setattr(kernels, "_mem_available", lambda: 4 * need - 4)
    assert not kernels.packed_weights_fit(layers)  # no room for a second copy: oneDNN on plain weights
    monkeypatch.setattr("saessak.model.engine.packed_weights_fit", kernels.packed_weights_fit)
    assert Engine(model, tiny_tokenizer(), max_batch_size=2, linear_kernel="onednn")._packed is None


def _fake_timer(calls, decode_onednn_s: float, prefill_onednn_s: float, diff: float = 0.0):
    def timer():
        calls.append(1)
        return {"decode": {"aten_s": 1.0, "onednn_s": decode_onednn_s},
                "prefill": {"aten_s": 1.0, "onednn_s": prefill_onednn_s}, "max_rel_diff": diff}
    return timer


@pytest.mark.parametrize("decode_s,prefill_s,diff,want", [
    (0.8, 1.2, 0.0, ("onednn", "aten")),  # each phase takes its own faster kernel
    (1.2, 0.8, 0.0, ("aten", "onednn")),
    (0.98, 0.5, 1e-2, ("aten", "aten")),  # within the margin / other numbers: aten
])
def test_the_engine_chooses_per_phase_from_its_own_timings(cache, decode_s, prefill_s, diff, want):
    calls = []
    model = tiny_model(64)
    timer = _fake_timer(calls, decode_s, prefill_s, diff)
    first = kernels.choose_linear_kernel(model, "cpu", 16, timer=timer)
    assert (first.kernel, first.prefill, first.source) == (*want, "measured") and len(calls) == 1
    again = kernels.choose_linear_kernel(model, "cpu", 16, timer=timer)
    assert (again.kernel, again.prefill, again.source) == (*want, "cached") and len(calls) == 1


@needs_onednn
def test_engine_times_its_own_steps_once_per_shape(cache):
    tok = tiny_tokenizer()
    model = tiny_model(tok.vocab_size)
    e = Engine(model, tok, max_batch_size=4)
    k = e.kernel
    assert k.source == "measured" and k.aten_ms > 0 and k.onednn_ms > 0 and k.prefill_aten_ms > 0
    assert "decode" in k.describe() and "prefill" in k.describe()
    assert Engine(model, tok, max_batch_size=4).kernel.source == "cached"
    assert not e.has_unfinished() and e.num_running() == 0  # the timing left no request behind
    # and the engine still generates what aten generates
    prompts = [tok.encode("대한민국은 민주공화국이다.")]
    params = SamplingParams(max_tokens=8, temperature=0)
    want = Engine(model, tok, max_batch_size=4, linear_kernel="aten").generate(prompts, params)
    assert e.generate(prompts, params)[0].token_ids == want[0].token_ids


def test_a_cpu_without_onednn_bf16_runs_a_bf16_engine_on_aten(cache, monkeypatch):
    """oneDNN's bf16 linear needs AVX-512 or AVX-NE-CONVERT; on an AVX2-only CPU its ops raise (a
    2-core AMD EPYC guest, 12-06: the speedrun's precision probe died on it). Such a CPU is simulated
    by making both ops raise in bf16 as they do there: the bf16 engine must choose aten without
    timing oneDNN, keep no packed copy, and generate; asking for oneDNN there is a clear error."""
    from saessak.errors import UserError

    real_onednn, real_pack = kernels._onednn, kernels.pack_weight

    def refuse(fn):
        def run(x, *a):
            if x.dtype == torch.bfloat16:
                raise RuntimeError("bf16 path needs the cpu support avx_ne_convert or avx512bw")
            return fn(x, *a)
        return run

    monkeypatch.setattr(kernels, "_onednn", refuse(real_onednn))
    monkeypatch.setattr(kernels, "pack_weight", refuse(real_pack))
    monkeypatch.setattr(kernels, "_DTYPE_SUPPORT", {})
    assert kernels.onednn_available(torch.float32) and not kernels.onednn_available(torch.bfloat16)
    tok = tiny_tokenizer()
    model = tiny_model(tok.vocab_size)
    engine = Engine(model, tok, max_batch_size=4, dtype=torch.bfloat16)
    assert (engine.kernel.kernel, engine.kernel.prefill, engine.kernel.source) == ("aten", "aten", "unavailable")
    assert engine._packed is None
    prompt = tok.encode("대한민국은 민주공화국이다.")
    (out,) = engine.generate([prompt], SamplingParams(max_tokens=4, temperature=0.0))
    (ref,) = Engine(model, tok, max_batch_size=4, dtype=torch.bfloat16, linear_kernel="aten").generate(
        [prompt], SamplingParams(max_tokens=4, temperature=0.0))
    assert out.token_ids and out.token_ids == ref.token_ids
    with pytest.raises(UserError, match="cannot run oneDNN's linear in bfloat16"):
        kernels.choose_linear_kernel(model.to(torch.bfloat16), "cpu", 4, "onednn")
