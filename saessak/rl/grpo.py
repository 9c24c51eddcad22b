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
from saessak.sft.pack import block_causal_mask
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


@dataclass
class MicroBatch:
    """A micro-batch's completions as rows the model runs once.

    With shared prompts each row holds one prompt followed by the completions sampled from it
    (G of them, or the part of a group that falls in this micro-batch): every completion sees the
    prompt and itself, never its siblings, and keeps the positions it had when it was sampled, so
    each completion's log-probs are exactly those of its own padded sequence while the prompt is
    run once instead of G times and no completion is padded to the longest. Without sharing each
    completion is a row of its own with a copy of its prompt (the plain layout, for comparison).
    """
    ids: torch.Tensor  # [R, T] rows, right-padded
    positions: torch.Tensor  # [R, T] each completion continues its prompt's positions
    attn_mask: torch.Tensor  # [R, 1, T, T] boolean: prompt and own completion, causal
    where: torch.Tensor  # [N] flat index into R*T of the position predicting each completion token
    targets: torch.Tensor  # [N] the completion tokens, in sequence order
    slots: torch.Tensor  # [S, L] boolean: True at the N completion tokens (sequence order)
    mask: torch.Tensor  # [S, L] float: 1 on completion tokens that count in the loss
    advantages: torch.Tensor  # [S]


def _plan_rows(seqs: list[Seq], share_prompts: bool):
    """(trees, rows, T): consecutive sequences with the same prompt form a tree (the prompt, then
    its completions); trees are packed first-fit, longest first, into rows as long as the longest
    tree. Without sharing every sequence is a tree and a row of its own."""
    trees: list[tuple[list[int], list[int]]] = []  # (prompt, indices of its completions in seqs)
    for i, s in enumerate(seqs):
        if share_prompts and trees and trees[-1][0] == s.prompt_ids:
            trees[-1][1].append(i)
        else:
            trees.append((s.prompt_ids, [i]))
    size = [len(p) + sum(len(seqs[i].completion_ids) for i in idx) for p, idx in trees]
    T = max(size)
    rows: list[list[int]] = []  # tree numbers per row
    room: list[int] = []
    for t in sorted(range(len(trees)), key=lambda t: -size[t]):
        r = next((r for r in range(len(rows)) if room[r] >= size[t]), None) if share_prompts else None
        if r is None:
            rows.append([])
            room.append(T)
            r = len(rows) - 1
        rows[r].append(t)
        room[r] -= size[t]
    return trees, rows, T


def shares_prompts(seqs: list[Seq], hidden_size: int) -> bool:
    """Whether shared-prompt rows cost fewer FLOPs than one padded row per completion. Per layer a
    row of T positions costs about 24 T d^2 in its projections and 4 T^2 d in attention, and a
    masked attention still computes all T^2 scores: sharing saves the prompt's G-1 copies and the
    padding, but long trees (long completions) pay quadratically. Cost in units of 24 d^2."""
    def cost(share: bool) -> float:
        _, rows, T = _plan_rows(seqs, share)
        return len(rows) * T * (1 + T / (6 * hidden_size))
    return cost(True) < cost(False)


def micro_batch(seqs: list[Seq], pad_id: int, device, share_prompts: bool = True) -> MicroBatch:
    """Rows for `seqs` (see MicroBatch and _plan_rows); each tree attends only within itself."""
    trees, rows, T = _plan_rows(seqs, share_prompts)
    R, L = len(rows), max(len(s.completion_ids) for s in seqs)
    ids = torch.full((R, T), pad_id, dtype=torch.long)
    positions = torch.zeros((R, T), dtype=torch.long)
    tree = torch.full((R, T), -1, dtype=torch.long)  # the tree each position belongs to, -1: padding
    branch = torch.zeros((R, T), dtype=torch.long)  # 0: the tree's prompt, k: its k-th completion
    predictors: dict[int, list[int]] = {}  # seq index -> flat positions predicting its tokens
    for r, members in enumerate(rows):
        at = 0
        for t in members:
            prompt, idx = trees[t]
            P = len(prompt)
            ids[r, at:at + P] = torch.tensor(prompt)
            positions[r, at:at + P] = torch.arange(P)
            tree[r, at:at + P] = t
            last = r * T + at + P - 1  # the prompt's last position predicts each completion's first token
            at += P
            for k, i in enumerate(idx, start=1):
                c = seqs[i].completion_ids
                n = len(c)
                ids[r, at:at + n] = torch.tensor(c)
                positions[r, at:at + n] = torch.arange(P, P + n)
                tree[r, at:at + n] = t
                branch[r, at:at + n] = k
                predictors[i] = [last] + [r * T + at + j for j in range(n - 1)]
                at += n
    where = [w for i in range(len(seqs)) for w in predictors[i]]
    targets = [tok for s in seqs for tok in s.completion_ids]
    slots = torch.zeros((len(seqs), L), dtype=torch.bool)
    mask = torch.zeros((len(seqs), L), dtype=torch.float32)
    for i, s in enumerate(seqs):
        n = len(s.completion_ids)
        slots[i, :n] = True
        if s.counted:
            mask[i, :n] = 1.0
    # SFT's packed-row mask over trees (causal, within a tree, padding sees itself), and within a
    # tree a completion sees the prompt and itself only
    sees = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])
    allowed = block_causal_mask(tree) & sees[:, None]
    adv = torch.tensor([s.advantage for s in seqs], dtype=torch.float32)
    return MicroBatch(ids.to(device), positions.to(device), allowed.to(device),
                      torch.tensor(where, dtype=torch.long, device=device),
                      torch.tensor(targets, dtype=torch.long, device=device),
                      slots.to(device), mask.to(device), adv.to(device))


def completion_logprobs(model, mb: MicroBatch, temperature: float, with_entropy: bool = False):
    """Log-probs [S, L] of the completion tokens (0 elsewhere), the vocabulary projection computed
    only at the positions that predict them; optional summed entropy there. A sharded (FSDP) model
    runs its whole forward: only `forward` gathers its root's parameters."""
    kw = {"position_ids": mb.positions, "attn_mask": mb.attn_mask}
    if is_fsdp(model):
        logits = model(mb.ids, **kw).flatten(0, 1)[mb.where]
    else:
        logits = model.lm_head(model.hidden_states(mb.ids, **kw).flatten(0, 1)[mb.where])
    logp_flat = torch.log_softmax(logits.float() / temperature, dim=-1)
    picked = logp_flat.gather(-1, mb.targets.unsqueeze(-1)).squeeze(-1)
    logp = torch.zeros(mb.slots.shape, dtype=picked.dtype, device=picked.device)
    logp = logp.masked_scatter(mb.slots, picked)
    ent = None
    if with_entropy:
        with torch.no_grad():
            ent = (token_entropy(logits.detach(), temperature) * mb.mask[mb.slots]).sum()
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
           info: DistInfo | None = None, dtype: str = "fp32", share_prompts: bool | None = None) -> dict:
    """num_iterations optimizer steps on this batch; returns summed statistics for logging. Under
    torchrun (`info`), gradients are summed over ranks before each step. `dtype` bf16 runs the
    forward passes under bf16 autocast (fp32 master weights; log-probs are taken in fp32).
    `share_prompts`: run each prompt once for its completions (True), give every completion a
    padded row of its own (False), or per micro-batch whichever costs fewer FLOPs (None)."""
    from saessak.training.optim import autocast

    def logprobs(m, *args, **kw):
        with autocast(str(device), dtype):
            return completion_logprobs(m, *args, **kw)

    micro = [seqs[i:i + cfg.micro_batch_size] for i in range(0, len(seqs), cfg.micro_batch_size)]
    hidden = model.config.hidden_size
    tensors = [micro_batch(m, pad_id, device, shares_prompts(m, hidden) if share_prompts is None else share_prompts)
               for m in micro]
    fsdp = is_fsdp(model)
    if fsdp:
        n = int(all_reduce_max(len(tensors), info))
        idle = micro_batch([Seq([pad_id], [pad_id], 0.0, False)], pad_id, device)
        tensors += [idle] * (n - len(tensors))
    scale = info.world if fsdp else 1
    old, ref = [], []
    with torch.no_grad():
        for mb in tensors:
            # With one iteration the sampling policy is the current one: ratio = 1 exactly.
            old.append(logprobs(model, mb, cfg.temperature)[0] if cfg.num_iterations > 1 else None)
            ref.append(logprobs(ref_model, mb, cfg.temperature)[0] if cfg.beta > 0 else None)
    stats = {"clip_tokens": 0.0, "kl_sum": 0.0, "entropy_sum": 0.0, "tokens": 0.0, "loss": 0.0,
             "grad_norm": 0.0, "trained_tokens": 0.0}
    for it in range(cfg.num_iterations):
        for mb, old_lp, ref_lp in zip(tensors, old, ref):
            n_tok = float(mb.mask.sum())
            if n_tok == 0 and not fsdp:
                continue
            logp, ent = logprobs(model, mb, cfg.temperature, with_entropy=(it == 0))
            parts = policy_loss(logp, old_lp if old_lp is not None else logp.detach(), mb.advantages, mb.mask,
                                epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                                max_completion_length=cfg.max_completion_length, beta=cfg.beta,
                                ref_logp=ref_lp, token_normaliser=norm, kl_clamp=cfg.kl_clamp)
            (parts.loss * scale).backward()
            if n_tok == 0:  # an idle micro-batch (FSDP): it only kept this rank in step
                continue
            stats["trained_tokens"] += float(mb.ids.numel())
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
