"""GRPO maths: group-relative advantages and the clipped token-level policy-gradient loss.

Pure tensor functions, no model or data: the RL loop (saessak/rl.py) calls them, tests check them.

Advantages (`scale_rewards`, as TRL names it):
    A_i = r_i - mean(group)                  ("none": Dr. GRPO; no std scaling)
    A_i = (r_i - mean(group)) / (std + eps)  ("group": the original GRPO)
    A_i = (r_i - mean(group)) / (std_batch + eps)  ("batch": std over the whole batch)

Per-token objective, with ratio = exp(logp - logp_old):
    -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A) + beta * KL_k3
KL_k3 = exp(ref - logp) - (ref - logp) - 1 (Schulman's unbiased, always >= 0 estimator).

Aggregation over tokens (`loss_type`):
    "grpo":    mean over each completion's tokens, then mean over completions (length-biased)
    "dr_grpo": sum over all tokens / (completions * max_completion_length) (Dr. GRPO, unbiased)
    "dapo":    sum over all tokens / tokens in the global batch (token-level, DAPO)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")


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


@dataclass
class LossParts:
    loss: torch.Tensor  # scalar to backpropagate (already normalised as loss_type says)
    clip_frac: torch.Tensor  # share of masked tokens where clipping removed the gradient
    kl: torch.Tensor | None  # mean k3 KL over masked tokens (beta > 0 only)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                *, epsilon: float, epsilon_high: float, loss_type: str, max_completion_length: int,
                beta: float = 0.0, ref_logp: torch.Tensor | None = None,
                token_normaliser: float | None = None) -> LossParts:
    """Clipped surrogate loss over completion tokens.

    logp, old_logp, ref_logp, mask: [B, T] (mask 1 on completion tokens that count);
    advantages: [B]. `token_normaliser` (dapo, dr_grpo) is the denominator for the whole global
    batch when it is split into micro-batches or ranks; by default this micro-batch's own.
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


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(target) under softmax(logits / temperature): [B, T, V], [B, T] -> [B, T].

    Dividing by the sampling temperature makes these the log-probs of the policy that sampled.
    """
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    logits = logits.float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)
