"""PII recall on dense text: identifiers of every type packed densely, found with the right type and span.

The set (tests/pii_numbers.py, seeded, the same on every machine): documents in eight layouts —
several identifiers per line with one separator (", ", ",", " ", "; ", ";", tab, " | ", " / "),
CSV rows, Markdown tables, bulleted lists, e-mail signatures, From/To/Cc lists, Korean sentences
with particles attached, lists under one label — every identifier valid (check digits, dates)
and, where the rules require it, labelled (계좌 before an account, 사업자 before bare 10 digits, ...). An identifier counts
as found only when an entity has its exact start, end and type. Side by side: the `\\b`-bounded
regexes a user would otherwise write (their types only).

    .venv/bin/python bench/pii_recall.py            # 200 documents per layout (about 13,000 identifiers)
    .venv/bin/python bench/pii_recall.py --smoke    # 5 per layout, in a second (tests)

The last stdout line is one JSON object: smoke, identifiers, overall_recall, recall_by_type, ...
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)
from saessak.io import md_table
from saessak.pii import PII_TYPES, find_pii
from tests.pii_numbers import LAYOUTS, dense_set

# What a hurried user would write: `\b` boundaries, which Hangul particles and labels defeat.
NAIVE = {
    "rrn": re.compile(r"\b\d{6}-?[1-4]\d{6}\b"),
    "brn": re.compile(r"\b\d{3}-\d{2}-\d{5}\b"),
    "card": re.compile(r"\b\d{4}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b"),
    "phone": re.compile(r"\b01[016789]-?\d{3,4}-?\d{4}\b|\b0\d{1,2}-\d{3,4}-\d{4}\b"),
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b"),
    "ip": re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"),
}


def naive_scan(text: str) -> set[tuple[str, int, int]]:
    return {(t, m.start(), m.end()) for t, p in NAIVE.items() for m in p.finditer(text)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="5 documents per layout, in a second (tests)")
    ap.add_argument("--per-layout", type=int, default=200, help="documents per layout (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    add_record_args(ap)
    args = ap.parse_args()
    per_layout = 5 if args.smoke else args.per_layout
    if per_layout < 1:
        ap.error(f"--per-layout must be at least 1, got {per_layout}")

    docs = dense_set(args.seed, per_layout)
    total, found, naive_found, wrong_type = Counter(), Counter(), Counter(), Counter()
    by_layout, by_layout_found = Counter(), Counter()
    extra = 0
    scan_s = 0.0
    for i, doc in enumerate(docs):
        text, layout = doc.text, LAYOUTS[i // per_layout]
        t0 = time.perf_counter()
        ents = find_pii(text)
        scan_s += time.perf_counter() - t0
        got = {(e.type, e.start, e.end) for e in ents}
        spans = {(e.start, e.end) for e in ents}
        naive = naive_scan(text)
        truth = {(t, s, e) for t, s, e, _ in doc.truth}
        extra += len(got - truth)
        for t, s, e in truth:
            hit = (t, s, e) in got
            total[t] += 1
            found[t] += hit
            wrong_type[t] += not hit and (s, e) in spans
            naive_found[t] += (t, s, e) in naive
            by_layout[layout] += 1
            by_layout_found[layout] += hit

    def rate(a: int, b: int) -> float:
        return round(a / b, 4) if b else 0.0

    n = sum(total.values())
    print(f"{'type':16s} {'identifiers':>11s} {'found':>7s} {'recall':>7s} {'wrong type':>10s} {'naive':>9s}")
    for t in PII_TYPES:
        naive = f"{rate(naive_found[t], total[t]):.3f}" if t in NAIVE else "-"
        print(f"{t:16s} {total[t]:11d} {found[t]:7d} {rate(found[t], total[t]):7.3f} {wrong_type[t]:10d} {naive:>9s}")
    print(f"{'all':16s} {n:11d} {sum(found.values()):7d} {rate(sum(found.values()), n):7.3f}"
          f" {sum(wrong_type.values()):10d}")
    print("by layout: " + ", ".join(f"{k} {rate(by_layout_found[k], by_layout[k]):.3f}" for k in LAYOUTS))
    print(f"entities found that are not in the set: {extra}; scan {scan_s:.2f} s")
    result = {
        "smoke": args.smoke,
        "seed": args.seed,
        "documents": len(docs),
        "identifiers": n,
        "found": sum(found.values()),
        "overall_recall": rate(sum(found.values()), n),
        "recall_by_type": {t: rate(found[t], total[t]) for t in PII_TYPES},
        "identifiers_by_type": {t: total[t] for t in PII_TYPES},
        "wrong_type": sum(wrong_type.values()),
        "extra_entities": extra,
        "recall_by_layout": {k: rate(by_layout_found[k], by_layout[k]) for k in LAYOUTS},
        "naive_regex_recall_by_type": {t: rate(naive_found[t], total[t]) for t in NAIVE},
        "scan_s": round(scan_s, 3),
    }
    emit("pii_recall", result, args)
    return 0


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    naive = r["naive_regex_recall_by_type"]
    types = list(r["recall_by_type"])
    rows = [[t, f"{r['identifiers_by_type'][t]:,}", f"{r['recall_by_type'][t]:.3f}",
             f"{naive[t]:.3f}" if t in naive else "—"] for t in types]
    rows.append(["**all**", f"**{r['identifiers']:,}**", f"**{r['overall_recall']:.3f}**", "—"])
    layouts = ", ".join(f"{k} {v:.3f}" for k, v in r["recall_by_layout"].items())
    return "\n".join([
        md_table(["type", "identifiers", "saessak recall", "`\\b` regexes (their types only)"], rows), "",
        f"{r['documents']:,} documents (seed {r['seed']}); wrong type: {r['wrong_type']}, entities found "
        f"where none was put: {r['extra_entities']}; scan time {r['scan_s']} s. Recall by layout: {layouts}."])


if __name__ == "__main__":
    raise SystemExit(main())
