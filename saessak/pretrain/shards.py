"""Token shards for pretraining: the text splits tokenized once into flat numpy memmaps.

Layout (`RUN/pretrain/shards/`, built under a temporary name and renamed whole):

    meta.json           dtype, vocab size, tokenizer sha256, seed, per split: shard files,
                        token counts, document count, UTF-8 bytes of the text
    train_000000.bin    raw little-endian uint16 (vocab <= 65536) or uint32 token ids
    val_000000.bin      ...

Each document is `<s>` followed by its tokens; documents are concatenated whole (never cut
apart or interleaved) in an order shuffled from the seed (within each range of about 64 MB of
text, one shard file per range, the ranges in a seeded order: `build_shards`), so a training
window may span a document boundary, marked by `<s>`, but the stream order itself is deterministic.
`SequenceSampler` cuts each shard into windows of seq_len+1 tokens (inputs and shifted targets,
consecutive windows share one token) and visits them in a seeded permutation per epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saessak.data.split import range_texts, split_ranges
from saessak.errors import UserError
from saessak.io import atomic_dir



def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


RANGE_BYTES = 64 * 2**20  # text per tokenization job: bounds a worker's memory whatever the corpus size


def build_shards(out_dir: str | os.PathLike, tokenizer, tokenizer_sha: str, splits: dict[str, Path],
                 seed: int, batch_docs: int = 512, workers: int | None = None,
                 range_bytes: int = RANGE_BYTES) -> dict:
    """Tokenize each split (`{"train": path, "val": path}`) into shards under `out_dir`, atomically.

    Each split file is cut at line ends (.jsonl) or row-group ends (.parquet) into ranges of about
    `range_bytes`; each range is one job (`workers` at a time, default: the cores), read on its own,
    its documents shuffled with the seed and the range number, and written as one shard file, so
    memory is bounded by the range size, not the corpus. Finished ranges are kept in `<out_dir>.work/` and skipped when a killed build is
    run again; the folder appears only when every range is done. A split of one range gives the
    same token stream as a whole-split shuffle with the same seed.
    """
    out_dir = Path(out_dir)
    dtype = token_dtype(tokenizer.vocab_size)
    meta: dict = {"format": "saessak-token-shards-v1", "dtype": dtype.name, "vocab_size": tokenizer.vocab_size,
                  "tokenizer_sha256": tokenizer_sha, "seed": seed, "bos_id": tokenizer.bos_id, "splits": {}}
    work = out_dir.with_name(out_dir.name + ".work")
    stamp = {"tokenizer_sha256": tokenizer_sha, "seed": seed, "range_bytes": range_bytes,
             "inputs": {s: [str(p), Path(p).stat().st_size] for s, p in splits.items()}}
    if work.exists() and _read_json(work / "stamp.json") != stamp:
        shutil.rmtree(work)  # another tokenizer, seed or input: nothing there can be reused
    work.mkdir(parents=True, exist_ok=True)
    (work / "stamp.json").write_text(json.dumps(stamp))
    jobs = []
    for split, path in splits.items():
        for i, (a, b) in enumerate(_ranges(Path(path), range_bytes)):
            jobs.append((str(path), a, b, split, i, seed, dtype.name, batch_docs, str(work)))
    todo = [j for j in jobs if not (work / f"{j[3]}_{j[4]:06d}.json").exists()]
    workers = min(workers or os.cpu_count() or 1, len(todo))
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(
                workers, initializer=_init_worker, initargs=(tokenizer.hf.to_str(), tokenizer.bos_id)) as pool:
            list(pool.imap_unordered(_tokenize_range, todo))
    else:
        _init_worker(None, tokenizer.bos_id, tokenizer)
        for job in todo:
            _tokenize_range(job)
    with atomic_dir(out_dir) as tmp:
        for split, path in splits.items():
            done = [json.loads((work / f"{split}_{j[4]:06d}.json").read_text()) for j in jobs if j[3] == split]
            done = [d for d in done if d["tokens"]]
            if not done:
                raise UserError(f"{path}: the {split} split has no text")
            # Ranges in a seeded order, documents shuffled inside each: the stream mixes the corpus.
            order = np.random.default_rng([seed, _split_salt(split), len(done)]).permutation(len(done)) \
                if len(done) > 1 else [0]
            files, counts = [], []
            for k, i in enumerate(order):
                name = f"{split}_{k:06d}.bin"
                os.replace(work / done[i]["file"], tmp / name)
                files.append(name)
                counts.append(done[i]["tokens"])
            meta["splits"][split] = {"files": files, "tokens": counts, "docs": sum(d["docs"] for d in done),
                                     "bytes": sum(d["bytes"] for d in done)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return meta


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _ranges(path: Path, range_bytes: int) -> list[tuple[int, int]]:
    """Pieces of about `range_bytes` of a split file: byte ranges at line ends (.jsonl) or row-group
    ranges (.parquet), read by `range_texts` (saessak/data/split.py)."""
    return split_ranges(path, range_bytes)


_TOK: dict = {}


def _init_worker(tokenizer_json: str | None, bos_id: int, tokenizer=None) -> None:
    if tokenizer is None:
        from tokenizers import Tokenizer as HFTokenizer

        from saessak.tokenizer.bpe import Tokenizer

        tokenizer = Tokenizer(HFTokenizer.from_str(tokenizer_json))
    _TOK.update(tok=tokenizer, bos=bos_id)


def _tokenize_range(job) -> None:
    """One range of one split -> WORK/<split>_<range>.bin and, last, its .json (the job is done)."""
    path, a, b, split, index, seed, dtype_name, batch_docs, work = job
    tok, bos = _TOK["tok"], _TOK["bos"]
    texts = [t for t in range_texts(path, a, b) if t.strip()]
    rng_key = [seed, _split_salt(split)] if index == 0 else [seed, _split_salt(split), index]
    order = np.random.default_rng(rng_key).permutation(len(texts))
    name = f"{split}_{index:06d}.bin"
    n_tokens = n_bytes = 0
    with open(Path(work) / (name + ".tmp"), "wb") as out:
        for start in range(0, len(order), batch_docs):
            chunk = [texts[i] for i in order[start:start + batch_docs]]
            n_bytes += sum(len(t.encode("utf-8")) for t in chunk)
            ids = [x for e in tok.encode_batch(chunk) for x in (bos, *e)]
            np.asarray(ids, dtype=np.dtype(dtype_name)).tofile(out)
            n_tokens += len(ids)
    os.replace(Path(work) / (name + ".tmp"), Path(work) / name)
    (Path(work) / f"{split}_{index:06d}.json").write_text(json.dumps(
        {"file": name, "tokens": n_tokens, "docs": len(texts), "bytes": n_bytes}))


def _split_salt(split: str) -> int:
    return int.from_bytes(hashlib.sha256(split.encode()).digest()[:4], "little")


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
