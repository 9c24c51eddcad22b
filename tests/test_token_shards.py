"""Token shards at scale: ranges tokenized in parallel, bounded memory, resumable, same stream."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saessak.pretrain import shards
from saessak.tokenizer.bpe import train_tokenizer
from tests.test_data_build import korean_doc


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    docs = [korean_doc(i, sentences=6) for i in range(400)]
    path = d / "train.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "source": "s", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(docs)), encoding="utf-8")
    tok = train_tokenizer(docs, 600)
    return d, path, docs, tok


def _stream(out, meta, split="train"):
    return np.concatenate([np.asarray(m) for m in shards.open_split(out, meta, split)])


def test_one_range_is_the_whole_split_shuffle(corpus):
    d, path, docs, tok = corpus
    meta = shards.build_shards(d / "one", tok, "sha", {"train": path}, seed=3, workers=1)
    order = np.random.default_rng([3, shards._split_salt("train")]).permutation(len(docs))
    expected = [x for i in order for x in (tok.bos_id, *tok.encode(docs[i]))]
    assert _stream(d / "one", meta).tolist() == expected
    assert meta["splits"]["train"]["docs"] == len(docs) and not (d / "one.work").exists()


def test_ranges_parallel_equal_sequential_and_resume(corpus):
    d, path, docs, tok = corpus
    size = path.stat().st_size
    ranges = shards._ranges(path, size // 5)
    assert len(ranges) >= 5 and ranges[0][0] == 0 and ranges[-1][1] == size
    seq = shards.build_shards(d / "seq", tok, "sha", {"train": path}, seed=1, workers=1, range_bytes=size // 5)
    par = shards.build_shards(d / "par", tok, "sha", {"train": path}, seed=1, workers=2, range_bytes=size // 5)
    a, b = _stream(d / "seq", seq), _stream(d / "par", par)
    assert a.tolist() == b.tolist() and seq["splits"] == par["splits"]
    assert seq["splits"]["train"]["docs"] == len(docs) and len(seq["splits"]["train"]["files"]) == len(ranges)
    assert int((a == tok.bos_id).sum()) == len(docs)  # every document once, whole

    # A build killed after two ranges: the rerun keeps them (not tokenized again) and ends the same.
    work = d / "res.work"
    shards.build_shards(d / "tmp", tok, "sha", {"train": path}, seed=1, workers=1, range_bytes=size // 5)
    work.mkdir()
    (work / "stamp.json").write_text(json.dumps({"tokenizer_sha256": "sha", "seed": 1, "range_bytes": size // 5,
                                                 "inputs": {"train": [str(path), size]}}))
    for i in range(2):
        shards._init_worker(None, tok.bos_id, tok)
        shards._tokenize_range((str(path), *ranges[i], "train", i, 1, "uint16", 512, str(work)))
    before = {p.name: p.stat().st_mtime_ns for p in work.glob("*.bin")}
    calls = []
    real = shards._tokenize_range
    shards._tokenize_range = lambda job: (calls.append(job[4]), real(job))
    try:
        res = shards.build_shards(d / "res", tok, "sha", {"train": path}, seed=1, workers=1, range_bytes=size // 5)
    finally:
        shards._tokenize_range = real
    assert sorted(calls) == list(range(2, len(ranges))) and len(before) == 2
    assert _stream(d / "res", res).tolist() == a.tolist()
