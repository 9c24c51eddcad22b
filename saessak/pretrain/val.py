"""What pretraining measures besides its loss: val bits per byte, and a few greedy continuations."""

from __future__ import annotations

import math

import numpy as np
import torch

from saessak.training.distributed import all_reduce_sum
from saessak.training.optim import autocast

SAMPLE_PROMPTS = ["대한민국의 수도는", "옛날 옛적에", "오늘은 날씨가", "컴퓨터 프로그램을"]


def evaluate_bpb(model, val_shards, token_bytes, seq_len: int, max_tokens: int, info, dtype: str) -> float:
    """Bits per byte on the first `max_tokens` tokens of the val split (split over ranks).

    Sum of target-token losses (nats) / (ln 2 * UTF-8 bytes those targets stand for); special
    tokens (<s>) stand for no bytes and are left out of both sums, so the figure does not depend
    on the tokenizer.
    """
    windows = []
    budget = max_tokens
    for shard in val_shards:
        for off in range(0, len(shard) - 1, seq_len):
            if budget <= 0:
                break
            w = np.asarray(shard[off: off + seq_len + 1], dtype=np.int64)
            if len(w) < 2:
                break
            windows.append(w)
            budget -= len(w) - 1
    mine = windows[info.rank::info.world]
    nats, nbytes = 0.0, 0
    was_training = model.training
    model.eval()
    batch = 8
    # Under FSDP every forward is a collective: each rank runs as many batches as rank 0 (which has
    # the most windows), a rank out of windows scoring one with weight 0.
    n_batches = -(-len(windows[::info.world]) // batch)
    with torch.no_grad():
        for i in range(0, n_batches * batch, batch):
            group, weight = mine[i: i + batch], 1
            if not group:
                group, weight = windows[:1], 0
            # Windows at the end of a shard may be shorter: pad targets with -100 (ignored).
            x = torch.zeros(len(group), seq_len, dtype=torch.long)
            y = torch.full((len(group), seq_len), -100, dtype=torch.long)
            for j, w in enumerate(group):
                x[j, : len(w) - 1] = torch.from_numpy(w[:-1])
                y[j, : len(w) - 1] = torch.from_numpy(w[1:])
            x, y = x.to(info.device), y.to(info.device)
            with autocast(info.device, dtype):
                per_tok = model(x, targets=y, loss_reduction="none")
            b = token_bytes.to(info.device)[y.clamp(min=0)] * (y >= 0)
            nats += weight * float((per_tok.float() * (b > 0)).sum())
            nbytes += weight * int(b.sum())
    model.train(was_training)
    nats, nbytes = all_reduce_sum([nats, float(nbytes)], info)
    return nats / (math.log(2) * nbytes) if nbytes else float("nan")


def generate_samples(model, tok, device: str, max_new_tokens: int = 48, prompts: list[str] | None = None) -> list[dict]:
    """Greedy continuations of a few Korean prompts, through the shared generation engine."""
    from saessak.model.engine import Engine, SamplingParams

    prompts = prompts or SAMPLE_PROMPTS
    ids = [[tok.bos_id, *tok.encode(p)] for p in prompts]
    was_training = model.training
    model.eval()
    try:
        engine = Engine(model, tok, max_batch_size=len(ids), max_seq_len=model.config.max_position_embeddings,
                        device=device)
        outs = engine.generate(ids, SamplingParams(max_tokens=max_new_tokens, temperature=0.0))
    finally:
        model.train(was_training)
    return [{"prompt": p, "completion": o.text} for p, o in zip(prompts, outs)]
