"""GGUF export: read the file back and compare tensors and metadata with the checkpoint."""

import json

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from saessak.tokenizer.chat_format import CHAT_TEMPLATE  # noqa: E402
from saessak.cli import main  # noqa: E402
from saessak.errors import UserError  # noqa: E402
from saessak.export.gguf_export import export_gguf, interleave_rope_rows  # noqa: E402
from saessak.model.llama import apply_rope, rope_cos_sin  # noqa: E402
from tests.helpers import tiny_tokenizer  # noqa: E402
from tests.run_fixture import make_run  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    run = make_run(root / "run", stages=("pretrain", "sft"))
    return run, export_gguf(run, root / "model.gguf")


def _fields(reader):
    return {k: f.contents() for k, f in reader.fields.items()}


def test_metadata_describes_a_llama_model_with_our_tokenizer(exported):
    run, path = exported
    meta = _fields(gguf.GGUFReader(str(path)))
    cfg = json.loads((run / "sft" / "final" / "config.json").read_text())
    tok = tiny_tokenizer()
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == cfg["num_hidden_layers"]
    assert meta["llama.embedding_length"] == cfg["hidden_size"]
    assert meta["llama.attention.head_count_kv"] == cfg["num_key_value_heads"]
    assert meta["llama.rope.freq_base"] == pytest.approx(cfg["rope_theta"])
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eot_id and meta["tokenizer.ggml.bos_token_id"] == tok.bos_id
    tokens, types, scores = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"], meta["tokenizer.ggml.scores"]
    assert len(tokens) == cfg["vocab_size"]
    assert all(tokens[i] == tok.id_to_token(i) for i in range(tok.vocab_size))
    T = gguf.TokenType
    assert types[tok.unk_id] == T.UNKNOWN and types[tok.eot_id] == T.CONTROL and types[tok.bos_id] == T.CONTROL
    assert types[tok.token_to_id("<0xEA>")] == T.BYTE
    merged = [i for i, t in enumerate(tokens) if types[i] == T.NORMAL and len(t) > 1]
    assert merged and all(scores[a] > scores[b] for a, b in zip(merged, merged[1:]))  # earlier merge ranks higher


def test_tensors_round_trip(exported):
    from safetensors.numpy import load_file

    run, path = exported
    cfg = json.loads((run / "sft" / "final" / "config.json").read_text())
    sd = load_file(str(run / "sft" / "final" / "model.safetensors"))
    got = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}
    assert len(got) == len(sd)  # tied lm_head: llama.cpp reuses token_embd
    np.testing.assert_array_equal(got["token_embd.weight"], sd["model.embed_tokens.weight"])
    np.testing.assert_array_equal(got["blk.1.ffn_down.weight"], sd["model.layers.1.mlp.down_proj.weight"])
    np.testing.assert_array_equal(got["output_norm.weight"], sd["model.norm.weight"])
    q = sd["model.layers.0.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(got["blk.0.attn_q.weight"], interleave_rope_rows(q, cfg["num_attention_heads"]))
    assert not np.array_equal(got["blk.0.attn_q.weight"], q)


def _rope_adjacent_pairs(x, positions, theta):
    """RoPE as llama.cpp's llama architecture applies it: rotate pairs (2i, 2i+1)."""
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    ang = positions.float()[:, None] * inv  # [T, d/2]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * ang.cos() - x2 * ang.sin()
    out[..., 1::2] = x1 * ang.sin() + x2 * ang.cos()
    return out


def test_reordered_q_k_give_the_same_attention_scores_under_llama_cpp_rope():
    torch.manual_seed(0)
    heads, head_dim, hidden, T = 2, 8, 16, 5
    wq, wk = torch.randn(heads * head_dim, hidden), torch.randn(heads * head_dim, hidden)
    x = torch.randn(T, hidden)
    pos = torch.arange(T)
    cos, sin = rope_cos_sin(pos[None], head_dim, 10000.0)

    def scores(q, k):
        return torch.einsum("htd,hsd->hts", q, k)

    q = (x @ wq.T).view(T, heads, head_dim).transpose(0, 1)[None]
    k = (x @ wk.T).view(T, heads, head_dim).transpose(0, 1)[None]
    ref = scores(apply_rope(q, cos, sin)[0], apply_rope(k, cos, sin)[0])
    wq2 = torch.from_numpy(interleave_rope_rows(wq.numpy(), heads))
    wk2 = torch.from_numpy(interleave_rope_rows(wk.numpy(), heads))
    q2 = (x @ wq2.T).view(T, heads, head_dim).transpose(0, 1)
    k2 = (x @ wk2.T).view(T, heads, head_dim).transpose(0, 1)
    got = scores(_rope_adjacent_pairs(q2, pos, 10000.0), _rope_adjacent_pairs(k2, pos, 10000.0))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_f16_keeps_norms_f32_and_bad_outputs_are_refused(tmp_path, capsys):
    run = make_run(tmp_path / "run", stages=("pretrain",))
    path = export_gguf(run, tmp_path / "m16.gguf", outtype="f16")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    with pytest.raises(UserError, match="not a GGUF file"):
        export_gguf(run, notes)
    assert notes.read_text() == "keep me"
    with pytest.raises(UserError, match="is a folder"):
        export_gguf(run, tmp_path)
    assert main(["export", "gguf", "--run", str(run), "--stage", "rl", "--out", str(tmp_path / "x.gguf")]) == 2
    assert "stage 'rl' is not complete" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()


def test_interrupted_gguf_export_leaves_no_file(tmp_path, monkeypatch):
    import saessak.export.gguf_export as ge

    run = make_run(tmp_path / "run", stages=("pretrain",))

    def broken_tensors(*a, **k):
        yield "token_embd.weight", np.zeros((2, 2), np.float32)
        raise KeyboardInterrupt

    monkeypatch.setattr(ge, "_tensors", broken_tensors)
    with pytest.raises(KeyboardInterrupt):
        ge.export_gguf(run, tmp_path / "out" / "model.gguf")
    assert list((tmp_path / "out").iterdir()) == []


def test_untied_output_head_is_written(tmp_path):
    from safetensors.numpy import load_file

    run = make_run(tmp_path / "run", stages=("pretrain",), tie_word_embeddings=False)
    path = export_gguf(run, tmp_path / "m.gguf")
    got = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}
    sd = load_file(str(run / "pretrain" / "final" / "model.safetensors"))
    np.testing.assert_array_equal(got["output.weight"], sd["lm_head.weight"])
