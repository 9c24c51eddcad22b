"""`build_corpus`: sources -> clean -> filter -> PII mask -> dedup -> split -> run folder `data/`.

PII is masked before anything is written, through the door into training (data/ingest.py;
`keep_pii` opts out, loudly, and the card and done.json say so); the output folder is built under
a temporary name and renamed into place whole, so a killed build leaves nothing that looks complete.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

from saessak.data.card import make_card, render_markdown, totals
from saessak import hangul
from saessak.data.clean import CleanConfig, document_drop_reason, filter_lines, frequent_lines, normalize, split_long
from saessak.data.dedup import MinHashLSH, exact_key
from saessak.data.ingest import Door
from saessak.data.inputs import HFDataset, LocalInput
from saessak.data.sources import DEFAULT_SOURCES, resolve_sources
from saessak.data.split import SPLIT_METHOD, VAL_FRACTION, assign_splits
from saessak.errors import UserError
from saessak.io import atomic_dir, file_sha256, read_json, write_json, write_text
from saessak.ledger import StageTimer

MINHASH = {"num_perm": 128, "bands": 16, "shingle": 5, "threshold": 0.8}


def _stderr(msg: str) -> None:
    print(f"[data] {msg}", file=sys.stderr, flush=True)


def _collect(src, max_docs: int | None, cfg: CleanConfig, log: Callable[[str], None], door: Door):
    """Read one source, clean it and apply line and document filters. Returns (report, candidates)."""
    report = src.report()
    docs: list[tuple[str, str]] = []
    for raw in src.documents(report, max_docs):
        report.documents_in += 1
        report.characters_in += len(raw.text) if raw.chars_in is None else raw.chars_in
        pieces = split_long(normalize(raw.text), cfg.max_doc_chars)
        if len(pieces) == 1:
            docs.append((raw.id, pieces[0]))
        else:
            docs.extend((f"{raw.id}#p{i}", p) for i, p in enumerate(pieces))
    boilerplate = frequent_lines([t for _, t in docs], cfg)
    candidates = []
    for doc_id, text in docs:
        text = filter_lines(text, boilerplate, cfg, report.lines_dropped)
        reason = document_drop_reason(text, cfg)
        if reason:
            report.documents_dropped[reason] += 1
            continue
        masked, pii = door.scan(text)  # counted in the card only if the document is written
        candidates.append((f"{src.name}:{doc_id}", masked, pii))
    log(f"{src.name}: {report.documents_in} documents read, {len(candidates)} pass the filters")
    return report, candidates


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def build_corpus(
    out_dir: str | os.PathLike,
    sources: list[str] | None = None,
    inputs: Iterable[str] = (),
    hf_dataset: str | None = None,
    text_field: str = "text",
    max_docs: int | None = None,
    seed: int = 0,
    force: bool = False,
    val_fraction: float = VAL_FRACTION,
    command: str | None = None,
    config: CleanConfig | None = None,
    log: Callable[[str], None] = _stderr,
    keep_pii: bool = False,
) -> dict[str, Any]:
    """Build RUN/data (train.jsonl, val.jsonl, data_card.json/.md, done.json); returns done.json's summary.

    With no sources, inputs or dataset, the default sources are used. Otherwise exactly the named
    ones. An existing complete build is kept unless `force`. `keep_pii` writes personal data unmasked.
    """
    out = Path(out_dir)
    done_path = out / "done.json"
    if done_path.exists() and not force:
        log(f"{out} is complete (done.json exists); skipping. Use --force to rebuild.")
        return read_json(done_path)
    if max_docs is not None and max_docs < 1:
        raise UserError(f"--max-docs {max_docs}: must be at least 1")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction {val_fraction}: must be in [0, 1)")
    cfg = config or CleanConfig()
    inputs = list(inputs)
    if sources is None and not inputs and not hf_dataset:
        sources = list(DEFAULT_SOURCES)
    srcs: list = resolve_sources(sources or [])
    for path in inputs:
        src = LocalInput(path, text_field)
        src.files()  # a missing path is a user error now, before any work
        srcs.append(src)
    if hf_dataset:
        srcs.append(HFDataset(hf_dataset, text_field))
    command = command or f"build_corpus({str(out)!r}, sources={sources!r}, inputs={inputs!r}, " \
                         f"hf_dataset={hf_dataset!r}, max_docs={max_docs!r}, seed={seed!r})"

    # The attempt is in the ledger from here on; an error ends it as failed (saessak/ledger.py).
    with StageTimer(out.parent, "data") as timer:
        door = Door(keep_pii=keep_pii, stage="data")
        reports, candidates = [], []
        for i, src in enumerate(srcs):
            report, cands = _collect(src, max_docs, cfg, log, door)
            reports.append(report)
            candidates.extend((i, *c) for c in cands)

        # Dedup across all sources in a fixed order (sources as given, documents in source order).
        seen: set[bytes] = set()
        lsh = MinHashLSH(num_perm=MINHASH["num_perm"], bands=MINHASH["bands"], shingle=MINHASH["shingle"],
                         threshold=MINHASH["threshold"], seed=seed)
        kept = []
        for i, doc_id, text, pii in candidates:
            key = exact_key(text)
            if key in seen:
                reports[i].dedup_removed["exact"] += 1
                continue
            seen.add(key)
            if not lsh.add_if_new(text):
                reports[i].dedup_removed["near"] += 1
                continue
            kept.append((i, doc_id, text, pii))
        for i, _, text, pii in kept:
            r = reports[i]
            r.documents_out += 1
            r.characters_out += len(text)
            r.hangul_syllables_out += hangul.syllables(text)
            (r.pii_kept if keep_pii else r.pii_masked).update(pii)
        for r in reports:
            door.announce(r.name, r.pii_kept if keep_pii else r.pii_masked, log)
        source_json = [r.to_json() for r in reports]
        if not kept:
            t = totals(source_json)
            skips = [f"{s['path']}: {s['reason']}" for r in reports for s in r.skipped][:5]
            raise UserError(
                f"empty corpus after filtering: {t['documents_in']} documents read from "
                f"{', '.join(r.name for r in reports)}; dropped {dict(t['documents_dropped']) or 'none'}, "
                f"duplicates {t['dedup_removed']}, skipped {t['skipped_files']}"
                + (f" ({'; '.join(skips)})" if skips else "")
            )

        splits = assign_splits([t for _, _, t, _ in kept], seed=seed, val_fraction=val_fraction)
        split_stats = {s: {"documents": 0, "characters": 0} for s in ("train", "val")}
        with atomic_dir(out) as tmp:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the corpus is meant to be read by other stages
            files = {s: open(tmp / f"{s}.jsonl", "w", encoding="utf-8") for s in ("train", "val")}
            try:
                for (i, doc_id, text, _), split in zip(kept, splits):
                    files[split].write(json.dumps({"id": doc_id, "source": reports[i].name, "text": text},
                                                  ensure_ascii=False) + "\n")
                    split_stats[split]["documents"] += 1
                    split_stats[split]["characters"] += len(text)
            finally:
                for f in files.values():
                    f.close()
            settings = {"clean": asdict(cfg), "minhash": MINHASH, "max_docs": max_docs, "seed": seed,
                        "text_field": text_field, "keep_pii": keep_pii}
            split = {"method": SPLIT_METHOD, "seed": seed, "val_fraction": val_fraction, **split_stats}
            outputs = {f"{s}.jsonl": _file_entry(tmp / f"{s}.jsonl") for s in ("train", "val")}
            card = make_card(command=command, settings=settings, sources=source_json, split=split, outputs=outputs)
            write_json(tmp / "data_card.json", card)
            write_text(tmp / "data_card.md", render_markdown(card))
            t = card["totals"]
            summary = {
                "format": "jsonl: one {\"id\", \"source\", \"text\"} object per line",
                "train": split_stats["train"],
                "val": split_stats["val"],
                "sources": [r.name for r in reports],
                "pii_masked": t["pii_masked"],
                "keep_pii": keep_pii,
                "pii_kept": t["pii_kept"],
            }
            write_json(tmp / "done.json", summary)  # last: marks the folder complete
        timer.finish(
            documents=t["documents_out"], characters=t["characters_out"], bytes_in=t["bytes_in"],
            documents_in=t["documents_in"], hangul_syllables=t["hangul_syllables_out"], pii_masked=t["pii_masked"],
            sources=[r.name for r in reports],
        )
    log(f"wrote {out}: train {split_stats['train']['documents']} docs / {split_stats['train']['characters']:,} chars, "
        f"val {split_stats['val']['documents']} docs / {split_stats['val']['characters']:,} chars")
    return summary
