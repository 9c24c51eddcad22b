"""GRPO maths: advantages, clipping, loss aggregation, KL; and that one update moves the policy."""

import pytest
import torch

from saessak.rl.grpo import group_advantages, policy_loss


def test_group_advantages_scale_modes_and_zero_std():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    adv, zero = group_advantages(r, 4, "none")
    assert torch.allclose(adv[:4], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    assert torch.all(adv[4:] == 0)
    assert zero.tolist() == [False, True]
    adv_g, _ = group_advantages(r, 4, "group")
    std = torch.tensor([1.0, 0, 0, 0]).std(unbiased=False)
    assert torch.allclose(adv_g[:4], adv[:4] / (std + 1e-4))
    adv_b, _ = group_advantages(r, 4, "batch")
    assert torch.allclose(adv_b, adv / (r.std(unbiased=False) + 1e-4))
    with pytest.raises(ValueError):
        group_advantages(r, 4, "bogus")


def _kw(**over):
    kw = dict(epsilon=0.2, epsilon_high=0.28, loss_type="dapo", max_completion_length=8)
    kw.update(over)
    return kw


def test_ratio_one_gives_minus_advantage_times_logprob_gradient():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = policy_loss(logp, logp.detach(), torch.tensor([2.0]), mask, **_kw())
    out.loss.backward()
    # dapo: mean over the 2 counted tokens of -A * ratio; d/dlogp = -A / 2 on counted tokens
    assert torch.allclose(logp.grad, torch.tensor([[-1.0, -1.0, 0.0]]))
    assert float(out.clip_frac) == 0.0


def test_clipping_cuts_gradient_outside_the_asymmetric_range():
    old = torch.zeros(1, 4)
    # ratios: 1.25 (inside 1+0.28), 1.35 (outside), 0.85 (inside 1-0.2), 0.7 (outside)
    logp = torch.log(torch.tensor([[1.25, 1.35, 0.85, 0.7]])).requires_grad_(True)
    mask = torch.ones(1, 4)
    out = policy_loss(logp, old, torch.tensor([1.0]), mask, **_kw())
    out.loss.backward()
    g = logp.grad[0]
    assert g[0] != 0 and g[1] == 0  # positive advantage: clipped above 1 + epsilon_high
    assert g[2] != 0 and g[3] != 0  # below 1 - epsilon is not clipped for a positive advantage
    assert float(out.clip_frac) == pytest.approx(0.25)
    logp.grad = None
    out = policy_loss(logp, old, torch.tensor([-1.0]), mask, **_kw())
    out.loss.backward()
    g = logp.grad[0]
    assert g[3] == 0 and g[1] != 0  # negative advantage: clipped below 1 - epsilon only


def test_loss_types_weight_lengths_as_documented():
    # two completions: lengths 1 and 3, per-token loss -A*ratio = -1 everywhere (A=1, ratio=1)
    logp = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    adv = torch.tensor([1.0, 1.0])
    grpo = policy_loss(logp, logp, adv, mask, **_kw(loss_type="grpo")).loss
    dapo = policy_loss(logp, logp, adv, mask, **_kw(loss_type="dapo")).loss
    dr = policy_loss(logp, logp, adv, mask, **_kw(loss_type="dr_grpo", max_completion_length=8)).loss
    assert float(grpo) == pytest.approx(-1.0)  # mean of per-sequence means
    assert float(dapo) == pytest.approx(-1.0)  # 4 tokens / 4 tokens
    assert float(dr) == pytest.approx(-4 / (2 * 8))  # sum / (B * max_completion_length)
    # a global normaliser (other micro-batches, ranks) replaces the local one
    assert float(policy_loss(logp, logp, adv, mask, **_kw(), token_normaliser=8.0).loss) == pytest.approx(-0.5)


def test_k3_kl_is_zero_at_the_reference_and_positive_away_from_it():
    logp = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    same = policy_loss(logp, logp, torch.zeros(1), mask, **_kw(), beta=0.1, ref_logp=logp.clone())
    assert float(same.kl) == pytest.approx(0.0, abs=1e-7)
    away = policy_loss(logp, logp, torch.zeros(1), mask, **_kw(), beta=0.1, ref_logp=logp - 0.5)
    assert float(away.kl) > 0 and float(away.loss) > 0
    with pytest.raises(ValueError):
        policy_loss(logp, logp, torch.zeros(1), mask, **_kw(), beta=0.1)


def test_k3_kl_is_clamped_per_token_so_one_outlier_cannot_swamp_the_batch():
    """A sampled token the policy has made far less likely than the reference (ref - logp = 12 here)
    has k3 = e^12 - 13, about 160,000: unclamped, its gradient dwarfs every other token's and clipping
    then scales the reward signal away. Clamped at kl_clamp it counts kl_clamp and pushes nothing."""
    ref = torch.tensor([[-1.0, -1.0, -1.0]])
    logp = torch.tensor([[-1.2, -0.9, -13.0]], requires_grad=True)
    mask = torch.ones(1, 3)
    adv = torch.zeros(1)
    raw = policy_loss(logp, logp.detach(), adv, mask, **_kw(), beta=0.2, ref_logp=ref, kl_clamp=0)
    assert float(raw.kl) > 5e4
    capped = policy_loss(logp, logp.detach(), adv, mask, **_kw(), beta=0.2, ref_logp=ref, kl_clamp=10.0)
    d = ref[0, :2] - logp[0, :2].detach()
    assert float(capped.kl) == pytest.approx(float(((torch.exp(d) - d - 1).sum() + 10.0) / 3), rel=1e-5)
    capped.loss.backward()
    assert logp.grad[0, 2] == 0 and logp.grad[0, 0] != 0  # the outlier adds no KL gradient; the others do
    # a log-ratio exp() overflows on (fp32: above about 88) gives the cap and a finite, zero gradient
    far = torch.tensor([[-1.0, -300.0]], requires_grad=True)
    out = policy_loss(far, far.detach(), adv, torch.ones(1, 2), **_kw(), beta=0.2, ref_logp=torch.full((1, 2), -1.0))
    out.loss.backward()
    assert float(out.kl) == pytest.approx(5.0) and torch.isfinite(far.grad).all() and far.grad[0, 1] == 0


def test_kl_clamp_must_not_be_negative():
    from saessak.errors import UserError
    from saessak.rl.config import GRPOConfig

    with pytest.raises(UserError, match="--kl-clamp -1.0"):
        GRPOConfig(kl_clamp=-1.0).validate()
    with pytest.raises(UserError, match="--kl-clamp nan: must be 0"):
        GRPOConfig(kl_clamp=float("nan")).validate()
    with pytest.raises(UserError, match="--bias-update-speed nan: must be 0 or more"):
        GRPOConfig(bias_update_speed=float("nan")).validate()
    GRPOConfig(kl_clamp=0.0, bias_update_speed=None).validate()  # 0 turns the cap off; None: the model's own


def test_one_update_raises_rewarded_completion_and_lowers_the_other():
    from saessak.rl.config import GRPOConfig
    from saessak.rl.grpo import Seq, completion_logprobs, micro_batch, update
    from tests.helpers import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model(tok.vocab_size).train()
    prompt = [tok.bos_id] + tok.encode("문제") + [tok.role_ids["assistant"]]
    good, bad = tok.encode("정답: 사과") + [tok.eot_id], tok.encode("모르겠어요") + [tok.eot_id]
    seqs = [Seq(prompt, good, 1.0, True), Seq(prompt, bad, -1.0, True)]
    cfg = GRPOConfig(max_steps=1, prompts_per_step=1, num_generations=2, learning_rate=1e-2)

    def seq_logp():
        with torch.no_grad():
            lp, _ = completion_logprobs(model, micro_batch(seqs, tok.pad_id, "cpu"), 1.0)
        return lp.sum(dim=1)

    before = seq_logp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    stats = update(model, None, opt, seqs, cfg, tok.pad_id, "cpu", norm=float(len(good) + len(bad)))
    after = seq_logp()
    assert after[0] > before[0] and after[1] < before[1]
    assert stats["tokens"] == len(good) + len(bad) and stats["grad_norm"] > 0


def test_truncated_completions_are_masked_out_of_the_loss():
    from saessak.rl.grpo import Seq, local_counts, micro_batch

    seqs = [Seq([1, 5], [7, 8, 9], 1.0, True), Seq([1, 5, 6], [7], -1.0, False)]
    mb = micro_batch(seqs, 3, "cpu")
    assert mb.mask.tolist() == [[1, 1, 1], [0, 0, 0]]
    assert mb.targets.tolist() == [7, 8, 9, 7]
    assert local_counts(seqs) == {"tokens": 3.0, "seqs": 2.0, "counted_seqs": 1.0}


def _two_groups(vocab: int, seed: int = 0):
    """Seqs as `sequences` lays them out: two prompts of different lengths, three completions each
    of different lengths (one masked), so rows, padding and positions all differ."""
    from saessak.rl.grpo import Seq

    g = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(4, vocab, (n,), generator=g).tolist()

    p1, p2 = ids(5), ids(9)
    return [Seq(p1, ids(3), 1.0, True), Seq(p1, ids(7), -0.5, True), Seq(p1, ids(1), 0.2, False),
            Seq(p2, ids(6), 0.7, True), Seq(p2, ids(2), -1.0, True), Seq(p2, ids(4), 0.3, True)]


def _plain_logprobs(model, s):
    """The log-probs of one completion from a forward over its own prompt + completion, no mask."""
    x = torch.tensor([s.prompt_ids + s.completion_ids])
    with torch.no_grad():
        logits = model(x)[0, len(s.prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(s.completion_ids)[:, None])[:, 0]


@pytest.mark.parametrize("arch", ["llama", "deepseek"])
def test_shared_prompt_rows_give_each_completion_its_own_logprobs(arch):
    """A prompt run once for its G completions (each seeing the prompt and itself, never a sibling)
    gives every completion token the log-prob of its own sequence run alone."""
    from saessak.rl.grpo import completion_logprobs, micro_batch
    from tests.helpers import tiny_model

    if arch == "llama":
        model = tiny_model(97)
    else:
        from tests.test_deepseek_model import tiny
        from saessak.model.deepseek import DeepSeek
        torch.manual_seed(0)
        model = DeepSeek(tiny()).eval()
    seqs = _two_groups(97)
    shared = micro_batch(seqs, 0, "cpu")
    alone = micro_batch(seqs, 0, "cpu", share_prompts=False)
    assert shared.ids.shape == (2, max(5 + 11, 9 + 12))  # one row per prompt
    assert alone.ids.shape == (6, 9 + 6)  # one row per completion
    with torch.no_grad():
        got, ent = completion_logprobs(model, shared, 1.0, with_entropy=True)
        got_alone, ent_alone = completion_logprobs(model, alone, 1.0, with_entropy=True)
    for i, s in enumerate(seqs):
        want = _plain_logprobs(model, s)
        n = len(s.completion_ids)
        torch.testing.assert_close(got[i, :n], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_alone[i, :n], want, atol=1e-5, rtol=1e-5)
        assert not got[i, n:].any()
    torch.testing.assert_close(ent, ent_alone, atol=1e-4, rtol=1e-5)
    assert shared.mask.sum() == alone.mask.sum() == 3 + 7 + 6 + 2 + 4  # the masked completion counts nothing


def test_update_with_shared_prompts_matches_the_plain_layout():
    """The same GRPO step (KL to a reference included) from either layout: the same weights after."""
    import copy

    from saessak.rl.config import GRPOConfig
    from saessak.rl.grpo import local_counts, normaliser, update
    from tests.helpers import tiny_model

    seqs = _two_groups(97, seed=1)
    cfg = GRPOConfig(max_steps=1, prompts_per_step=2, num_generations=3, micro_batch_size=4, beta=0.2)
    norm = normaliser(local_counts(seqs), cfg.loss_type, cfg.max_completion_length)
    after, stats = [], []
    for share in (True, False):
        model = tiny_model(97).train()
        ref = copy.deepcopy(model).eval()
        with torch.no_grad():  # the policy has moved off the reference: the KL term has a gradient
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.01)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        stats.append(update(model, ref, opt, seqs, cfg, 0, "cpu", norm, share_prompts=share))
        after.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(after[0], after[1], atol=1e-6, rtol=1e-5)
    assert stats[0]["tokens"] == stats[1]["tokens"] == 22
    assert abs(stats[0]["kl_sum"] - stats[1]["kl_sum"]) < 1e-5 and stats[0]["kl_sum"] > 0
    assert stats[0]["grad_norm"] == pytest.approx(stats[1]["grad_norm"], rel=1e-5)
    # Micro-batches of 4 sequences split the second group. Shared: rows of 5+3+7+1 and 9+6 (padded
    # to 16), then 9+2+4; plain: 4 rows padded to 9+6, then 2 rows to 9+4.
    assert stats[0]["trained_tokens"] == 2 * 16 + 15 and stats[1]["trained_tokens"] == 4 * 15 + 2 * 13


def test_update_shares_prompts_only_where_it_costs_fewer_flops():
    """Short completions of one prompt: one row beats G padded copies of the prompt. Completions so
    long that a tree's quadratic attention outweighs the copies saved: one row per completion."""
    from saessak.rl.grpo import Seq, shares_prompts

    prompt = list(range(40))
    short = [Seq(prompt, [1] * n, 0.0, True) for n in (10, 30, 20, 25)]
    assert shares_prompts(short, hidden_size=256)
    long = [Seq(prompt[:4], [1] * 500, 0.0, True) for _ in range(8)]
    assert not shares_prompts(long, hidden_size=64)
