"""The corpus build as datatrove stages: what runs in each task, and how the stages are chained.

Stages (T = --tasks; every stage's tasks are independent and resumable through datatrove's
completion markers in WORK/logs/<stage>/completions):

    read     T   sources -> NFC + control chars + spaces, long documents cut -> clean/NNNNN.jsonl;
                 per-source line hashes, partitioned by hash -> lines/PPP/NNNNN.npz
    boiler   16  per partition (1 when T = 1): lines in >= max(5, 1 %) of a source's documents -> boiler/PPP.npz
    filter   T   line + document filters, PII masking -> filtered/NNNNN.jsonl; exact-dedup signatures
    exact    1   datatrove ExactFindDedups
    unique   T   datatrove ExactDedupFilter -> unique/NNNNN.jsonl; Korean MinHash signatures
    buckets  16  datatrove MinhashDedupBuckets
    cluster  1   datatrove MinhashDedupCluster
    write    T   datatrove MinhashDedupFilter -> split by hash -> out/{train,val}/NNNNN.jsonl

Each task writes its counts to reports/<stage>/NNNNN.json; build.py sums them into the data card,
so every count is exact whatever the number of tasks. Task files are written under a temporary
name and renamed when the task ends, so a killed task leaves nothing a rerun would trust.
"""

from __future__ import annotations

import json
import os
from array import array
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import xxhash
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature,
                                                  ExactFindDedups)
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import TextNormConfig, simplify_text
from datatrove.utils.word_tokenizers import WordTokenizer

from saessak import hangul
from saessak.data.clean import CleanConfig, document_drop_reason, filter_lines, normalize, split_long
from saessak.data.dedup import MINHASH, char_shingles, exact_content
from saessak.data.ingest import Door
from saessak.data.source_report import SourceReport
from saessak.data.split import split_score
from saessak.io import write_json

PARTITIONS = 16  # line-count partitions, like MinHash buckets: memory per task is 1/16 of the distinct lines


def _xxh64(s: str) -> int:
    return xxhash.xxh64_intdigest(s.encode("utf-8"))


class TaskFile:
    """One task's output file: written under a temporary name, renamed into place on `close`."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        self.f = open(self.tmp, "w", encoding="utf-8")

    def write(self, obj: dict) -> None:
        self.f.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.f.close()
        os.replace(self.tmp, self.path)


def task_path(work: Path, folder: str, rank: int, suffix: str = ".jsonl") -> Path:
    return work / folder / f"{rank:05d}{suffix}"


def save_report(work: Path, stage: str, rank: int, obj: Any) -> None:
    write_json(task_path(work, f"reports/{stage}", rank, ".json"), obj)


def read_reports(work: Path, stage: str) -> list[Any]:
    folder = work / "reports" / stage
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


# ----------------------------------------------------------------------------- steps


class ReadSources(PipelineStep):
    """Reader: the units (files, pages, datasets) of this task, cleaned and cut, as Documents.

    `units` is the whole plan [(source index, unit, bytes)]; task `rank` takes a contiguous slice,
    so task order is source order and a rerun reads exactly the same documents."""

    type = "📖 - READER"
    name = "🇰🇷 saessak sources"

    def __init__(self, work: str, sources: list, units: list, max_docs: int | None, cfg: CleanConfig):
        super().__init__()
        self.work, self.sources, self.units, self.max_docs, self.cfg = Path(work), sources, units, max_docs, cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        n = len(self.units)
        mine = self.units[rank * n // world_size : (rank + 1) * n // world_size]
        reports: dict[int, SourceReport] = {}
        for i, unit, _ in mine:
            src = self.sources[i]
            report = reports.setdefault(i, src.report())
            for raw in src.read(unit, report, self.max_docs):
                report.documents_in += 1
                report.characters_in += len(raw.text) if raw.chars_in is None else raw.chars_in
                self.stat_update("documents_in")
                pieces = split_long(normalize(raw.text), self.cfg.max_doc_chars)
                for k, piece in enumerate(pieces):
                    doc_id = raw.id if len(pieces) == 1 else f"{raw.id}#p{k}"
                    yield Document(text=piece, id=f"{src.name}:{doc_id}", metadata={"src": i})
        save_report(self.work, "read", rank, {str(i): r.to_json() for i, r in reports.items()})


class LineCounts(PipelineStep):
    """Counts, per source, in how many documents each line occurs (as 64-bit hashes), written by hash
    partition so the `boiler` stage merges one partition per task."""

    type = "📊 - STATS"
    name = "🇰🇷 line counts"

    def __init__(self, work: str, partitions: int):
        super().__init__()
        self.work, self.partitions = Path(work), partitions

    def run(self, data, rank: int = 0, world_size: int = 1):
        hashes: dict[int, array] = {}
        docs: Counter = Counter()
        for doc in data:
            src = doc.metadata["src"]
            docs[src] += 1
            hashes.setdefault(src, array("Q")).extend({_xxh64(line) for line in doc.text.split("\n") if line})
            yield doc
        parts: list[dict[str, np.ndarray]] = [{} for _ in range(self.partitions)]
        for src, arr in hashes.items():
            uniq, counts = np.unique(np.frombuffer(arr, dtype=np.uint64), return_counts=True)
            part = uniq % np.uint64(self.partitions)
            for p in range(self.partitions):
                sel = part == p
                parts[p][f"h{src}"], parts[p][f"c{src}"] = uniq[sel], counts[sel].astype(np.uint32)
        for p in range(self.partitions):
            path = task_path(self.work, f"lines/{p:03d}", rank, ".npz")
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_name(path.name + ".tmp"), "wb") as f:
                np.savez(f, **parts[p])
            os.replace(path.with_name(path.name + ".tmp"), path)
        save_report(self.work, "pieces", rank, {str(k): v for k, v in docs.items()})


class FrequentLines(PipelineStep):
    """Boilerplate: the lines of one hash partition found in at least max(min_docs, min_share x documents)
    documents of their source (the rule of clean.frequent_lines, counted over all tasks)."""

    type = "📊 - STATS"
    name = "🇰🇷 boilerplate lines"

    def __init__(self, work: str, cfg: CleanConfig):
        super().__init__()
        self.work, self.cfg = Path(work), cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        docs: Counter = Counter()
        for r in read_reports(self.work, "pieces"):
            docs.update({int(k): v for k, v in r.items()})
        found: dict[int, list] = {}
        for path in sorted((self.work / "lines" / f"{rank:03d}").glob("*.npz")):
            with np.load(path) as z:
                for key in z.files:
                    if key.startswith("h"):
                        found.setdefault(int(key[1:]), []).append((z[key], z["c" + key[1:]]))
        out = {}
        for src, chunks in found.items():
            h = np.concatenate([c[0] for c in chunks])
            c = np.concatenate([c[1] for c in chunks]).astype(np.int64)
            uniq, inv = np.unique(h, return_inverse=True)
            totals = np.bincount(inv, weights=c)
            threshold = max(self.cfg.boilerplate_min_docs, self.cfg.boilerplate_min_share * docs[src])
            out[f"h{src}"] = uniq[totals >= threshold]
        path = task_path(self.work, "boiler", rank, ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".tmp"), "wb") as f:
            np.savez(f, **out)
        os.replace(path.with_name(path.name + ".tmp"), path)
        return iter(())


class _HashedLines:
    """A set of lines given by their hashes (clean.filter_lines asks `line in boilerplate`)."""

    def __init__(self, hashes: set[int]):
        self.hashes = hashes

    def __contains__(self, line: str) -> bool:
        return _xxh64(line) in self.hashes


class KoreanFilter(PipelineStep):
    """Line filters (short, repeated, boilerplate), document filters (empty, short, low Hangul share)
    and PII masking through the door into training; counts per source."""

    type = "🔻 - FILTER"
    name = "🇰🇷 Korean filters + PII"

    def __init__(self, work: str, cfg: CleanConfig, keep_pii: bool):
        super().__init__()
        self.work, self.cfg, self.keep_pii = Path(work), cfg, keep_pii

    def run(self, data, rank: int = 0, world_size: int = 1):
        boiler: dict[int, set[int]] = {}
        for path in sorted((self.work / "boiler").glob("*.npz")):
            with np.load(path) as z:
                for key in z.files:
                    boiler.setdefault(int(key[1:]), set()).update(int(x) for x in z[key])
        door = Door(keep_pii=self.keep_pii, stage="data", warn=lambda m: None)  # build.py warns once
        counts: dict[int, dict[str, Counter]] = {}
        for doc in data:
            src = doc.metadata["src"]
            c = counts.setdefault(src, {"lines_dropped": Counter(), "documents_dropped": Counter(),
                                        "candidates": Counter()})
            text = filter_lines(doc.text, _HashedLines(boiler.get(src, set())), self.cfg, c["lines_dropped"])
            reason = document_drop_reason(text, self.cfg)
            if reason:
                c["documents_dropped"][reason] += 1
                self.stat_update("dropped_" + reason)
                continue
            masked, pii = door.scan(text)  # counted in the card only if the document is written
            c["candidates"]["n"] += 1
            doc.text = masked
            doc.metadata["pii"] = pii
            yield doc
        save_report(self.work, "filter", rank, {str(k): {n: dict(v) for n, v in c.items()} for k, c in counts.items()})


class ShardWriter(PipelineStep):
    """Writes the task's documents to WORK/<folder>/NNNNN.jsonl (renamed into place at the end) and
    passes them on."""

    type = "💽 - WRITER"
    name = "🇰🇷 task shard"

    def __init__(self, work: str, folder: str):
        super().__init__()
        self.work, self.folder = Path(work), folder

    def run(self, data, rank: int = 0, world_size: int = 1):
        out = TaskFile(task_path(self.work, self.folder, rank))
        for doc in data:
            out.write({"id": doc.id, "text": doc.text, "meta": doc.metadata})
            yield doc
        out.close()


class ShardReader(PipelineStep):
    """Reads WORK/<folder>/NNNNN.jsonl of this task (written by ShardWriter in an earlier stage)."""

    type = "📖 - READER"
    name = "🇰🇷 task shard"

    def __init__(self, work: str, folder: str):
        super().__init__()
        self.work, self.folder = Path(work), folder

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        with open(task_path(self.work, self.folder, rank), encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                yield Document(text=d["text"], id=d["id"], metadata=d["meta"])


class Tally(PipelineStep):
    """Documents per source at this point of the pipeline (dedup counts are differences of tallies)."""

    type = "📊 - STATS"
    name = "🇰🇷 tally"

    def __init__(self, work: str, label: str):
        super().__init__()
        self.work, self.label = Path(work), label

    def run(self, data, rank: int = 0, world_size: int = 1):
        n: Counter = Counter()
        for doc in data:
            n[str(doc.metadata["src"])] += 1
            yield doc
        save_report(self.work, self.label, rank, dict(n))


class SplitWriter(PipelineStep):
    """The final shards: each document to train or val by its hash (split.split_score), as
    {"id", "source", "text"} lines in WORK/out/<split>/NNNNN.jsonl, with the card's output counts."""

    type = "💽 - WRITER"
    name = "🇰🇷 train/val shards"

    def __init__(self, work: str, source_names: list[str], seed: int, val_fraction: float):
        super().__init__()
        self.work, self.names, self.seed, self.val_fraction = Path(work), source_names, seed, val_fraction

    def run(self, data, rank: int = 0, world_size: int = 1):
        files = {s: TaskFile(task_path(self.work, f"out/{s}", rank)) for s in ("train", "val")}
        lines = {"train": 0, "val": 0}
        per_source: dict[str, dict[str, Any]] = {}
        best = None  # the lowest-scored train document: val's fallback when no document scores below
        for doc in data:
            src = str(doc.metadata["src"])
            score = split_score(doc.text, self.seed)
            split = "val" if score < self.val_fraction else "train"
            if split == "train" and (best is None or score < best[0]):
                best = (score, lines["train"], len(doc.text))
            files[split].write({"id": doc.id, "source": self.names[int(src)], "text": doc.text})
            lines[split] += 1
            s = per_source.setdefault(src, {"documents_out": 0, "characters_out": 0, "hangul_syllables_out": 0,
                                            "pii": Counter(), "val_documents": 0, "val_characters": 0})
            s["documents_out"] += 1
            s["characters_out"] += len(doc.text)
            s["hangul_syllables_out"] += hangul.syllables(doc.text)
            s["pii"].update(doc.metadata.get("pii") or {})
            if split == "val":
                s["val_documents"] += 1
                s["val_characters"] += len(doc.text)
            self.stat_update("written_" + split)
        for f in files.values():
            f.close()
        save_report(self.work, "write", rank, {"sources": {k: {**v, "pii": dict(v["pii"])} for k, v in per_source.items()},
                                               "lines": lines, "best_train": best})


# ----------------------------------------------------------------------------- Korean MinHash


class CharTokenizer(WordTokenizer):
    """Every character is a 'word' (Korean shingles are character n-grams; see dedup.py)."""

    def word_tokenize(self, text: str) -> list[str]:
        return list(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


class KoreanMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash stage 1 with the Korean character shingles of dedup.py, hashed with numpy,
    and the signature computed in blocks (bounded memory for a long document)."""


    name = "🎯 MinHash stage 1 (Korean character shingles)"

    def get_shingles(self, text: str) -> np.ndarray:
        return char_shingles(simplify_text(text, self.config.norm_config), self.config.n_grams)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        # Multiply-shift permutations (odd a, wrapping 64-bit a*x + b, top 32 bits) on datatrove's seeded
        # parameters: a universal family like its (a*x + b) mod (2^61 - 1), without the 64-bit modulo
        # that made signatures the slowest step of the build (measured: docs/BENCHMARKS.md).
        a, b = self.parameters
        a = a | np.uint64(1)
        mins = np.full(a.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for s in range(0, len(shingles), 4096):
                np.minimum(mins, ((shingles[s : s + 4096] * a + b) >> np.uint64(32)).min(axis=0), out=mins)
        return [x.tolist() for x in np.split(mins, self.config.num_buckets)]


def minhash_config(seed: int) -> MinhashConfig:
    return MinhashConfig(n_grams=MINHASH["n_grams"], num_buckets=MINHASH["num_buckets"],
                         hashes_per_bucket=MINHASH["hashes_per_bucket"], seed=seed,
                         norm_config=TextNormConfig(norm_unicode_diacritics=False),
                         hash_config=HashConfig(precision=MINHASH["hash_bits"]))


EXACT = ExactDedupConfig(content_getter=exact_content, hash_config=HashConfig(precision=64))


# ----------------------------------------------------------------------------- the stages


def stages(work: Path, *, sources: list, units: list, tasks: int, max_docs: int | None, cfg: CleanConfig,
           keep_pii: bool, seed: int, val_fraction: float) -> list[tuple[str, list, int]]:
    """[(stage name, datatrove pipeline, number of tasks)] in the order they run."""
    w = str(work)
    mh = minhash_config(seed)
    names = [s.name for s in sources]
    partitions = PARTITIONS if tasks > 1 else 1  # one task's corpus is small: one partition
    return [
        ("read", [ReadSources(w, sources, units, max_docs, cfg), LineCounts(w, partitions), ShardWriter(w, "clean")],
         tasks),
        ("boiler", [FrequentLines(w, cfg)], partitions),
        ("filter", [ShardReader(w, "clean"), KoreanFilter(w, cfg, keep_pii), ShardWriter(w, "filtered"),
                    ExactDedupSignature(f"{w}/exact_sigs", EXACT)], tasks),
        ("exact", [ExactFindDedups(f"{w}/exact_sigs", f"{w}/exact_dups", EXACT)], 1),
        ("unique", [ShardReader(w, "filtered"), ExactDedupFilter(f"{w}/exact_dups", EXACT), Tally(w, "unique"),
                    ShardWriter(w, "unique"), KoreanMinhashSignature(f"{w}/mh_sigs", mh, language=CharTokenizer())],
         tasks),
        ("buckets", [MinhashDedupBuckets(f"{w}/mh_sigs", f"{w}/mh_buckets", config=mh)], mh.num_buckets),
        ("cluster", [MinhashDedupCluster(f"{w}/mh_buckets", f"{w}/mh_remove", config=mh)], 1),
        ("write", [ShardReader(w, "unique"), MinhashDedupFilter(f"{w}/mh_remove"),
                   SplitWriter(w, names, seed, val_fraction)], tasks),
    ]
