"""The GRPO update: group-relative advantages, the clipped token-level policy-gradient loss, and the
optimizer steps that apply it to a batch of graded groups.

Gradients are summed over micro-batches and over ranks by an explicit all-reduce (not a DDP
wrapper): ranks may keep different numbers of informative groups after dynamic sampling, and
every loss term is already divided by the global normaliser, so the sum is the global gradient.
Under FSDP every forward and backward is a collective, so each rank runs as many micro-batches
as the busiest one (idle ones with no counted token), and FSDP's averaging over ranks is undone
by scaling the loss by the world size.

Advantages (`scale_rewards`, as TRL names it):
    A_i = r_i - mean(group)                  ("none": Dr. GRPO; no std scaling)
    A_i = (r_i - mean(group)) / (std + eps)  ("group": the original GRPO)
    A_i = (r_i - mean(group)) / (std_batch + eps)  ("batch": std over the whole batch)

Per-token objective, with ratio = exp(logp - logp_old):
    -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A) + beta * min(KL_k3, kl_clamp)
KL_k3 = exp(ref - logp) - (ref - logp) - 1 (Schulman's unbiased, always >= 0 estimator). It grows
as exp(ref - logp): one sampled token the policy has made far less likely than the reference did
can outweigh a whole batch's policy gradient, and gradient clipping then scales the reward signal
away with it. So each token's estimate is clamped at `kl_clamp` (default 10; verl clamps its k3
the same way), and a clamped token adds no KL gradient (docs/RL.md#grpo).

Aggregation over tokens (`loss_type`):
    "grpo":    mean over each completion's tokens, then mean over completions (length-biased)
    "dr_grpo": sum over all tokens / (completions * max_completion_length) (Dr. GRPO, unbiased)
    "dapo":    sum over all tokens / tokens in the global batch (token-level, DAPO)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from saessak.model.deepseek import update_router_biases
from saessak.rl.config import LOSS_TYPES, SCALE_REWARDS
from saessak.training.distributed import DistInfo, all_reduce_grads, all_reduce_max
from saessak.training.parallel import clip_grad_norm, is_fsdp


def group_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: str = "group",
                     eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, zero_std) for rewards [N*G] laid out group after group.

    zero_std [N] is True for groups whose rewards are all equal (they carry no signal).
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards {scale_rewards!r}: not one of {SCALE_REWARDS}")
    r = rewards.view(-1, group_size).float()
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True, unbiased=False)
    adv = r - mean
    if scale_rewards == "group":
        adv = adv / (std + eps)
    elif scale_rewards == "batch":
        adv = adv / (r.std(unbiased=False) + eps)
    zero_std = (r.max(dim=1).values - r.min(dim=1).values) < 1e-9
    return adv.view(-1), zero_std


@functools.lru_cache(maxsize=None)
def _k3_bounds(cap: float) -> tuple[float, float]:
    """The log-ratios d < 0 < d' where k3(d) = exp(d) - d - 1 equals `cap` (k3 falls to 0 at d = 0 and
    rises on both sides), by bisection."""
    def solve(lo: float, hi: float) -> float:  # k3 - cap changes sign between lo and hi
        f_lo = math.exp(lo) - lo - 1 - cap
        for _ in range(200):
            mid = (lo + hi) / 2
            f_mid = math.exp(mid) - mid - 1 - cap
            if (f_mid > 0) == (f_lo > 0):
                lo, f_lo = mid, f_mid
            else:
                hi = mid
        return (lo + hi) / 2

    return solve(-cap - 2.0, 0.0), solve(0.0, math.log(cap + 2.0) + 1.0)


@dataclass
class LossParts:
    loss: torch.Tensor  # scalar to backpropagate (already normalised as loss_type says)
    clip_frac: torch.Tensor  # share of masked tokens where clipping removed the gradient
    kl: torch.Tensor | None  # mean k3 KL over masked tokens (beta > 0 only)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                *, epsilon: float, epsilon_high: float, loss_type: str, max_completion_length: int,
                beta: float = 0.0, ref_logp: torch.Tensor | None = None,
                token_normaliser: float | None = None, kl_clamp: float = 10.0) -> LossParts:
    """Clipped surrogate loss over completion tokens.

    logp, old_logp, ref_logp, mask: [B, T] (mask 1 on completion tokens that count);
    advantages: [B]. `token_normaliser` (dapo, dr_grpo) is the denominator for the whole global
    batch when it is split into micro-batches or ranks; by default this micro-batch's own.
    `kl_clamp` > 0 caps each token's k3 estimate (0: no cap).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r}: not one of {LOSS_TYPES}")
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = None
    if beta > 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs ref_logp")
        d = ref_logp - logp
        if kl_clamp > 0:
            # min(k3(d), cap) as k3 of d clamped where k3 reaches the cap: the same value and no gradient
            # beyond, and exp never sees a log-ratio it would overflow on (inf * 0 = NaN in backward)
            low, high = _k3_bounds(float(kl_clamp))
            d = torch.clamp(d, min=low, max=high)
        kl_tok = torch.exp(d) - d - 1
        per_token = per_token + beta * kl_tok
        kl = (kl_tok * mask).sum() / mask.sum().clamp(min=1)
    if loss_type == "grpo":
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        # Completions with no counted tokens (masked truncations) must not dilute the mean.
        has_tokens = (mask.sum(dim=1) > 0).to(logp.dtype)
        denom = token_normaliser if token_normaliser is not None else has_tokens.sum().clamp(min=1)
        loss = (per_seq * has_tokens).sum() / denom
    elif loss_type == "dr_grpo":
        denom = token_normaliser if token_normaliser is not None else logp.size(0) * max_completion_length
        loss = (per_token * mask).sum() / denom
    else:  # dapo
        denom = token_normaliser if token_normaliser is not None else mask.sum().clamp(min=1)
        loss = (per_token * mask).sum() / denom
    with torch.no_grad():
        # Clipping is active where the clipped term is the smaller (the gradient is cut off).
        is_clipped = (clipped < unclipped).to(logp.dtype)
        clip_frac = (is_clipped * mask).sum() / mask.sum().clamp(min=1)
    return LossParts(loss, clip_frac, kl)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    logits = logits.float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------- the update


def assign_advantages(groups: list, cfg) -> None:
    """Group-relative advantages; with scale_rewards="batch" the std is over the kept batch."""
    if not groups:
        return
    G = cfg.num_generations
    rewards = torch.cat([g.rewards for g in groups])
    adv, _ = group_advantages(rewards, G, cfg.scale_rewards)
    for i, g in enumerate(groups):
        g.advantages = adv[i * G:(i + 1) * G]


@dataclass
class Seq:
    prompt_ids: list[int]
    completion_ids: list[int]
    advantage: float
    counted: bool  # False: a masked truncated completion (no loss)


def sequences(groups, mask_truncated: bool) -> list[Seq]:
    out = []
    for g in groups:
        for c, a in zip(g.completions, g.advantages.tolist()):
            if not c.token_ids:
                continue
            out.append(Seq(g.prompt_ids, c.token_ids, a, not (mask_truncated and c.truncated)))
    return out


def _micro_tensors(seqs: list[Seq], pad_id: int, device):
    """Right-padded ids [B, T], targets [B, T-1], completion mask [B, T-1], advantages [B]."""
    full = [s.prompt_ids + s.completion_ids for s in seqs]
    T = max(len(x) for x in full)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T - 1), dtype=torch.float32)
    for i, (s, x) in enumerate(zip(seqs, full)):
        ids[i, :len(x)] = torch.tensor(x)
        if s.counted:
            p = len(s.prompt_ids)
            # position t predicts token t+1: completion tokens are predicted from p-1 .. len-2
            mask[i, p - 1:len(x) - 1] = 1.0
    adv = torch.tensor([s.advantage for s in seqs], dtype=torch.float32)
    return ids.to(device), ids[:, 1:].to(device), mask.to(device), adv.to(device)


def completion_logprobs(model, ids, targets, mask, temperature: float, with_entropy: bool = False):
    """Log-probs [B, T-1] of the targets where mask is 1 (0 elsewhere), computed only at those
    positions so the vocabulary projection skips the prompt; optional mean entropy there. A sharded
    (FSDP) model runs its whole forward: only `forward` gathers its root's parameters."""
    where = mask.bool()
    if is_fsdp(model):
        logits = model(ids)[:, :-1][where]
    else:
        logits = model.lm_head(model.hidden_states(ids)[:, :-1][where])
    logp_flat = torch.log_softmax(logits.float() / temperature, dim=-1)
    picked = logp_flat.gather(-1, targets[where].unsqueeze(-1)).squeeze(-1)
    logp = torch.zeros(mask.shape, dtype=picked.dtype, device=picked.device)
    logp = logp.masked_scatter(where, picked)
    ent = None
    if with_entropy:
        with torch.no_grad():
            ent = token_entropy(logits.detach(), temperature).sum()
    return logp, ent


def normaliser(seqs_counts: dict, loss_type: str, max_completion_length: int) -> float:
    """The loss denominator for the whole global batch (counts already summed over ranks)."""
    if loss_type == "dapo":
        return max(1.0, seqs_counts["tokens"])
    if loss_type == "dr_grpo":
        return max(1.0, seqs_counts["seqs"] * max_completion_length)
    return max(1.0, seqs_counts["counted_seqs"])


def local_counts(seqs: list[Seq]) -> dict:
    return {"tokens": float(sum(len(s.completion_ids) for s in seqs if s.counted)),
            "seqs": float(len(seqs)),
            "counted_seqs": float(sum(1 for s in seqs if s.counted))}


def update(model, ref_model, optimizer, seqs: list[Seq], cfg, pad_id: int, device, norm: float,
           info: DistInfo | None = None, dtype: str = "fp32") -> dict:
    """num_iterations optimizer steps on this batch; returns summed statistics for logging. Under
    torchrun (`info`), gradients are summed over ranks before each step. `dtype` bf16 runs the
    forward passes under bf16 autocast (fp32 master weights; log-probs are taken in fp32)."""
    from saessak.training.optim import autocast

    def logprobs(m, *args, **kw):
        with autocast(str(device), dtype):
            return completion_logprobs(m, *args, **kw)

    micro = [seqs[i:i + cfg.micro_batch_size] for i in range(0, len(seqs), cfg.micro_batch_size)]
    tensors = [_micro_tensors(m, pad_id, device) for m in micro]
    fsdp = is_fsdp(model)
    if fsdp:
        n = int(all_reduce_max(len(tensors), info))
        idle = _micro_tensors([Seq([pad_id], [pad_id], 0.0, False)], pad_id, device)
        tensors += [idle] * (n - len(tensors))
    scale = info.world if fsdp else 1
    old, ref = [], []
    with torch.no_grad():
        for ids, tgt, mask, _ in tensors:
            # With one iteration the sampling policy is the current one: ratio = 1 exactly.
            old.append(logprobs(model, ids, tgt, mask, cfg.temperature)[0]
                       if cfg.num_iterations > 1 else None)
            ref.append(logprobs(ref_model, ids, tgt, mask, cfg.temperature)[0]
                       if cfg.beta > 0 else None)
    stats = {"clip_tokens": 0.0, "kl_sum": 0.0, "entropy_sum": 0.0, "tokens": 0.0, "loss": 0.0,
             "grad_norm": 0.0, "trained_tokens": 0.0}
    for it in range(cfg.num_iterations):
        for (ids, tgt, mask, adv), old_lp, ref_lp in zip(tensors, old, ref):
            n_tok = float(mask.sum())
            if n_tok == 0 and not fsdp:
                continue
            logp, ent = logprobs(model, ids, tgt, mask, cfg.temperature, with_entropy=(it == 0))
            parts = policy_loss(logp, old_lp if old_lp is not None else logp.detach(), adv, mask,
                                epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                                max_completion_length=cfg.max_completion_length, beta=cfg.beta,
                                ref_logp=ref_lp, token_normaliser=norm, kl_clamp=cfg.kl_clamp)
            (parts.loss * scale).backward()
            if n_tok == 0:  # an idle micro-batch (FSDP): it only kept this rank in step
                continue
            stats["trained_tokens"] += float(ids.numel())
            if it == cfg.num_iterations - 1:
                # Clipping can only act once the policy has moved off the sampling policy.
                stats["clip_tokens"] += float(parts.clip_frac) * n_tok
            if it == 0:
                stats["tokens"] += n_tok
                stats["entropy_sum"] += float(ent)
                stats["loss"] += float(parts.loss.detach())
                if parts.kl is not None:
                    stats["kl_sum"] += float(parts.kl.detach()) * n_tok
        if info is not None and not fsdp:
            all_reduce_grads(model, info)
        stats["grad_norm"] = clip_grad_norm(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        update_router_biases(model, cfg.bias_update_speed)  # DeepSeek's balancing (no-op without MoE layers)
    return stats
