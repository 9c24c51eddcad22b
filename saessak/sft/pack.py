"""Packing rendered conversations into fixed-length training rows for SFT.

Whole conversations are packed first-fit into rows of `seq_len` tokens; a conversation never
spans two rows. Inside a row each conversation keeps its own positions (starting at 0) and
attends only to itself (block-diagonal causal mask), so a packed row trains exactly as the
separate conversations would, and the model sees prompts at the positions it will see at
inference. Targets are the next token where the chat format's loss mask is 1 (assistant content
and its end-of-turn), else -100.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass
class PackedRows:
    input_ids: torch.Tensor  # [N, T] long
    targets: torch.Tensor  # [N, T] long, IGNORE where not trained
    position_ids: torch.Tensor  # [N, T] long, restarting at 0 per conversation
    segment_ids: torch.Tensor  # [N, T] long, conversation index within the row; -1 on padding

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def batch(self, idx: torch.Tensor) -> "PackedRows":
        return PackedRows(self.input_ids[idx], self.targets[idx], self.position_ids[idx], self.segment_ids[idx])

    def trained_tokens(self) -> int:
        return int((self.targets != IGNORE).sum())


def _segment(ids: list[int], mask: list[int], seq_len: int) -> tuple[list[int], list[int]] | None:
    """(inputs, targets) of one conversation, cut to seq_len inputs; None if nothing is trained."""
    ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
    inputs = ids[:-1]
    targets = [t if m else IGNORE for t, m in zip(ids[1:], mask[1:])]
    if all(t == IGNORE for t in targets):
        return None
    return inputs, targets


def pack(rendered: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int) -> PackedRows:
    """First-fit packing of (ids, loss_mask) pairs in the given order into rows of seq_len."""
    rows: list[list[tuple[list[int], list[int]]]] = []
    free: list[int] = []
    for ids, mask in rendered:
        seg = _segment(ids, mask, seq_len)
        if seg is None:
            continue
        n = len(seg[0])
        # First fit among the last few rows keeps packing O(n) and still dense.
        for r in range(max(0, len(rows) - 8), len(rows)):
            if free[r] >= n:
                rows[r].append(seg)
                free[r] -= n
                break
        else:
            rows.append([seg])
            free.append(seq_len - n)
    N = len(rows)
    input_ids = torch.full((N, seq_len), pad_id, dtype=torch.long)
    targets = torch.full((N, seq_len), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((N, seq_len), dtype=torch.long)
    segment_ids = torch.full((N, seq_len), -1, dtype=torch.long)
    for r, segs in enumerate(rows):
        at = 0
        for s, (inp, tgt) in enumerate(segs):
            n = len(inp)
            input_ids[r, at: at + n] = torch.tensor(inp)
            targets[r, at: at + n] = torch.tensor(tgt)
            position_ids[r, at: at + n] = torch.arange(n)
            segment_ids[r, at: at + n] = s
            at += n
    return PackedRows(input_ids, targets, position_ids, segment_ids)


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, T, T]: query i sees key j iff j <= i and both are in the same conversation.

    Padding (segment -1) sees only itself, so no attention row is empty (an empty row gives NaN).
    """
    T = segment_ids.size(1)
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = same & causal
    pad = segment_ids < 0
    eye = torch.eye(T, dtype=torch.bool, device=segment_ids.device)
    allowed = torch.where(pad[:, :, None], eye, allowed)
    return allowed[:, None]
