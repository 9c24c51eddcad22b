"""Our Llama against Hugging Face LlamaForCausalLM: same parameter names, same logits."""

import pytest
import torch

from saessak.model import Llama, ModelConfig
from saessak.model import model_config
from saessak.recipes import RECIPES

transformers = pytest.importorskip("transformers")


def hf_twin(cfg: ModelConfig):
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta, rms_norm_eps=cfg.rms_norm_eps, tie_word_embeddings=cfg.tie_word_embeddings,
        hidden_act="silu", attention_bias=False, mlp_bias=False, attn_implementation="eager",
    )
    return transformers.LlamaForCausalLM(hf_cfg).eval()


@pytest.mark.parametrize("tied,kv_heads", [(True, 2), (False, 4), (True, 1)])
def test_logits_match_transformers_llama(tied, kv_heads):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=176, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=128,
                      tie_word_embeddings=tied)
    ours = Llama(cfg)
    ours.init_weights(seed=1)
    # Perturb the norm gains too, so a wrong RMSNorm placement cannot hide behind gains of 1.
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    ours.eval()
    theirs = hf_twin(cfg)
    sd = ours.state_dict()
    assert set(sd) == set(theirs.state_dict()), "parameter names must be exactly Llama's"
    theirs.load_state_dict(sd, strict=True)

    ids = torch.randint(0, cfg.vocab_size, (2, 37))
    with torch.no_grad():
        a = ours(ids)
        b = theirs(input_ids=ids).logits
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()


def test_loss_matches_transformers_shifted_loss():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=200, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    ours = Llama(cfg)
    ours.init_weights(seed=3)
    ours.eval()
    theirs = hf_twin(cfg)
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, cfg.vocab_size, (3, 20))
    with torch.no_grad():
        our_loss = ours(ids[:, :-1], targets=ids[:, 1:].contiguous())
        hf_loss = theirs(input_ids=ids, labels=ids).loss
    assert abs(float(our_loss) - float(hf_loss)) < 1e-5


def test_every_preset_is_a_valid_llama_config():
    for name in RECIPES:
        cfg = model_config(name)
        cfg.validate()
        assert cfg.num_hidden_layers == RECIPES[name].shape.depth
        if RECIPES[name].shape.arch == "deepseek":  # MLA has no single head_dim (tests/test_deepseek_pipeline.py)
            assert cfg.hidden_size == RECIPES[name].shape.hidden_size
            continue
        assert cfg.hidden_size == cfg.num_attention_heads * cfg.head_dim
    # cpu-tiny is "a few M parameters"; the GPU presets grow with depth.
    assert 1e6 < model_config("cpu-tiny").num_parameters() < 10e6
    sizes = [model_config(n).num_parameters() for n in ("d12", "d20", "d26", "d32")]
    assert sizes == sorted(sizes)


def test_num_parameters_counts_the_real_module():
    for tied in (True, False):
        cfg = model_config("cpu-tiny", 1000)
        cfg.tie_word_embeddings = tied
        model = Llama(cfg)
        assert cfg.num_parameters() == sum(p.numel() for p in model.parameters())
