"""`saessak data build` at scale: the datatrove pipeline against the in-memory build it replaced.

A synthetic corpus of Korean-like documents: 6-14 paragraphs each, drawn from the cached default
sources (debian-ko help pages, the constitution; with --smoke, from generated sentences), written
as JSONL files of about 16 MB. Known injections:
  - PII: every other document gets one identifier, the types in turn (all 11 types of
    saessak.pii, valid check digits, labelled where the rules need it; tests/pii_numbers.py);
  - near duplicates: 20 % of the documents are copies of an earlier one with 0.5 % of their
    Hangul syllables replaced (the identifier line left as it is).
Measured per run (a subprocess; peak RSS is the sum over its process tree, sampled every 0.2 s):
MB/s of input, peak RSS, PII recall (an identifier counts as found when the document is written
and the identifier is no longer in it), near-duplicate recall (pairs of which only one is
written), false removals (documents with no injected twin that are missing from the output:
an upper bound, a filter could also drop them).

    .venv/bin/python bench/data_scale.py                 # 64 MiB (1 and 2 workers) and 256 MiB (2), old at both
    .venv/bin/python bench/data_scale.py --sizes-mb 256,1024 --old-max-mb 256 --workers-at-largest 1,2   # the 1 GB record
    .venv/bin/python bench/data_scale.py --smoke         # 2 MB, seconds (the test suite runs it)

At 1 GiB a run needs about 6 GB of free disk in $TMPDIR (the input, the build's work folder of about
three copies, the output; each run's folders are removed before the next) and about 30 minutes of
both cores of a 2-core machine. The generator and the scoring hold ids and identifiers, not the
text (TWIN_POOL), so the bench's own memory stays small beside the build's.

The last stdout line is one JSON object (smoke, runs, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)
from saessak.io import md_table  # noqa: E402
from saessak.pii import PII_TYPES  # noqa: E402
from tests.pii_numbers import random_pii  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FILE_BYTES = 16 * 2**20
NEAR_SHARE, EDIT_SHARE = 0.20, 0.005
# Originals a near duplicate may copy: the first ones, then a uniform reservoir sample of all of them,
# so generating 1 GB holds about 100 MB of text, not the corpus (below the cap nothing changes).
TWIN_POOL = 50_000
RSS_TARGET_MB, PII_TARGET = 2048, 0.99  # issue 16's bounds


def paragraph_pool(smoke: bool) -> list[str]:
    if not smoke:
        from saessak.data import cache
        from saessak.data.sources import DEFAULT_SOURCES, SOURCES

        if cache.deb_is_cached("libreoffice-help-ko") and cache.konlpy_is_cached():
            pool = []
            for name in DEFAULT_SOURCES:
                src = SOURCES[name]
                for doc in src.documents(src.report(), None):
                    pool.extend(p.strip() for p in doc.text.split("\n") if len(p.strip()) >= 20)
            return sorted(set(pool))
        print("[bench] default sources not cached (saessak data fetch): generated sentences instead", file=sys.stderr)
    from tests.test_data_build import korean_doc

    return [korean_doc(i, sentences=3) for i in range(20_000)]


def _edit(text: str, rng: random.Random) -> str:
    """0.5 % of the Hangul syllables replaced by other syllables."""
    chars = list(text)
    hangul = [i for i, c in enumerate(chars) if "가" <= c <= "힣"]
    for i in rng.sample(hangul, max(1, int(len(hangul) * EDIT_SHARE))) if hangul else []:
        chars[i] = chr(0xAC00 + rng.randrange(11172))
    return "".join(chars)


def generate(folder: Path, target_bytes: int, pool: list[str], seed: int = 0) -> dict:
    """Writes the corpus; returns the truth: per document id its identifier and its twin. Memory: the
    truth (ids and identifiers) and at most TWIN_POOL originals' text, whatever the size."""
    rng = random.Random(seed)
    reservoir_rng = random.Random(seed + 1)  # its own stream: below the cap, the corpus is what it was
    folder.mkdir(parents=True)
    truth: dict = {"pii": {}, "pairs": [], "singles": []}
    originals: list[tuple[str, str, str]] = []  # (id, body, pii line): candidates for a twin
    n_originals = 0
    original_ids: list[str] = []
    written, file_no, n_docs = 0, 0, 0
    f, f_bytes, line = None, 0, 0
    while written < target_bytes:
        if f is None or f_bytes >= FILE_BYTES:
            if f:
                f.close()
            name = f"part-{file_no:05d}.jsonl"
            f, f_bytes, line, file_no = open(folder / name, "w", encoding="utf-8"), 0, 0, file_no + 1
        line += 1
        doc_id = f"input:{folder}:{name}:{line}"
        if originals and rng.random() < NEAR_SHARE:
            orig_id, body, pii_line = rng.choice(originals)
            body = _edit(body, rng)
            truth["pairs"].append([orig_id, doc_id])
            entity = truth["pii"].get(orig_id)
        else:
            body = "\n".join(rng.sample(pool, rng.randint(6, 14)))
            pii_line, entity = "", None
            if n_docs % 2 == 0:
                t = PII_TYPES[(n_docs // 2) % len(PII_TYPES)]
                label, value, suffix = random_pii(rng, t)
                pii_line = f"담당자 정보는 {label}{value}{suffix} 참고하시기 바랍니다."
                entity = [t, value]
            n_originals += 1
            original_ids.append(doc_id)
            if len(originals) < TWIN_POOL:
                originals.append((doc_id, body, pii_line))
            elif (k := reservoir_rng.randrange(n_originals)) < TWIN_POOL:
                originals[k] = (doc_id, body, pii_line)
        if entity:
            truth["pii"][doc_id] = entity
        text = body + ("\n" + pii_line if pii_line else "")
        data = json.dumps({"text": text}, ensure_ascii=False) + "\n"
        f.write(data)
        f_bytes += len(data.encode("utf-8"))
        written += len(data.encode("utf-8"))
        n_docs += 1
    f.close()
    paired = {d for p in truth["pairs"] for d in p}
    truth["singles"] = [d for d in original_ids if d not in paired]
    truth["documents"], truth["bytes"] = n_docs, written
    return truth


def _tree_rss(pid: int) -> int:
    """RSS bytes of `pid` and all its descendants."""
    total, todo = 0, [pid]
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    while todo:
        q = todo.pop()
        todo.extend(children.get(q, []))
        try:
            with open(f"/proc/{q}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def run_measured(cmd: list[str]) -> tuple[float, int, float]:
    """(wall seconds, peak tree RSS bytes, CPU seconds of it and its children) of a subprocess."""
    import resource

    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0 = ru.ru_utime + ru.ru_stime
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    err = proc.stderr.read()
    proc.wait()
    th.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, peak[0], ru.ru_utime + ru.ru_stime - c0


def score(out: Path, truth: dict) -> dict:
    """Read as a stream: the ids written are kept, not their text (bounded memory at 1 GB and more)."""
    written: set[str] = set()
    found = total = 0
    by_type: dict[str, list[int]] = {}
    for split in ("train", "val"):
        with open(out / f"{split}.jsonl", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                written.add(d["id"])
                if d["id"] in truth["pii"]:
                    t, value = truth["pii"][d["id"]]
                    hit = value not in d["text"]
                    found += hit
                    total += 1
                    by_type.setdefault(t, [0, 0])
                    by_type[t][0] += hit
                    by_type[t][1] += 1
    pairs = [p for p in truth["pairs"] if p[0] in written or p[1] in written]
    caught = sum(1 for a, b in pairs if not (a in written and b in written))
    missing = sum(1 for d in truth["singles"] if d not in written)
    return {"documents_out": len(written), "pii_recall": round(found / max(1, total), 4), "pii_checked": total,
            "pii_recall_by_type": {t: round(h / n, 4) for t, (h, n) in sorted(by_type.items())},
            "near_dup_recall": round(caught / max(1, len(pairs)), 4), "near_dup_pairs": len(pairs),
            "false_removal_rate": round(missing / max(1, len(truth["singles"])), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--sizes-mb", default="64,256", help="input sizes in MiB (default 64,256)")
    ap.add_argument("--old-max-mb", type=int, default=256, help="run the in-memory build up to this size")
    ap.add_argument("--workers-at-largest", default="2", help="worker counts at the largest size (default 2)")
    add_record_args(ap)
    args = ap.parse_args()
    sizes = [2] if args.smoke else [int(s) for s in args.sizes_mb.split(",")]
    pool = paragraph_pool(args.smoke)
    tmp = Path(tempfile.mkdtemp(prefix="saessak-data-scale-"))
    runs = []
    try:
        for size in sizes:
            folder = tmp / f"in{size}"
            truth = generate(folder, size * 2**20, pool)
            mb = truth["bytes"] / 1e6
            largest = size == sizes[-1] and len(sizes) > 1
            workers = [int(w) for w in args.workers_at_largest.split(",")] if largest else [1] if args.smoke else [1, 2]
            for w in workers:
                out = tmp / f"run-{size}-{w}" / "data"
                cmd = [sys.executable, "-m", "saessak", "data", "build", "--out", str(out), "--input", str(folder),
                       "--workers", str(w)]
                wall, rss, cpu = run_measured(cmd)
                card = json.loads((out / "data_card.json").read_text(encoding="utf-8"))
                runs.append({"impl": "datatrove", "size_mb": round(mb, 1), "workers": w,
                             "tasks": card["settings"]["engine"]["tasks"], "wall_s": round(wall, 1),
                             "mb_s": round(mb / wall, 3),
                             # with several workers, datatrove's pool forks them from a forkserver this
                             # bench does not wait for: their CPU time never reaches RUSAGE_CHILDREN
                             "cpu_s": round(cpu, 1) if w == 1 else None,
                             "mb_per_cpu_s": round(mb / cpu, 3) if w == 1 else None,
                             "peak_rss_mb": round(rss / 2**20), **score(out, truth),
                             "dedup_removed": card["totals"]["dedup_removed"]})
                print(f"[bench] {runs[-1]}", file=sys.stderr, flush=True)
                shutil.rmtree(out.parent)
            if size <= args.old_max_mb:
                out = tmp / f"old-{size}"
                wall, rss, cpu = run_measured([sys.executable, "-m", "bench._lib.inmemory_build", "--input",
                                               str(folder), "--out", str(out)])
                runs.append({"impl": "in-memory (before)", "size_mb": round(mb, 1), "workers": 1, "tasks": 1,
                             "wall_s": round(wall, 1), "mb_s": round(mb / wall, 3), "cpu_s": round(cpu, 1),
                             "mb_per_cpu_s": round(mb / cpu, 3), "peak_rss_mb": round(rss / 2**20),
                             **score(out, truth)})
                print(f"[bench] {runs[-1]}", file=sys.stderr, flush=True)
                shutil.rmtree(out)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    new = [r for r in runs if r["impl"] == "datatrove"]
    # scaling at the largest size run with both worker counts (a one-task size cannot scale)
    pairs = [(a, b) for a in new for b in new if a["workers"] == 1 and b["workers"] == 2 and a["size_mb"] == b["size_mb"]]
    one, two = max(pairs, key=lambda p: p[0]["size_mb"]) if pairs else (next((r for r in new if r["workers"] == 1), None), None)
    result = {"smoke": args.smoke, "runs": runs,
              "scaling_2_vs_1": round(two["mb_s"] / one["mb_s"], 2) if one and two else None,
              "max_peak_rss_mb": max(r["peak_rss_mb"] for r in new),
              "peak_rss_mb_by_size": {str(size): max(r["peak_rss_mb"] for r in new if r["size_mb"] == size)
                                      for size in sorted({r["size_mb"] for r in new})},
              "min_pii_recall": min(r["pii_recall"] for r in new),
              # one worker's MB per CPU-second: what a free core does, whatever the machine's load
              "per_core_mb_s": (one.get("mb_per_cpu_s") or one["mb_s"]) if one else None}
    result["targets"] = {"peak_rss_mb_max": RSS_TARGET_MB, "peak_rss_met": result["max_peak_rss_mb"] <= RSS_TARGET_MB,
                         "pii_recall_min": PII_TARGET, "pii_recall_met": result["min_pii_recall"] >= PII_TARGET}
    emit("data_scale", result, args)


def render(r: dict) -> str:
    rows = [[x["impl"], f"{x['size_mb']:,.0f}", x["workers"], x["tasks"], f"{x['wall_s']:,.1f}", f"{x['mb_s']:.3f}",
             f"{x['mb_per_cpu_s']:.3f}" if x.get("mb_per_cpu_s") and x["workers"] == 1 else "—",
             f"{x['peak_rss_mb']:,}", f"{x['pii_recall']:.4f} ({x['pii_checked']:,})",
             f"{x['near_dup_recall']:.4f} ({x['near_dup_pairs']:,})", f"{x['false_removal_rate']:.4%}"]
            for x in r["runs"]]
    table = md_table(["build", "input MB", "workers", "tasks", "wall s", "MB/s", "MB per CPU-s", "peak RSS MB",
                      "PII recall (identifiers)", "near-dup recall (pairs)", "false removals"], rows)
    t = r.get("targets")
    bounds = (f"\n\nIssue 16's bounds: peak RSS at most {t['peak_rss_mb_max']:,} MB at every size "
              f"({'met' if t['peak_rss_met'] else 'NOT met'}: largest {r['max_peak_rss_mb']:,} MB), PII recall at "
              f"least {t['pii_recall_min']} ({'met' if t['pii_recall_met'] else 'NOT met'}: lowest "
              f"{r['min_pii_recall']:.4f}).") if t else ""
    scaling = f"\n\nScaling, 2 workers vs 1 at the same size: {r['scaling_2_vs_1']}x." if r.get("scaling_2_vs_1") else ""
    return table + bounds + scaling + (
        "\n\nMB per CPU-second is shown for one worker only: the CPU time of several workers "
        "(forked from datatrove's forkserver, which the bench does not wait for) is not "
        "counted, so a figure recorded for them would overstate the rate.")


if __name__ == "__main__":
    main()
