"""Token shards for pretraining: the text splits tokenized once into flat numpy memmaps.

Layout (`RUN/pretrain/shards/`, built under a temporary name and renamed whole):

    meta.json           dtype, vocab size, tokenizer sha256, seed, per split: shard files,
                        token counts, document count, UTF-8 bytes of the text
    train_000000.bin    raw little-endian uint16 (vocab <= 65536) or uint32 token ids
    val_000000.bin      ...

Each document is `<s>` followed by its tokens; documents are concatenated whole (never cut
apart or interleaved) in an order shuffled from the seed, so a training window may span a
document boundary, marked by `<s>`, but the stream order itself is deterministic.
`SequenceSampler` cuts each shard into windows of seq_len+1 tokens (inputs and shifted targets,
consecutive windows share one token) and visits them in a seeded permutation per epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saessak.data.split import iter_docs
from saessak.errors import UserError
from saessak.io import atomic_dir

SHARD_TOKENS = 1 << 26  # tokens per shard file (128 MiB at uint16); bounds memory while building


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def build_shards(out_dir: str | os.PathLike, tokenizer, tokenizer_sha: str, splits: dict[str, Path],
                 seed: int, batch_docs: int = 512) -> dict:
    """Tokenize each split (`{"train": path, "val": path}`) into shards under `out_dir`, atomically."""
    dtype = token_dtype(tokenizer.vocab_size)
    meta: dict = {"format": "saessak-token-shards-v1", "dtype": dtype.name, "vocab_size": tokenizer.vocab_size,
                  "tokenizer_sha256": tokenizer_sha, "seed": seed, "bos_id": tokenizer.bos_id, "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for split, path in splits.items():
            texts = [d["text"] for d in iter_docs(path) if d["text"].strip()]
            if not texts:
                raise UserError(f"{path}: the {split} split has no text")
            # Shuffle documents (not tokens) so the stream mixes sources but keeps each one whole.
            order = np.random.default_rng([seed, _split_salt(split)]).permutation(len(texts))
            writer = _ShardWriter(tmp, split, dtype)
            n_bytes = 0
            for start in range(0, len(order), batch_docs):
                chunk = [texts[i] for i in order[start:start + batch_docs]]
                n_bytes += sum(len(t.encode("utf-8")) for t in chunk)
                for ids in tokenizer.encode_batch(chunk):
                    writer.add([tokenizer.bos_id, *ids])
            files, counts = writer.close()
            meta["splits"][split] = {"files": files, "tokens": counts, "docs": len(texts), "bytes": n_bytes}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _split_salt(split: str) -> int:
    return int.from_bytes(hashlib.sha256(split.encode()).digest()[:4], "little")


class _ShardWriter:
    def __init__(self, folder: Path, split: str, dtype: np.dtype):
        self.folder, self.split, self.dtype = folder, split, dtype
        self.buf: list[int] = []
        self.files: list[str] = []
        self.counts: list[int] = []

    def add(self, ids: list[int]) -> None:
        self.buf.extend(ids)
        if len(self.buf) >= SHARD_TOKENS:
            self._flush()

    def _flush(self) -> None:
        if not self.buf:
            return
        name = f"{self.split}_{len(self.files):06d}.bin"
        np.asarray(self.buf, dtype=self.dtype).tofile(self.folder / name)
        self.files.append(name)
        self.counts.append(len(self.buf))
        self.buf = []

    def close(self) -> tuple[list[str], list[int]]:
        self._flush()
        return self.files, self.counts


def read_meta(shard_dir: str | os.PathLike) -> dict:
    path = Path(shard_dir) / "meta.json"
    if not path.exists():
        raise UserError(f"{shard_dir}: no token shards (meta.json missing)")
    return json.loads(path.read_text())


def check_matches(meta: dict, shard_dir: Path, tokenizer, tokenizer_sha: str) -> None:
    """The shards must come from this tokenizer; otherwise ids would mean other tokens."""
    if meta.get("tokenizer_sha256") != tokenizer_sha or meta.get("vocab_size") != tokenizer.vocab_size:
        raise UserError(
            f"{shard_dir}: token shards were made with another tokenizer (sha256 {str(meta.get('tokenizer_sha256'))[:12]}, "
            f"vocab {meta.get('vocab_size')}) than RUN/tokenizer/tokenizer.json (sha256 {tokenizer_sha[:12]}, "
            f"vocab {tokenizer.vocab_size}); rerun with --force to rebuild them")


def open_split(shard_dir: str | os.PathLike, meta: dict, split: str) -> list[np.memmap]:
    info = meta["splits"].get(split)
    if info is None:
        raise UserError(f"{shard_dir}: no {split} shards")
    dtype = np.dtype(meta["dtype"])
    out = []
    for name, count in zip(info["files"], info["tokens"]):
        path = Path(shard_dir) / name
        if not path.exists() or path.stat().st_size != count * dtype.itemsize:
            raise UserError(f"{path}: missing or truncated token shard; rerun with --force to rebuild")
        out.append(np.memmap(path, dtype=dtype, mode="r", shape=(count,)))
    return out


@dataclass
class SequenceSampler:
    """Deterministic windows of `seq_len + 1` tokens over the shards of one split.

    Sample k of the run (a global counter, the data position saved in checkpoints) is window
    `perm_e[k mod N]` of epoch e = k // N, where perm_e is a permutation seeded by (seed, e).
    Under DDP the caller gives each rank its own slice of the global sample counter.
    """

    shards: list[np.ndarray]
    seq_len: int
    seed: int

    def __post_init__(self) -> None:
        per_shard = [max(0, (len(s) - 1) // self.seq_len) for s in self.shards]
        self.starts = np.cumsum([0] + per_shard)
        self.num_windows = int(self.starts[-1])
        if self.num_windows == 0:
            total = sum(len(s) for s in self.shards)
            raise UserError(f"train split: {total} tokens is too little for one sequence of {self.seq_len + 1}")
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _window(self, w: int) -> np.ndarray:
        shard = int(np.searchsorted(self.starts, w, side="right") - 1)
        off = (w - int(self.starts[shard])) * self.seq_len
        return self.shards[shard][off: off + self.seq_len + 1]

    def sample(self, k: int) -> np.ndarray:
        epoch, idx = divmod(k, self.num_windows)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
            self._perm_epoch = epoch
        return self._window(int(self._perm[idx]))

    def batch(self, first: int, size: int):
        """Samples first..first+size-1 as (inputs, targets) int64 tensors [size, seq_len]."""
        import torch

        rows = np.stack([self.sample(first + i).astype(np.int64) for i in range(size)])
        t = torch.from_numpy(rows)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token stands for (0 for special tokens): the denominator of bits per byte.

    "▁" stands for one space; <0xNN> byte tokens for one byte.
    """
    n = tokenizer.vocab_size
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if i in tokenizer.special_ids:
            continue
        piece = tokenizer.id_to_token(i) or ""
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out[i] = 1
        else:
            out[i] = len(piece.replace("\u2581", " ").encode("utf-8"))
    return out
