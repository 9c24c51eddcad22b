"""Our DeepSeek-V3 (saessak/model/deepseek.py) against transformers' DeepseekV3ForCausalLM, and its
own parts: absorbed MLA decode, routing, aux-loss-free balancing, MTP, config checks."""

import json

import pytest
import torch

from saessak.errors import UserError
from saessak.model.deepseek import (
    DeepSeek,
    DeepseekConfig,
    MoE,
    deepseek_config_for_shape,
    router_stats,
    stack_expert_weights,
    unstack_expert_weights,
    update_router_biases,
)

transformers = pytest.importorskip("transformers")


def tiny(**kw) -> DeepseekConfig:
    fields = {"vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "moe_intermediate_size": 16, "num_hidden_layers": 3,
                  "num_attention_heads": 4, "n_shared_experts": 1, "n_routed_experts": 8, "num_experts_per_tok": 2,
                  "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1, "routed_scaling_factor": 1.0, "kv_lora_rank": 16,
                  "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "max_position_embeddings": 64,
                  "rms_norm_eps": 1e-5}
    fields.update(kw)
    return DeepseekConfig(**fields)


def hf_twin(cfg: DeepseekConfig):
    hc = transformers.DeepseekV3Config(**cfg.to_hf_config())
    hc._attn_implementation = "eager"
    return transformers.DeepseekV3ForCausalLM(hc).float().eval()


@pytest.mark.parametrize("q_lora_rank,tied", [(0, False), (12, True)])
def test_logits_match_transformers_deepseek_v3(q_lora_rank, tied):
    torch.manual_seed(0)
    cfg = tiny(q_lora_rank=q_lora_rank, tie_word_embeddings=tied, n_group=4, topk_group=2,
               routed_scaling_factor=2.5, num_experts_per_tok=3,
               rms_norm_eps=0.05)  # large: the latent norms must keep transformers' own 1e-6
    theirs = hf_twin(cfg)
    sd = theirs.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if "norm" in k:
                v.add_(torch.randn_like(v) * 0.1)  # a misplaced norm cannot hide behind gains of 1
            elif k.endswith("gate.weight"):
                v.copy_(torch.randn_like(v) * 0.2)  # spread router scores: no near-ties
            elif k.endswith("e_score_correction_bias"):
                v.copy_(torch.randn_like(v) * 0.5)
            else:  # unit-scale activations, so every path shows in the logits
                v.copy_(torch.randn_like(v) / v.shape[-1] ** 0.5)
    ours = DeepSeek(cfg).eval()
    ours.load_state_dict(sd, strict=True)
    assert set(ours.state_dict()) == set(sd)
    ids = torch.randint(0, cfg.vocab_size, (2, 11))
    with torch.no_grad():
        ref = theirs(ids).logits
        got = ours(ids)
    assert (got - ref).abs().max().item() <= 1e-4
    # The bias path is live: zeroing the biases changes the routing, hence the logits.
    with torch.no_grad():
        for _, moe in ours.moe_layers():
            moe.gate.e_score_correction_bias.zero_()
        assert (ours(ids) - ref).abs().max().item() > 1e-3


def test_state_dict_keys_and_mtp_export():
    cfg = tiny(num_nextn_predict_layers=1, q_lora_rank=8)
    ours = DeepSeek(cfg)
    hf_keys = set(hf_twin(cfg).state_dict())
    keys = set(ours.state_dict())
    mtp = keys - hf_keys
    assert hf_keys <= keys
    assert mtp and all(k.startswith("model.layers.3.") for k in mtp)
    for name in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight",
                 "self_attn.kv_b_proj.weight", "mlp.experts.gate_up_proj", "mlp.gate.e_score_correction_bias"):
        assert f"model.layers.3.{name}" in mtp
    assert set(ours.state_dict_for_export(keep_mtp=False)) == hf_keys
    assert set(ours.state_dict_for_export(keep_mtp=True)) == keys
    # Sizes: the formula counts what the module holds, and transformers' model without MTP.
    assert cfg.num_parameters() == sum(p.numel() for p in ours.parameters())
    hf_n = sum(p.numel() for p in hf_twin(cfg).parameters())
    assert cfg.num_parameters(include_mtp=False) == hf_n
    unused = (cfg.n_routed_experts - cfg.num_experts_per_tok) * 3 * cfg.hidden_size * cfg.moe_intermediate_size
    assert cfg.num_active_parameters() == cfg.num_parameters() - unused * 3  # 2 MoE layers + 1 MTP
    assert cfg.kv_cache_bytes_per_token(2) == 3 * (16 + 4) * 2
    assert cfg.flops_per_token(64) > 6 * cfg.num_active_parameters(include_embeddings=False)


def test_hf_config_round_trip_and_refusals(tmp_path):
    cfg = tiny(q_lora_rank=0, num_nextn_predict_layers=1, n_group=2, topk_group=1)
    d = cfg.to_hf_config()
    assert d["q_lora_rank"] is None and d["head_dim"] == cfg.qk_rope_head_dim and "rope_scaling" not in d
    (tmp_path / "config.json").write_text(json.dumps(d))
    ac = transformers.AutoConfig.from_pretrained(tmp_path)
    assert ac.model_type == "deepseek_v3" and ac.q_lora_rank is None and ac.head_dim == 4
    assert DeepseekConfig.from_hf_config(ac.to_dict()) == cfg
    assert DeepseekConfig.from_hf_config(d) == cfg
    assert DeepseekConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(UserError, match="rope_scaling"):
        DeepseekConfig.from_hf_config({**d, "rope_scaling": {"type": "yarn", "factor": 40}})
    with pytest.raises(UserError, match="rope_parameters"):
        DeepseekConfig.from_hf_config({**d, "rope_parameters": {"rope_type": "yarn", "factor": 40.0}})
    with pytest.raises(UserError, match="scoring_func"):
        DeepseekConfig.from_hf_config({**d, "scoring_func": "softmax"})


class LatentCache:
    """The simplest MLA cache: concatenates each layer's latents; `absorb` picks the decode form."""

    def __init__(self, absorb: bool):
        self.absorb = absorb
        self.c, self.k = {}, {}

    def update_latent(self, layer_idx, c_kv, k_pe):
        if layer_idx in self.c:
            c_kv = torch.cat((self.c[layer_idx], c_kv), 1)
            k_pe = torch.cat((self.k[layer_idx], k_pe), 1)
        self.c[layer_idx], self.k[layer_idx] = c_kv, k_pe
        return c_kv, k_pe, None


@pytest.mark.parametrize("q_lora_rank", [0, 8])
def test_absorbed_decode_matches_expanded_attention(q_lora_rank):
    torch.manual_seed(1)
    cfg = tiny(q_lora_rank=q_lora_rank)
    model = DeepSeek(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)  # unit-scale activations
    model.eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    with torch.no_grad():
        full = model(ids)
        for absorb in (True, False):
            cache = LatentCache(absorb)
            # prefill 3 tokens, then one at a time
            steps = [model(ids[:, :3], kv_cache=cache)]
            for t in range(3, ids.shape[1]):
                pos = torch.full((2, 1), t)
                steps.append(model(ids[:, t:t + 1], position_ids=pos, kv_cache=cache))
            got = torch.cat(steps, 1)
            assert (got - full).abs().max().item() <= 1e-5, absorb
            assert cache.c[0].shape == (2, 9, cfg.kv_lora_rank) and cache.k[0].shape == (2, 9, cfg.qk_rope_head_dim)
    # Direct check of the two computations on a whole sequence with a boolean mask.
    attn = model.model.layers[1].self_attn
    q_nope, q_pe = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 4)
    c, k = torch.randn(2, 7, 16), torch.randn(2, 7, 4)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[..., 0] = True
    with torch.no_grad():
        a = attn._absorbed(q_nope, q_pe, c, k, mask)
        b = attn._expanded(q_nope, q_pe, c, k, mask)
    assert (a - b).abs().max().item() <= 1e-5


def test_router_picks_k_experts_within_the_best_groups():
    torch.manual_seed(2)
    cfg = tiny(n_routed_experts=16, num_experts_per_tok=3, n_group=4, topk_group=2, routed_scaling_factor=2.0)
    gate = DeepSeek(cfg).model.layers[1].mlp.gate
    with torch.no_grad():
        gate.weight.normal_(std=0.5)
        gate.e_score_correction_bias.normal_(std=0.3)
    x = torch.randn(200, cfg.hidden_size)
    scores, idx, w = gate(x)
    assert idx.shape == (200, 3)
    assert all(len(set(r)) == 3 for r in idx.tolist())
    groups = idx // 4
    assert all(len(set(r)) <= 2 for r in groups.tolist())
    choice = (scores + gate.e_score_correction_bias).view(200, 4, 4)
    best_groups = choice.topk(2, dim=-1).values.sum(-1).topk(2, dim=-1).indices
    for g, b in zip(groups.tolist(), best_groups.tolist()):
        assert set(g) <= set(b)
    assert torch.allclose(w.sum(-1), torch.full((200,), 2.0), atol=1e-5)
    assert torch.allclose(w, scores.gather(1, idx) / scores.gather(1, idx).sum(-1, keepdim=True) * 2.0, atol=1e-6)


def test_bias_updates_balance_a_skewed_load():
    torch.manual_seed(3)
    cfg = tiny(num_hidden_layers=2)
    model = DeepSeek(cfg).train()
    moe = model.model.layers[1].mlp
    assert isinstance(moe, MoE)
    mu = torch.randn(cfg.hidden_size)
    with torch.no_grad():
        moe.gate.weight.normal_(std=0.1)
        moe.gate.weight[:2] += mu / mu.norm()  # experts 0 and 1 take almost everything
    gen = torch.Generator().manual_seed(0)
    first, last = torch.zeros(8), torch.zeros(8)
    with torch.no_grad():
        for step in range(300):
            moe(torch.randn(4, 128, cfg.hidden_size, generator=gen) + mu)  # a fresh skewed batch
            counts = moe.load_accum.float()
            assert int(counts.sum()) == 4 * 128 * cfg.num_experts_per_tok  # every token gets k experts
            if step < 20:
                first += counts
            if step >= 280:
                last += counts
            update_router_biases(moe, speed=0.01)
    # Sign steps of a fixed size oscillate from batch to batch: judge the load over 20 steps.
    assert (first.max() / first.mean()).item() > 3.0
    assert (last.max() / last.mean()).item() <= 1.5
    assert moe.load_accum is None  # reset by the update


def test_router_stats_and_dead_experts():
    torch.manual_seed(4)
    cfg = tiny()
    model = DeepSeek(cfg).train()
    with torch.no_grad():
        for _, moe in model.moe_layers():
            moe.gate.e_score_correction_bias[7] = -10.0
        model(torch.randint(0, cfg.vocab_size, (2, 16)))
    stats = router_stats(model)
    json.dumps(stats)
    assert set(stats) == {"1", "2"}
    for s in stats.values():
        assert 7 in s["dead_experts"]
        assert sum(s["tokens_per_expert"]) == 2 * 16 * cfg.num_experts_per_tok
        assert s["bias_min"] == -10.0 and s["max_over_mean"] >= 1.0
    assert update_router_biases(model) == 2  # config speed
    after = router_stats(model)  # the load the update used is still reported
    assert after["1"]["tokens_per_expert"] == stats["1"]["tokens_per_expert"]
    assert after["1"]["bias_min"] == pytest.approx(-10.0 + cfg.bias_update_speed)
    model.eval()
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (1, 4)))
    assert all(moe.load_accum is None for _, moe in model.moe_layers())  # eval forwards are not counted


def test_mtp_loss_and_seq_aux_loss():
    torch.manual_seed(5)
    cfg = tiny(num_nextn_predict_layers=2, seq_aux_loss_alpha=0.01)
    model = DeepSeek(cfg)
    model.init_weights(seed=0)
    model.train()
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    targets = torch.cat((ids[:, 1:], torch.full((2, 1), -100)), 1)
    loss = model(ids, targets=targets)
    aux = model.last_aux
    assert torch.isfinite(loss) and torch.isfinite(aux["mtp_loss"]) and aux["mtp_loss"] > 0
    assert aux["seq_aux_loss"] > 0
    expected = aux["main_loss"] + cfg.mtp_weight * aux["mtp_loss"] + aux["seq_aux_loss"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    eh = model.model.layers[3].eh_proj.weight
    assert eh.grad is not None and eh.grad.abs().sum() > 0
    assert model.model.layers[4].eh_proj.weight.grad.abs().sum() > 0
    # With mtp_weight 0 the MTP modules are not run: eh_proj gets no gradient.
    model.zero_grad(set_to_none=True)
    model.config.mtp_weight = 0.0
    model(ids, targets=targets).backward()
    assert eh.grad is None or eh.grad.abs().sum() == 0
    # Per-token losses are the main model's only.
    per_tok = model(ids, targets=targets, loss_reduction="none")
    assert per_tok.shape == (2, 12) and (per_tok[:, -1] == 0).all()
    model.eval()
    with torch.no_grad():
        assert model(ids, targets=targets).item() == pytest.approx(per_tok.sum().item() / 22, rel=1e-4)


def test_expert_layouts_round_trip():
    sd = DeepSeek(tiny()).state_dict()
    flat = unstack_expert_weights(sd)
    assert "model.layers.1.mlp.experts.7.down_proj.weight" in flat
    assert flat["model.layers.1.mlp.experts.0.gate_proj.weight"].shape == (16, 32)
    back = stack_expert_weights(flat)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_config_for_shape():
    cfg = deepseek_config_for_shape(256, 4, 4096, 256, 64)
    assert cfg.num_attention_heads == 4 and cfg.qk_rope_head_dim == 16 and cfg.qk_nope_head_dim == 48
    # the cache (latent + rope key) is a quarter of a GQA Llama's K and V with 2 query heads per KV head
    assert cfg.kv_lora_rank == 48 and cfg.kv_cache_bytes_per_token() * 4 == 4 * 2 * (4 // 2) * 64 * 2
    assert cfg.first_k_dense_replace == 1 and cfg.n_group == 1 and cfg.q_lora_rank == 0
    active_moe = (cfg.num_experts_per_tok + cfg.n_shared_experts) * cfg.moe_intermediate_size
    assert abs(active_moe - cfg.intermediate_size) <= 3 * 8
    big = deepseek_config_for_shape(512, 2, 1000, 128, 64, n_routed_experts=64, num_experts_per_tok=6)
    assert (big.n_group, big.topk_group) == (8, 4)


@pytest.mark.parametrize("overrides,knob", [
    ({"num_experts_per_tok": 9}, "num_experts_per_tok"),
    ({"n_group": 3}, "n_group"),
    ({"n_group": 2, "topk_group": 3}, "topk_group"),
    ({"n_group": 4, "topk_group": 1, "num_experts_per_tok": 3}, "num_experts_per_tok"),
    ({"qk_rope_head_dim": 5}, "qk_rope_head_dim"),
    ({"first_k_dense_replace": 4}, "first_k_dense_replace"),
    ({"scoring_func": "softmax"}, "scoring_func"),
    ({"topk_method": "greedy"}, "topk_method"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"moe_intermediate_size": -1}, "moe_intermediate_size"),
    ({"kv_lora_rank": 0}, "kv_lora_rank"),
    ({"num_key_value_heads": 2}, "num_key_value_heads"),
    ({"q_lora_rank": -1}, "q_lora_rank"),
])
def test_validate_names_the_knob(overrides, knob):
    with pytest.raises(UserError, match=knob):
        tiny(**overrides).validate()
