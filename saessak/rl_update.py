"""One GRPO policy update from graded groups: token log-probs, clipped loss, data-parallel gradients.

Gradients are summed over micro-batches and over ranks by an explicit all-reduce (not a DDP
wrapper): ranks may keep different numbers of informative groups after dynamic sampling, and
every loss term is already divided by the global normaliser, so the sum is the global gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saessak.grpo import policy_loss, token_entropy


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
    positions so the vocabulary projection skips the prompt; optional mean entropy there."""
    h = model.hidden_states(ids)[:, :-1]
    where = mask.bool()
    logits = model.lm_head(h[where])
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
           all_reduce_grads) -> dict:
    """num_iterations optimizer steps on this batch; returns summed statistics for logging."""
    micro = [seqs[i:i + cfg.micro_batch_size] for i in range(0, len(seqs), cfg.micro_batch_size)]
    tensors = [_micro_tensors(m, pad_id, device) for m in micro]
    old, ref = [], []
    with torch.no_grad():
        for ids, tgt, mask, _ in tensors:
            # With one iteration the sampling policy is the current one: ratio = 1 exactly.
            old.append(completion_logprobs(model, ids, tgt, mask, cfg.temperature)[0]
                       if cfg.num_iterations > 1 else None)
            ref.append(completion_logprobs(ref_model, ids, tgt, mask, cfg.temperature)[0]
                       if cfg.beta > 0 else None)
    stats = {"clip_tokens": 0.0, "kl_sum": 0.0, "entropy_sum": 0.0, "tokens": 0.0, "loss": 0.0,
             "grad_norm": 0.0, "trained_tokens": 0.0}
    for it in range(cfg.num_iterations):
        for (ids, tgt, mask, adv), old_lp, ref_lp in zip(tensors, old, ref):
            if mask.sum() == 0:
                continue
            logp, ent = completion_logprobs(model, ids, tgt, mask, cfg.temperature, with_entropy=(it == 0))
            parts = policy_loss(logp, old_lp if old_lp is not None else logp.detach(), adv, mask,
                                epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                                max_completion_length=cfg.max_completion_length, beta=cfg.beta,
                                ref_logp=ref_lp, token_normaliser=norm)
            parts.loss.backward()
            n_tok = float(mask.sum())
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
        all_reduce_grads(model)
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return stats
