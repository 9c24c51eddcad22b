"""The data card: `data_card.json` (schema in docs/DATA_CARD.md), a readable `data_card.md`, and the
summary of it that the run's report and the model card carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saessak import __version__
from saessak.io import fmt, md_table, read_json_or_none
from saessak.ledger import git_commit, now_iso

SCHEMA_VERSION = 1
_SUMMED = ("bytes_in", "documents_in", "characters_in", "documents_out", "characters_out", "hangul_syllables_out")
_COUNTERS = ("lines_dropped", "documents_dropped", "dedup_removed", "pii_masked", "pii_kept")
_FORMATS = {"jsonl": 'one {"id", "source", "text"} object per line', "parquet": "string columns id, source, text"}


def totals(sources: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: sum(s[k] for s in sources) for k in _SUMMED}
    for key in _COUNTERS:
        merged: dict[str, int] = {}
        for s in sources:
            for k, v in s[key].items():
                merged[k] = merged.get(k, 0) + v
        out[key] = dict(sorted(merged.items()))
    out["skipped_files"] = sum(len(s["skipped_files"]) for s in sources)
    return out


def make_card(*, command: str, settings: dict, sources: list[dict], split: dict, outputs: dict) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "saessak", "version": __version__, "git_commit": git_commit()},
        "command": command,
        "created": now_iso(),
        "settings": settings,
        "sources": sources,
        "totals": totals(sources),
        "split": split,
        "outputs": outputs,
    }


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in d.items() if v) or "none"


def render_markdown(card: dict[str, Any]) -> str:
    t = card["totals"]
    lines = [
        "# Data card",
        "",
        f"- Built by saessak {card['tool']['version']} (git {card['tool']['git_commit'] or 'unknown'}) at {card['created']}",
        f"- Command: `{card['command']}`",
        f"- Documents: {t['documents_in']:,} in -> {t['documents_out']:,} out; characters {t['characters_in']:,} in -> "
        f"{t['characters_out']:,} out; Hangul syllables out {t['hangul_syllables_out']:,}; bytes read {t['bytes_in']:,}",
        f"- PII masked: {_counts(t['pii_masked'])}",
        *([f"- **PII NOT masked (--keep-pii)**: identifiers written as they are: {_counts(t['pii_kept'])}"]
          if card["settings"].get("keep_pii") else []),
        f"- Documents dropped: {_counts(t['documents_dropped'])}; duplicates removed: {_counts(t['dedup_removed'])}",
        f"- Lines dropped: {_counts(t['lines_dropped'])}",
        "",
        "## Sources",
        "",
        "| source | origin | licence | files | docs in | docs out | chars in | chars out | Hangul syllables | PII masked |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in card["sources"]:
        origin = _origin(s["origin"]) or ""
        lines.append(
            f"| {s['name']} | {origin} | {s['licence'].get('name', 'unknown')} | {len(s['files'])} | "
            f"{s['documents_in']:,} | {s['documents_out']:,} | {s['characters_in']:,} | {s['characters_out']:,} | "
            f"{s['hangul_syllables_out']:,} | {_counts(s['pii_masked'])} |"
        )
    lines += ["", "## Per source detail", ""]
    for s in card["sources"]:
        lines.append(f"### {s['name']}")
        lines.append("")
        for k, v in s["origin"].items():
            lines.append(f"- {k}: `{v}`")
        if s["licence"].get("note"):
            lines.append(f"- licence note: {s['licence']['note']}")
        lines.append(f"- documents dropped: {_counts(s['documents_dropped'])}")
        lines.append(f"- duplicates removed: {_counts(s['dedup_removed'])}")
        lines.append(f"- lines dropped: {_counts(s['lines_dropped'])}")
        lines.append(f"- PII masked: {_counts(s['pii_masked'])}")
        if s["skipped_files"]:
            lines.append("- skipped:")
            for sk in s["skipped_files"]:
                lines.append(f"  - `{sk['path']}`: {sk['reason']}")
        lines.append(f"- file hashes (sha256): {len(s['files'])} files listed in data_card.json")
        lines.append("")
    sp = card["split"]
    fmt_name = card["settings"].get("format", "jsonl")  # cards from before --format: JSONL
    lines += [
        "## Split",
        "",
        f"- Method: {sp['method']} (seed {sp['seed']}, val fraction {sp['val_fraction']})",
        f"- train: {sp['train']['documents']:,} documents, {sp['train']['characters']:,} characters",
        f"- val: {sp['val']['documents']:,} documents, {sp['val']['characters']:,} characters",
        "",
        "## Outputs",
        "",
        f"- Format: {fmt_name} ({_FORMATS.get(fmt_name, 'unknown')})",
    ]
    for name, o in card["outputs"].items():
        lines.append(f"- `{name}`: {o['bytes']:,} bytes, sha256 `{o['sha256']}`")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- summary (report, model card)

_SOURCE_KEYS = ("name", "documents_in", "documents_out", "characters_in", "characters_out", "hangul_syllables_out",
                "pii_masked", "pii_kept", "documents_dropped", "dedup_removed")


def _origin(o: Any) -> str | None:
    if not isinstance(o, dict):
        return None if o is None else str(o)
    if "package" in o:
        return f"{o['package']} {o.get('version', '')}".strip()
    return next((str(o[k]) for k in ("path", "dataset", "wheel", "installed_package") if o.get(k)), None)


def _licence(lic: Any) -> str | None:
    return lic.get("name") if isinstance(lic, dict) else lic


def read_summary(data_dir: str | Path) -> dict[str, Any] | None:
    """The data card's headline figures, per source and in total; None when the run has no card.

    Read defensively: a run that stopped early, or a card from an older version, still gives
    what it has.
    """
    card = read_json_or_none(Path(data_dir) / "data_card.json")
    if not isinstance(card, dict):
        return None
    sources = []
    for s in card.get("sources") or []:
        if isinstance(s, dict):
            row = {k: s[k] for k in _SOURCE_KEYS if k in s}
            row["origin"] = _origin(s.get("origin"))
            row["licence"] = _licence(s.get("licence", s.get("license")))
            sources.append(row)
    totals = card.get("totals") if isinstance(card.get("totals"), dict) else {}
    split = card.get("split") if isinstance(card.get("split"), dict) else {}
    return {
        "sources": sources,
        "totals": {k: v for k, v in totals.items() if k in _SOURCE_KEYS or k in ("bytes_in", "lines_dropped", "skipped_files")},
        "split": {k: split[k] for k in ("method", "train", "val", "val_fraction") if k in split},
        "command": card.get("command"),
        "keep_pii": bool((card.get("settings") or {}).get("keep_pii")),
    }


def _int_counts(d: Any) -> str:
    if not isinstance(d, dict):
        return "—"
    return ", ".join(f"{k} {v:,}" for k, v in d.items() if isinstance(v, int) and v) or "none"


def summary_markdown(data: dict | None) -> str:
    """A `read_summary` result as a Markdown table and a few lines of totals."""
    if not data:
        return "_No data card in this run._"
    rows = [[str(s.get("name", "?")), s.get("origin") or "—", s.get("licence") or "—",
             f"{fmt(s.get('documents_in'))} → {fmt(s.get('documents_out'))}", fmt(s.get("characters_out")),
             fmt(s.get("hangul_syllables_out")), _int_counts(s.get("pii_masked"))]
            for s in data.get("sources", [])]
    out = [md_table(["source", "origin", "licence", "documents in → out", "characters out", "Hangul syllables",
                     "PII masked"], rows)] if rows else []
    t = data.get("totals") or {}
    if t:
        out.append(f"\nTotal: {fmt(t.get('documents_out'))} documents, {fmt(t.get('characters_out'))} characters; "
                   f"PII masked: {_int_counts(t.get('pii_masked'))}; documents dropped: {_int_counts(t.get('documents_dropped'))}; "
                   f"duplicates removed: {_int_counts(t.get('dedup_removed'))}.")
    if data.get("keep_pii"):
        out.append(f"**Personal data was NOT masked** (`--keep-pii`): identifiers kept: {_int_counts(t.get('pii_kept'))}.")
    sp = data.get("split") or {}
    if isinstance(sp.get("train"), dict) and isinstance(sp.get("val"), dict):
        out.append(f"Split ({sp.get('method', '?')}): train {fmt(sp['train'].get('documents'))} documents, "
                   f"val {fmt(sp['val'].get('documents'))} documents.")
    return "\n".join(out) or "_Empty data card._"
