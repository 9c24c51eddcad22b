"""The shared training machinery: schedule, accumulation, checkpoints, sampler, bits per byte."""

import math

import numpy as np
import pytest
import torch

from saessak import training
from saessak.pretrain import shards
from saessak.errors import UserError
from tests.helpers import tiny_model, tiny_tokenizer


def test_lr_warms_up_then_decays_to_the_floor():
    lrs = [training.lr_at(s, 100, 1.0, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert training.lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert training.lr_at(55, 100, 1.0, 10, 0.1) == pytest.approx(0.55)  # cosine midpoint


def test_optimizer_decays_matrices_only_and_counts_tied_weights_once():
    model = tiny_model()
    opt = training.build_optimizer(model, 1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


def test_gradient_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    x = torch.randint(0, 512, (8, 16))
    y = torch.randint(0, 512, (8, 16))
    loss_fn = lambda m, b: m(b[0], targets=b[1])  # noqa: E731
    results = []
    for micro in ([(x, y)], [(x[:4], y[:4]), (x[4:], y[4:])]):
        model = tiny_model().train()
        # SGD: Adam's first step is ~sign(grad), which would amplify rounding noise in tiny grads.
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        res = training.train_step(model, opt, micro, loss_fn, dtype="fp32", grad_clip=1.0)
        results.append((res, [p.detach().clone() for p in model.parameters()]))
    (r1, p1), (r2, p2) = results
    assert r1.loss == pytest.approx(r2.loss, abs=1e-6) and r1.grad_norm == pytest.approx(r2.grad_norm, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(p1, p2))


def test_bf16_autocast_keeps_fp32_master_weights():
    model = tiny_model().train()
    opt = training.build_optimizer(model, 1e-3)
    x = torch.randint(0, 512, (2, 8))
    res = training.train_step(model, opt, [(x, x)], lambda m, b: m(b[0], targets=b[1]), dtype="bf16")
    assert math.isfinite(res.loss) and all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(UserError):
        training.autocast("cpu", "fp8")


def test_checkpoints_roundtrip_exactly_and_keep_the_last_k(tmp_path):
    model = tiny_model().train()
    opt = training.build_optimizer(model, 1e-3)
    x = torch.randint(0, 512, (2, 8))
    for _ in range(2):
        training.train_step(model, opt, [(x, x)], lambda m, b: m(b[0], targets=b[1]), dtype="fp32")
    for step in (10, 20, 30):
        torch.manual_seed(step)
        training.save_checkpoint(tmp_path / "pretrain", step, model, opt, {"tokens": step * 7}, keep=2)
    expected_draw = torch.rand(3)  # what the run would have drawn next after its last checkpoint
    assert [s for s, _ in training.list_checkpoints(tmp_path / "pretrain")] == [20, 30]
    latest = training.latest_checkpoint(tmp_path / "pretrain")
    assert latest.name == "step_000030"
    torch.manual_seed(123)
    fresh = tiny_model(seed=99).train()
    fresh_opt = training.build_optimizer(fresh, 1e-3)
    state = training.load_checkpoint(latest, fresh, fresh_opt)
    assert state == {"tokens": 210, "step": 30}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], fresh_opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected_draw)  # RNG state restored
    # A half-written folder (no train_state.pt) is not a checkpoint.
    (tmp_path / "pretrain" / "ckpt" / "step_000040").mkdir()
    assert training.latest_checkpoint(tmp_path / "pretrain").name == "step_000030"


def test_checkpoint_of_another_shape_is_a_user_error(tmp_path):
    model = tiny_model()
    opt = training.build_optimizer(model, 1e-3)
    path = training.save_checkpoint(tmp_path / "pretrain", 1, model, opt)
    other = tiny_model(hidden_size=32, num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(UserError, match="another model config"):
        training.load_checkpoint(path, other)


def test_sampler_is_deterministic_and_covers_every_window_once_per_epoch():
    data = np.arange(1, 1002, dtype=np.uint16)
    s = shards.SequenceSampler([data[:500], data[500:]], seq_len=10, seed=7)
    assert s.num_windows == 49 + 50
    epoch = [tuple(s.sample(k)[:3]) for k in range(s.num_windows)]
    assert len(set(epoch)) == s.num_windows
    again = shards.SequenceSampler([data[:500], data[500:]], seq_len=10, seed=7)
    assert [tuple(again.sample(k)[:3]) for k in range(s.num_windows)] == epoch
    other = shards.SequenceSampler([data[:500], data[500:]], seq_len=10, seed=8)
    assert [tuple(other.sample(k)[:3]) for k in range(s.num_windows)] != epoch
    x, y = s.batch(0, 4)
    assert x.shape == y.shape == (4, 10) and torch.equal(x[:, 1:], y[:, :-1])
    # Rank slices of a global batch are exactly the halves of the single-process batch.
    full_x, _ = s.batch(100, 8)
    assert torch.equal(torch.cat([s.batch(100, 4)[0], s.batch(104, 4)[0]]), full_x)


def test_token_bytes_make_bpb_tokenizer_independent():
    tok = tiny_tokenizer()
    lengths = shards.token_byte_lengths(tok)
    text = "대한민국의 주권은 국민에게 있다. 2024년"
    ids = tok.encode(text)
    assert lengths[tok.bos_id] == 0
    # Every token stands for its bytes; the leading "▁" the tokenizer prepends is one extra space.
    assert int(lengths[ids].sum()) == len(text.encode("utf-8")) + 1
