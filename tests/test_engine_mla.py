"""The generation engine on an MLA model (saessak's DeepSeek): it caches only the compressed latent and
the rope key, decodes in the absorbed form, and its greedy tokens equal transformers'
DeepseekV3ForCausalLM `generate` on the same weights."""

from __future__ import annotations

import pytest
import torch

from saessak.model.deepseek import DeepSeek, DeepseekConfig, update_router_biases
from saessak.model.engine import Engine, SamplingParams
from tests.helpers import tiny_tokenizer

transformers = pytest.importorskip("transformers")

TEXTS = [
    "대한민국의 주권은",
    "사과 3개와 배 2개를 샀습니다. 모두",
    "오늘은",
    "대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다. 사과 3개와 배 2개를 샀습니다. "
    "모두 몇 개입니까? 오늘은 화요일",
    "안녕하세요",
]
NEW = 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def tiny_cfg(vocab: int, q_lora_rank: int) -> DeepseekConfig:
    return DeepseekConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2,
        first_k_dense_replace=1, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
        q_lora_rank=q_lora_rank, max_position_embeddings=128, rms_norm_eps=1e-5)


def twins(vocab: int, q_lora_rank: int, seed: int = 0):
    """A random transformers DeepseekV3ForCausalLM (fp32, eager) and saessak's DeepSeek with its weights."""
    torch.manual_seed(seed)
    cfg = tiny_cfg(vocab, q_lora_rank)
    hc = transformers.DeepseekV3Config(**cfg.to_hf_config())
    hc._attn_implementation = "eager"
    theirs = transformers.DeepseekV3ForCausalLM(hc).float().eval()
    with torch.no_grad():
        for k, v in theirs.state_dict().items():
            if "norm" in k:
                continue
            if k.endswith("e_score_correction_bias"):
                v.copy_(torch.randn_like(v) * 0.3)
            else:  # unit-scale activations: varied greedy continuations, no near-ties
                v.copy_(torch.randn_like(v) / v.shape[-1] ** 0.5)
    ours = DeepSeek(cfg).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def hf_greedy(theirs, prompt: list[int], tok, n: int = NEW) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = theirs.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                              eos_token_id=sorted(tok.stop_ids), pad_token_id=tok.pad_id)
    return out[0, len(prompt):].tolist()


def expected(ref: list[int], max_tokens: int, tok) -> list[int]:
    """The engine's tokens for `max_tokens`: the reference cut there, or just after a stop token."""
    ref = ref[:max_tokens]
    for i, t in enumerate(ref):
        if t in tok.stop_ids:
            return ref[: i + 1]
    return ref


@pytest.mark.parametrize("q_lora_rank", [0, 12])
def test_greedy_equals_transformers_generate(tok, q_lora_rank):
    ours, theirs = twins(tok.vocab_size, q_lora_rank)
    prompts = [[tok.bos_id] + tok.encode(t) for t in TEXTS]
    refs = [hf_greedy(theirs, p, tok) for p in prompts]
    assert len({tuple(r[:8]) for r in refs}) > 1  # the model is not stuck on one token

    # One batch: prompts of different lengths and duplicate prompts (prefilled once, cache rows copied).
    batch = [0, 1, 2, 0, 3, 1, 4, 0]
    engine = Engine(ours, tok)
    got = engine.generate([prompts[i] for i in batch], SamplingParams(max_tokens=NEW, temperature=0))
    for i, c in zip(batch, got):
        assert c.token_ids == expected(refs[i], NEW, tok), i

    # Few slots and uneven lengths: sequences leave at different steps (slot moves), new ones join
    # while others decode, and the long prompt grows the cache past its first 64 positions.
    engine = Engine(ours, tok, max_batch_size=3)
    order = [(0, 4), (1, 32), (0, 9), (3, 32), (2, 17), (4, 32), (1, 5)]
    got = engine.generate([prompts[i] for i, _ in order],
                          [SamplingParams(max_tokens=m, temperature=0) for _, m in order])
    for (i, m), c in zip(order, got):
        assert c.token_ids == expected(refs[i], m, tok), (i, m)
    assert engine._cap_pos > 64


def test_cache_holds_only_the_latent_and_rope_key(tok, monkeypatch):
    ours, _ = twins(tok.vocab_size, 0)
    cfg = ours.config
    engine = Engine(ours, tok)
    assert engine.cache_tensors() == {} and engine.kv_cache_bytes_per_token() is None
    # prefill attends in the expanded form, every decode step in the absorbed one
    from saessak.model.deepseek import MLAttention

    forms = []
    for form in ("_expanded", "_absorbed"):
        def spy(self, q_nope, *a, _form=form, _f=getattr(MLAttention, form)):
            forms.append((_form, q_nope.shape[2]))
            return _f(self, q_nope, *a)
        monkeypatch.setattr(MLAttention, form, spy)
    prompt = [tok.bos_id] + tok.encode(TEXTS[1])
    engine.generate([prompt] * 2, SamplingParams(max_tokens=4, temperature=0))
    L = cfg.num_hidden_layers
    assert forms == [("_expanded", len(prompt))] * L + [("_absorbed", 1)] * (3 * L)
    caches = engine.cache_tensors()
    assert set(caches) == {"latent", "rope_key"}
    slots, pos = engine._cap_slots, engine._cap_pos
    assert caches["latent"].shape == (L, slots, pos, cfg.kv_lora_rank)
    assert caches["rope_key"].shape == (L, slots, pos, cfg.qk_rope_head_dim)
    per_token_layer = sum(t.numel() for t in caches.values()) // (L * slots * pos)
    assert per_token_layer == cfg.kv_lora_rank + cfg.qk_rope_head_dim  # 20 numbers, not 2 x 4 x 12
    assert engine.kv_cache_bytes_per_token() == cfg.kv_cache_bytes_per_token(dtype_bytes=4)
    # nothing else on the engine is a cache-sized tensor (no expanded keys/values beside the latent)
    big = [k for k, v in vars(engine).items() if isinstance(v, torch.Tensor) and v.numel() >= slots * pos]
    assert sorted(big) == ["_k", "_v"]


def test_training_mode_model_and_bf16_copy(tok):
    ours, _ = twins(tok.vocab_size, 12, seed=1)
    prompts = [[tok.bos_id] + tok.encode(t) for t in TEXTS[:3]]
    sp = SamplingParams(max_tokens=6, temperature=0)
    want = [c.token_ids for c in Engine(ours, tok).generate(prompts, sp)]
    # A model in training mode (RL rolls out from the model it trains): generated tokens do not count
    # towards the router-bias update, and the tokens are the same.
    ours.train()
    got = Engine(ours, tok).generate(prompts, sp)
    assert [c.token_ids for c in got] == want
    assert all(moe.load_accum is None for _, moe in ours.moe_layers())
    assert ours.training and all(m.training for m in ours.modules())
    ours.eval()
    # The bf16 copy keeps the routers' biases in fp32 and follows their updates (buffers, not parameters).
    engine = Engine(ours, tok, dtype=torch.bfloat16)
    engine.generate(prompts, sp)
    assert engine.cache_tensors()["latent"].dtype == torch.bfloat16
    moe_copy = engine.model.moe_layers()[0][1]
    assert moe_copy.gate.e_score_correction_bias.dtype == torch.float32
    for _, moe in ours.moe_layers():
        moe.load_accum = torch.arange(moe.cfg.n_routed_experts)
    assert update_router_biases(ours, speed=0.25) == 2
    engine.generate(prompts, sp)
    src_bias = ours.moe_layers()[0][1].gate.e_score_correction_bias
    assert torch.equal(moe_copy.gate.e_score_correction_bias, src_bias)
