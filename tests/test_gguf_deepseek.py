"""DeepSeek-V3 -> GGUF (llama.cpp deepseek2): read the file back and compare metadata and tensors
with the transformers model, then run llama.cpp's deepseek2 graph (MLA with the absorbed
k_b / v_b, sigmoid group-limited routing) in torch on the file's tensors and compare logits."""

import math

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from saessak.errors import UserError
from saessak.export.gguf_deepseek import export_deepseek_gguf, write_deepseek_gguf
from saessak.export.gguf_parts import interleave_rope_rows
from saessak.tokenizer.chat_format import CHAT_TEMPLATE
from tests.helpers import tiny_tokenizer

VOCAB = 512
TINY = {
    "vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "moe_intermediate_size": 16,
    "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 2, "kv_lora_rank": 8,
    "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6, "n_routed_experts": 4, "n_shared_experts": 1,
    "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1, "first_k_dense_replace": 1,
    "routed_scaling_factor": 2.5, "norm_topk_prob": True, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
    "initializer_range": 0.2, "tie_word_embeddings": False,
}


def tiny_deepseek(q_lora_rank=None, seed=0, **over):
    torch.manual_seed(seed)
    cfg = transformers.DeepseekV3Config(**{**TINY, "q_lora_rank": q_lora_rank, **over})
    model = transformers.DeepseekV3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "layernorm.weight")):
                p.copy_(1 + 0.1 * torch.randn_like(p))  # not all ones, so a swapped norm shows
        for mod in model.modules():
            if hasattr(mod, "e_score_correction_bias"):
                mod.e_score_correction_bias.copy_(0.5 * torch.randn_like(mod.e_score_correction_bias))
    hf = cfg.to_dict()
    hf["architectures"] = ["DeepseekV3ForCausalLM"]
    return model, hf


@pytest.fixture(scope="module")
def tok_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tiny_tokenizer().save(path)
    return path


@pytest.fixture(scope="module", params=[None, 12], ids=["q_proj", "q_lora"])
def exported(request, tmp_path_factory, tok_json):
    model, hf = tiny_deepseek(request.param)
    sd = dict(model.state_dict())
    mtp = {"model.layers.3.eh_proj.weight": torch.randn(32, 64), "model.layers.3.enorm.weight": torch.ones(32),
           "model.layers.3.self_attn.kv_a_proj_with_mqa.weight": torch.randn(12, 32)}  # DeepSeek's MTP block
    path = write_deepseek_gguf(tmp_path_factory.mktemp("gguf") / "m.gguf", {**sd, **mtp}, hf, tok_json, name="tiny-ds")
    return model, hf, sd, path


def _fields(reader):
    return {k: f.contents() for k, f in reader.fields.items()}


def _tensors(path):
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        data = np.array(t.data)
        if t.tensor_type == gguf.GGMLQuantizationType.BF16:
            data = gguf.quants.dequantize(data, t.tensor_type)
        out[t.name] = (tuple(int(x) for x in t.shape), data.astype(np.float32), t.tensor_type)
    return out


def expected_tensors(sd, hf):
    """The documented mapping, written out by hand: GGUF name -> array in torch layout."""
    g = {k: v.detach().float().numpy() for k, v in sd.items()}
    D, nope, vd, r = hf["num_attention_heads"], hf["qk_nope_head_dim"], hf["v_head_dim"], hf["kv_lora_rank"]
    I_moe = hf["moe_intermediate_size"]
    exp = {"token_embd.weight": g["model.embed_tokens.weight"], "output_norm.weight": g["model.norm.weight"],
           "output.weight": g["lm_head.weight"]}
    for b in range(hf["num_hidden_layers"]):
        p, o = f"model.layers.{b}.", f"blk.{b}."
        exp[o + "attn_norm.weight"] = g[p + "input_layernorm.weight"]
        exp[o + "ffn_norm.weight"] = g[p + "post_attention_layernorm.weight"]
        if hf["q_lora_rank"] is None:
            exp[o + "attn_q.weight"] = g[p + "self_attn.q_proj.weight"]
        else:
            exp[o + "attn_q_a.weight"] = g[p + "self_attn.q_a_proj.weight"]
            exp[o + "attn_q_a_norm.weight"] = g[p + "self_attn.q_a_layernorm.weight"]
            exp[o + "attn_q_b.weight"] = g[p + "self_attn.q_b_proj.weight"]
        exp[o + "attn_kv_a_mqa.weight"] = g[p + "self_attn.kv_a_proj_with_mqa.weight"]
        exp[o + "attn_kv_a_norm.weight"] = g[p + "self_attn.kv_a_layernorm.weight"]
        kv_b = g[p + "self_attn.kv_b_proj.weight"].reshape(D, nope + vd, r)
        exp[o + "attn_k_b.weight"] = kv_b[:, :nope].transpose(0, 2, 1)
        exp[o + "attn_v_b.weight"] = kv_b[:, nope:]
        exp[o + "attn_output.weight"] = g[p + "self_attn.o_proj.weight"]
        if b < hf["first_k_dense_replace"]:
            for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                exp[o + f"ffn_{ours}.weight"] = g[p + f"mlp.{theirs}.weight"]
            continue
        exp[o + "ffn_gate_inp.weight"] = g[p + "mlp.gate.weight"]
        exp[o + "exp_probs_b.bias"] = g[p + "mlp.gate.e_score_correction_bias"]
        exp[o + "ffn_gate_exps.weight"] = g[p + "mlp.experts.gate_up_proj"][:, :I_moe]
        exp[o + "ffn_up_exps.weight"] = g[p + "mlp.experts.gate_up_proj"][:, I_moe:]
        exp[o + "ffn_down_exps.weight"] = g[p + "mlp.experts.down_proj"]
        for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            exp[o + f"ffn_{ours}_shexp.weight"] = g[p + f"mlp.shared_experts.{theirs}.weight"]
    return exp


def test_metadata_is_llama_cpp_deepseek2(exported):
    _, hf, _, path = exported
    meta = _fields(gguf.GGUFReader(str(path)))
    r, rope = hf["kv_lora_rank"], hf["qk_rope_head_dim"]
    want = {
        "block_count": 3, "context_length": 256, "embedding_length": 32, "feed_forward_length": 48,
        "attention.head_count": 2, "attention.head_count_kv": 1, "rope.freq_base": 10000.0,
        "attention.layer_norm_rms_epsilon": 1e-6, "expert_count": 4, "expert_used_count": 2,
        "expert_group_count": 2, "expert_group_used_count": 1, "expert_gating_func": 2,
        "leading_dense_block_count": 1, "vocab_size": VOCAB, "attention.q_lora_rank": hf["q_lora_rank"] or 0,
        "attention.kv_lora_rank": r, "attention.key_length": r + rope, "attention.value_length": r,
        "attention.key_length_mla": 8, "attention.value_length_mla": 6, "expert_feed_forward_length": 16,
        "expert_shared_count": 1, "expert_weights_scale": 2.5, "expert_weights_norm": True,
        "rope.dimension_count": rope,
    }
    got = {k.removeprefix("deepseek2."): v for k, v in meta.items() if k.startswith("deepseek2.")}
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k
    assert meta["general.architecture"] == "deepseek2" and meta["general.name"] == "tiny-ds"
    assert meta["general.file_type"] == gguf.LlamaFileType.ALL_F32

    tok = tiny_tokenizer()
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.pre"] == "default"
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert meta["tokenizer.ggml.bos_token_id"] == tok.bos_id and meta["tokenizer.ggml.eos_token_id"] == tok.eot_id
    assert meta["tokenizer.ggml.eot_token_id"] == tok.eot_id and meta["tokenizer.ggml.unknown_token_id"] == tok.unk_id
    assert meta["tokenizer.ggml.padding_token_id"] == tok.pad_id
    assert meta["tokenizer.ggml.add_bos_token"] is False and meta["tokenizer.ggml.add_space_prefix"] is True
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == VOCAB == len(meta["tokenizer.ggml.scores"])
    assert all(tokens[i] == tok.id_to_token(i) for i in range(tok.vocab_size))
    assert types[tok.eot_id] == gguf.TokenType.CONTROL and types[tok.token_to_id("<0xEA>")] == gguf.TokenType.BYTE


def test_every_tensor_round_trips_and_mtp_is_dropped(exported):
    _, hf, sd, path = exported
    got, exp = _tensors(path), expected_tensors(sd, hf)
    assert set(got) == set(exp)  # exact count: no MTP block (blk.3), no attn_kv_b, nothing else
    assert not any(n.startswith("blk.3.") for n in got)
    for name, want in exp.items():
        shape, data, ttype = got[name]
        assert shape == tuple(reversed(want.shape)), name  # GGUF lists dims innermost first
        assert ttype == gguf.GGMLQuantizationType.F32, name
        np.testing.assert_array_equal(data, want, err_msg=name)
    # the shapes llama.cpp's deepseek2 loader asks for
    assert got["blk.0.attn_k_b.weight"][0] == (4, 8, 2)  # {qk_nope, kv_lora_rank, n_head}
    assert got["blk.0.attn_v_b.weight"][0] == (8, 6, 2)  # {kv_lora_rank, v_head_dim, n_head}
    assert got["blk.1.ffn_gate_exps.weight"][0] == (32, 16, 4)  # {n_embd, n_ff_exp, n_expert}
    assert got["blk.1.ffn_down_exps.weight"][0] == (16, 32, 4)  # {n_ff_exp, n_embd, n_expert}


# ---- llama.cpp's deepseek2 graph, in torch, on the file's tensors

def _rope_pairs(x, pos, theta):
    """llama.cpp's NORM RoPE: rotate adjacent pairs (2i, 2i+1)."""
    d = x.shape[-1]
    ang = pos.double()[:, None] * theta ** (-torch.arange(0, d, 2).double() / d)
    shape = (len(pos),) + (1,) * (x.dim() - 2) + (d // 2,)  # [T, (heads,) d/2]
    cos, sin = ang.cos().float().view(shape), ang.sin().float().view(shape)
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    return out


def llama_cpp_deepseek2_logits(path, ids):
    meta = _fields(gguf.GGUFReader(str(path)))
    k = {n.removeprefix("deepseek2."): v for n, v in meta.items() if n.startswith("deepseek2.")}
    w = {n: torch.from_numpy(d.copy()) for n, (_, d, _) in _tensors(path).items()}
    eps, theta = k["attention.layer_norm_rms_epsilon"], k["rope.freq_base"]
    D, r, rope = k["attention.head_count"], k["attention.kv_lora_rank"], k["rope.dimension_count"]
    nope = k["attention.key_length_mla"] - rope
    E, n_used = k["expert_count"], k["expert_used_count"]
    n_grp, grp_used = k["expert_group_count"], k["expert_group_used_count"]
    assert k["expert_gating_func"] == 2

    def norm(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    def ffn(x, gate, up, down):
        return torch.nn.functional.silu(x @ gate.T) * (x @ up.T) @ down.T

    T = len(ids)
    pos = torch.arange(T)
    x = w["token_embd.weight"][torch.tensor(ids)]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for b in range(k["block_count"]):
        o = f"blk.{b}."
        h = norm(x, w[o + "attn_norm.weight"])
        if o + "attn_q.weight" in w:
            q = h @ w[o + "attn_q.weight"].T
        else:
            q = norm(h @ w[o + "attn_q_a.weight"].T, w[o + "attn_q_a_norm.weight"]) @ w[o + "attn_q_b.weight"].T
        q = q.view(T, D, nope + rope)
        q_nope, q_pe = q[..., :nope], _rope_pairs(q[..., nope:], pos, theta)
        kv = h @ w[o + "attn_kv_a_mqa.weight"].T
        kv_c, k_pe = norm(kv[:, :r], w[o + "attn_kv_a_norm.weight"]), _rope_pairs(kv[:, r:], pos, theta)
        q_abs = torch.einsum("thn,hrn->thr", q_nope, w[o + "attn_k_b.weight"])  # absorbed into the latent
        Q = torch.cat([q_abs, q_pe], -1)  # {kv_lora + rope, head}
        K = torch.cat([kv_c, k_pe], -1)  # one shared head
        att = torch.softmax(torch.einsum("thd,sd->hts", Q, K) / math.sqrt(nope + rope) + mask, -1)
        lat = torch.einsum("hts,sr->thr", att, kv_c)
        heads = torch.einsum("thr,hvr->thv", lat, w[o + "attn_v_b.weight"])
        x = x + heads.reshape(T, -1) @ w[o + "attn_output.weight"].T
        h = norm(x, w[o + "ffn_norm.weight"])
        if b < k["leading_dense_block_count"]:
            x = x + ffn(h, w[o + "ffn_gate.weight"], w[o + "ffn_up.weight"], w[o + "ffn_down.weight"])
            continue
        probs = torch.sigmoid(h @ w[o + "ffn_gate_inp.weight"].T)
        sel = (probs + w[o + "exp_probs_b.bias"]).view(T, n_grp, E // n_grp)
        best = sel.topk(2, -1).values.sum(-1).topk(grp_used, -1).indices
        keep = torch.zeros(T, n_grp, dtype=torch.bool).scatter_(1, best, True)
        chosen = sel.masked_fill(~keep[..., None], float("-inf")).view(T, E).topk(n_used, -1).indices
        wt = probs.gather(1, chosen)
        if k.get("expert_weights_norm"):
            wt = wt / wt.sum(-1, keepdim=True)
        wt = wt * k["expert_weights_scale"]
        moe = torch.zeros_like(h)
        for t in range(T):
            for j in range(n_used):
                e = chosen[t, j]
                moe[t] += wt[t, j] * ffn(h[t], w[o + "ffn_gate_exps.weight"][e], w[o + "ffn_up_exps.weight"][e],
                                         w[o + "ffn_down_exps.weight"][e])
        shared = ffn(h, w[o + "ffn_gate_shexp.weight"], w[o + "ffn_up_shexp.weight"], w[o + "ffn_down_shexp.weight"])
        x = x + moe + shared
    x = norm(x, w["output_norm.weight"])
    return x @ w.get("output.weight", w["token_embd.weight"]).T


IDS = [5, 17, 200, 3, 99, 42, 7]


def test_llama_cpp_graph_on_the_file_gives_transformers_logits(exported):
    model, _, _, path = exported
    with torch.no_grad():
        ref = model(torch.tensor([IDS])).logits[0]
        got = llama_cpp_deepseek2_logits(path, IDS)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_rotate_half_weights_are_interleaved_for_llama_cpp(tmp_path, tok_json):
    model, hf = tiny_deepseek(12, seed=3, rope_interleave=False)
    path = write_deepseek_gguf(tmp_path / "m.gguf", model.state_dict(), hf, tok_json)
    got = _tensors(path)
    q_b = model.state_dict()["model.layers.0.self_attn.q_b_proj.weight"].numpy().reshape(2, 8, 12)
    want = q_b.copy()
    want[:, 4:] = interleave_rope_rows(q_b[:, 4:].reshape(8, 12), 2).reshape(2, 4, 12)
    np.testing.assert_array_equal(got["blk.0.attn_q_b.weight"][1], want.reshape(16, 12))
    with torch.no_grad():
        ref = model(torch.tensor([IDS])).logits[0]
        torch.testing.assert_close(llama_cpp_deepseek2_logits(path, IDS), ref, rtol=1e-4, atol=1e-4)


def test_per_expert_checkpoint_layout_and_tied_head(tmp_path, tok_json):
    model, hf = tiny_deepseek(12, seed=1)
    sd = dict(model.state_dict())
    fused = write_deepseek_gguf(tmp_path / "fused.gguf", sd, hf, tok_json)
    per = {}
    for name, t in sd.items():  # DeepSeek's own checkpoints: one module per expert
        if name.endswith("mlp.experts.gate_up_proj"):
            p = name.removesuffix("gate_up_proj")
            for e in range(t.shape[0]):
                per[f"{p}{e}.gate_proj.weight"], per[f"{p}{e}.up_proj.weight"] = t[e].chunk(2)
        elif name.endswith("mlp.experts.down_proj"):
            p = name.removesuffix("down_proj")
            for e in range(t.shape[0]):
                per[f"{p}{e}.down_proj.weight"] = t[e]
        else:
            per[name] = t
    split = write_deepseek_gguf(tmp_path / "per.gguf", per, hf, tok_json)
    a, b = _tensors(fused), _tensors(split)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name][1], b[name][1], err_msg=name)

    tied = write_deepseek_gguf(tmp_path / "tied.gguf", sd, {**hf, "tie_word_embeddings": True}, tok_json)
    assert "output.weight" not in _tensors(tied)  # llama.cpp duplicates token_embd


@pytest.mark.parametrize("outtype,qtype", [("f16", "F16"), ("bf16", "BF16")])
def test_half_precision_keeps_norms_router_and_bias_f32(tmp_path, tok_json, outtype, qtype):
    model, hf = tiny_deepseek(12, seed=2)
    path = write_deepseek_gguf(tmp_path / "m.gguf", model.state_dict(), hf, tok_json, outtype=outtype)
    got, exp = _tensors(path), expected_tensors(model.state_dict(), hf)
    F32, HALF = gguf.GGMLQuantizationType.F32, getattr(gguf.GGMLQuantizationType, qtype)
    for name, want in exp.items():
        stays = want.ndim == 1 or name.endswith("_norm.weight") or "ffn_gate_inp" in name
        assert got[name][2] == (F32 if stays else HALF), name
        np.testing.assert_allclose(got[name][1], want, rtol=1e-2, atol=1e-3, err_msg=name)
    meta = _fields(gguf.GGUFReader(str(path)))
    assert meta["general.file_type"] == getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}")


def test_export_from_a_hugging_face_folder(tmp_path, tok_json):
    model, _ = tiny_deepseek(12, seed=4)
    model.config.architectures = ["DeepseekV3ForCausalLM"]
    model.save_pretrained(tmp_path / "hf")
    path = export_deepseek_gguf(tmp_path / "hf", tmp_path / "m.gguf", tok_json)
    with torch.no_grad():
        ref = model(torch.tensor([IDS])).logits[0]
        torch.testing.assert_close(llama_cpp_deepseek2_logits(path, IDS), ref, rtol=1e-4, atol=1e-4)


def test_bad_input_is_a_user_error_naming_it(tmp_path, tok_json):
    model, hf = tiny_deepseek(12, seed=5)
    sd = dict(model.state_dict())
    out = tmp_path / "m.gguf"

    def refused(match, state=sd, cfg=hf, **kw):
        with pytest.raises(UserError, match=match):
            write_deepseek_gguf(out, state, cfg, tok_json, **kw)
        assert not out.exists()

    missing = {k: v for k, v in sd.items() if k != "model.layers.2.mlp.gate.e_score_correction_bias"}
    refused(r"model\.layers\.2\.mlp\.gate\.e_score_correction_bias is missing", missing)
    refused(r"unknown tensor model\.layers\.0\.self_attn\.rotary\.inv_freq",
            {**sd, "model.layers.0.self_attn.rotary.inv_freq": torch.zeros(2)})
    refused(r"model\.layers\.1\.self_attn\.o_proj\.weight has shape",
            {**sd, "model.layers.1.self_attn.o_proj.weight": torch.zeros(32, 11)})
    refused("scoring_func 'softmax'", cfg={**hf, "scoring_func": "softmax"})
    refused("rope_scaling", cfg={**hf, "rope_scaling": {"type": "yarn", "factor": 40}})
    refused("rope_type 'yarn'", cfg={**hf, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}})
    refused("'kv_lora_rank' is missing", cfg={k: v for k, v in hf.items() if k != "kv_lora_rank"})
    refused("architectures", cfg={**hf, "architectures": ["LlamaForCausalLM"]})
    refused("outtype 'q8_0'", outtype="q8_0")
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    with pytest.raises(UserError, match="not a GGUF file"):
        write_deepseek_gguf(notes, sd, hf, tok_json)
    assert notes.read_text() == "keep me"


@pytest.mark.slow
def test_llama_cpp_python_loads_the_file(exported):
    llama_cpp = pytest.importorskip("llama_cpp")
    model, _, _, path = exported
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False)
    llm.eval(IDS)
    got = torch.tensor(np.array(llm.scores[:len(IDS)]), dtype=torch.float32)
    with torch.no_grad():
        ref = model(torch.tensor([IDS])).logits[0]
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)


def test_imported_byte_level_tokenizer_is_written_as_gpt2(tmp_path):
    from saessak.tokenizer.imported import load_tokenizer
    from tests.hf_fixtures import make_checkpoint

    folder = make_checkpoint("qwen3", tmp_path / "qwen3", layers=1)
    model, hf = tiny_deepseek(12, seed=6)
    path = write_deepseek_gguf(tmp_path / "m.gguf", model.state_dict(), hf, folder / "tokenizer.json")
    meta = _fields(gguf.GGUFReader(str(path)))
    tok = load_tokenizer(folder / "tokenizer.json")
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "deepseek-v3"
    assert len(meta["tokenizer.ggml.tokens"]) == VOCAB and meta["tokenizer.ggml.merges"]
    assert "tokenizer.ggml.scores" not in meta
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eot_id
    assert meta["tokenizer.chat_template"] == tok.chat_template
