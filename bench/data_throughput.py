"""Corpus pipeline throughput on the default corpus (debian-ko + kolaw, from the cache).

Measures, on this machine:
  - `pii scan` alone (find_pii over the cleaned corpus text), MB/s of UTF-8 text;
  - clean + PII mask + dedup (the per-document work of `data build` after HTML extraction), MB/s;
  - the full `saessak data build` wall time (extraction, everything, writing the folder);
  - side by side, what a user would otherwise write: a `\\b`-bounded regex PII scan (fast, but
    Hangul particles hide identifiers from it) with its recall on labelled Korean sentences, and
    a pure-Python MinHash (per-shingle loops) against the numpy one.

Usage: python bench/data_throughput.py [--quick | --smoke]     (last stdout line: one JSON object)
`--smoke` runs every step on a few documents in seconds (the test suite runs it); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)
from saessak.data.build import build_corpus  # noqa: E402
from saessak.data.cache import fetch_all  # noqa: E402
from saessak.data.clean import CleanConfig, document_drop_reason, filter_lines, frequent_lines, normalize  # noqa: E402
from bench._lib.inmemory_build import MinHashLSH, exact_key  # noqa: E402  (the numpy MinHash before datatrove)
from saessak.data.sources import DEFAULT_SOURCES, SOURCES  # noqa: E402
from saessak.pii import find_pii, mask_pii  # noqa: E402

# The regexes a hurried user would write: \b boundaries, which Hangul particles defeat.
NAIVE = [re.compile(p) for p in (
    r"\b\d{6}-?[1-4]\d{6}\b", r"\b01[016789]-?\d{3,4}-?\d{4}\b", r"\b\d{4}-\d{4}-\d{4}-\d{4}\b",
    r"\b[\w.+-]+@[\w-]+\.[\w.]+\b", r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b",
)]


def naive_scan(text: str) -> list[tuple[int, int]]:
    return [m.span() for p in NAIVE for m in p.finditer(text)]


def labelled_sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(sentence, identifier) pairs: identifiers with particles attached, as Korean text has them."""
    from tests.pii_numbers import card, rrn

    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            ident = f"010-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        elif kind == 1:
            ident = rrn(f"{rng.randint(60, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}", "12"[i % 2])
        elif kind == 2:
            ident = card("".join(rng.choice("0123456789") for _ in range(15)), sep="-")
        elif kind == 3:
            ident = f"user{i}@example.com"
        else:
            ident = f"192.168.{rng.randint(0, 255)}.{rng.randint(10, 254)}"
        particle = rng.choice(["로", "으로", "이고", "에서", "를", "입니다", " 입니다", "."])
        out.append((f"담당자에게 받은 정보는 {ident}{particle} 확인 부탁드립니다.", ident))
    return out


def recall(scan, pairs) -> float:
    hit = 0
    for text, ident in pairs:
        s = text.index(ident)
        hit += any(a == s and b == s + len(ident) for a, b in scan(text))
    return hit / len(pairs)


def python_minhash(text: str, num_perm: int = 128, k: int = 5) -> list[int]:
    """Textbook pure-Python MinHash: one hash per shingle and permutation."""
    shingles = {hash(text[i:i + k]) & 0xFFFFFFFFFFFFFFFF for i in range(max(1, len(text) - k + 1))}
    rng = random.Random(0)
    params = [(rng.randrange(1, 2**61 - 1), rng.randrange(0, 2**61 - 1)) for _ in range(num_perm)]
    p = 2**61 - 1
    return [min((a * s + b) % p for s in shingles) for a, b in params]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred documents per source (under a minute)")
    ap.add_argument("--smoke", action="store_true", help="every step on a few documents, in seconds (tests)")
    add_record_args(ap)
    args = ap.parse_args()
    max_docs = 20 if args.smoke else 300 if args.quick else None
    n_labelled, n_dense, n_minhash = (50, 200, 5) if args.smoke else (500, 20000, 40)
    fetch_all(log=lambda m: None)

    # 1. extraction (HTML -> paragraphs), kept out of the throughput figures below
    t0 = time.perf_counter()
    raw = []
    for name in DEFAULT_SOURCES:
        src = SOURCES[name]
        rep = src.report()
        raw.extend(d.text for d in src.documents(rep, max_docs))
    extract_s = time.perf_counter() - t0
    raw_mb = sum(len(t.encode("utf-8")) for t in raw) / 1e6

    # 2. clean + PII + dedup, as the build does it
    cfg = CleanConfig()
    t0 = time.perf_counter()
    dropped: Counter = Counter()
    docs = [normalize(t) for t in raw]
    boiler = frequent_lines(docs, cfg)
    docs = [filter_lines(t, boiler, cfg, dropped) for t in docs]
    docs = [t for t in docs if document_drop_reason(t, cfg) is None]
    clean_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    masked = [mask_pii(t)[0] for t in docs]
    mask_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lsh, seen, kept = MinHashLSH(), set(), 0
    for t in masked:
        key = exact_key(t)
        if key not in seen:
            seen.add(key)
            kept += lsh.add_if_new(t)
    dedup_s = time.perf_counter() - t0
    pipeline_s = clean_s + mask_s + dedup_s

    # 3. pii scan alone over the cleaned corpus (one text, as `saessak pii scan FILE` reads it)
    corpus = "\n\n".join(docs)
    corpus_mb = len(corpus.encode("utf-8")) / 1e6
    reps = 1 if args.quick or args.smoke else 3
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        n_entities = len(find_pii(corpus))
    scan_s = (time.perf_counter() - t0) / reps
    scan_cpu_s = (time.process_time() - c0) / reps
    t0 = time.perf_counter()
    naive_scan(corpus)
    naive_s = time.perf_counter() - t0

    pairs = labelled_sentences(n_labelled)
    # worst case for speed: every sentence carries an identifier
    dense = "\n".join(t for t, _ in labelled_sentences(n_dense, seed=1))
    dense_mb = len(dense.encode("utf-8")) / 1e6
    t0 = time.perf_counter()
    n_dense = len(find_pii(dense))
    dense_s = time.perf_counter() - t0
    ours_recall = recall(lambda t: [(e.start, e.end) for e in find_pii(t)], pairs)
    naive_recall = recall(naive_scan, pairs)

    # 4. MinHash: numpy vs pure Python on the same documents
    sample = masked[:n_minhash]
    t0 = time.perf_counter()
    for t in sample:
        lsh.signature(t)
    np_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in sample:
        python_minhash(t)
    py_s = time.perf_counter() - t0

    # 5. the full build, as the speedrun runs it
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        build_corpus(Path(tmp) / "data", max_docs=max_docs, log=lambda m: None)
        build_s = time.perf_counter() - t0
        build_cpu_s = time.process_time() - c0

    result = {
        "quick": args.quick,
        "smoke": args.smoke,
        "documents_in": len(raw),
        "documents_kept": kept,
        "extracted_mb": round(raw_mb, 3),
        "extract_s": round(extract_s, 2),
        "pipeline_clean_pii_dedup_mb_s": round(raw_mb / pipeline_s, 2),
        "clean_s": round(clean_s, 2), "pii_mask_s": round(mask_s, 2), "dedup_s": round(dedup_s, 2),
        "pii_scan_mb": round(corpus_mb, 3),
        "pii_scan_mb_s": round(corpus_mb / scan_s, 2),
        "pii_scan_mb_per_cpu_s": round(corpus_mb / scan_cpu_s, 2),  # less sensitive to a shared machine
        "pii_entities_in_corpus": n_entities,
        "naive_regex_scan_mb_s": round(corpus_mb / naive_s, 2),
        "pii_scan_dense_mb_s": round(dense_mb / dense_s, 2),
        "pii_dense_entities_per_mb": round(n_dense / dense_mb),
        "pii_recall_with_particles": round(ours_recall, 3),
        "naive_regex_recall_with_particles": round(naive_recall, 3),
        "minhash_numpy_docs_s": round(len(sample) / np_s, 1),
        "minhash_pure_python_docs_s": round(len(sample) / py_s, 1),
        "full_build_s": round(build_s, 2),
        "full_build_cpu_s": round(build_cpu_s, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    for k, v in result.items():
        print(f"{k:40s} {v}")
    emit("data_throughput", result, args)
    return 0


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    rows = [
        ["default corpus read", f"{r['documents_in']:,} documents, {r['extracted_mb']:.2f} MB extracted text"
                                + (" (--quick: a few hundred per source)" if r.get("quick") else "")],
        ["kept after filters and dedup", f"{r['documents_kept']:,} documents"],
        [f"`pii scan` (find_pii over the cleaned corpus, {r['pii_scan_mb']:.2f} MB)",
         f"**{r['pii_scan_mb_s']:.1f} MB/s wall**, {r['pii_scan_mb_per_cpu_s']:.1f} MB per CPU-second (target >= 5 MB/s)"],
        ["same text, `\\b`-bounded regexes a user would write", f"{r['naive_regex_scan_mb_s']:.1f} MB/s wall"],
        [f"`pii scan`, worst case: every sentence holds an identifier ({r['pii_dense_entities_per_mb']:,} entities/MB)",
         f"{r['pii_scan_dense_mb_s']:.1f} MB/s wall"],
        ["recall on labelled sentences with particles attached (`010-…로`, `…이고`)",
         f"saessak {r['pii_recall_with_particles']:.3f}, `\\b` regexes {r['naive_regex_recall_with_particles']:.3f}"],
        ["clean + PII mask + dedup (after HTML extraction)",
         f"{r['pipeline_clean_pii_dedup_mb_s']:.2f} MB/s wall (clean {r['clean_s']:.2f} s, mask {r['pii_mask_s']:.2f} s, "
         f"dedup {r['dedup_s']:.2f} s)"],
        ["HTML extraction", f"{r['extract_s']:.1f} s wall"],
        ["MinHash signatures, numpy vs pure-Python loops",
         f"{r['minhash_numpy_docs_s']:,.0f} vs {r['minhash_pure_python_docs_s']:,.0f} documents/s"],
        ["full `saessak data build` (default corpus, cached)",
         f"**{r['full_build_s']:.1f} s wall**, {r['full_build_cpu_s']:.1f} CPU-s (target < 2 min)"],
    ]
    return md_table(["figure", "value"], rows)


if __name__ == "__main__":
    raise SystemExit(main())
