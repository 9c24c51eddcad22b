"""The data card: `data_card.json` (schema in docs/DATA_CARD.md) and a readable `data_card.md`."""

from __future__ import annotations

from typing import Any

from saessak import __version__
from saessak.ledger import git_commit, now_iso

SCHEMA_VERSION = 1
_SUMMED = ("bytes_in", "documents_in", "characters_in", "documents_out", "characters_out", "hangul_syllables_out")
_COUNTERS = ("lines_dropped", "documents_dropped", "dedup_removed", "pii_masked")


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
        f"- Documents dropped: {_counts(t['documents_dropped'])}; duplicates removed: {_counts(t['dedup_removed'])}",
        f"- Lines dropped: {_counts(t['lines_dropped'])}",
        "",
        "## Sources",
        "",
        "| source | origin | licence | files | docs in | docs out | chars in | chars out | Hangul syllables | PII masked |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in card["sources"]:
        o = s["origin"]
        origin = (f"{o['package']} {o['version']}" if "package" in o else o.get("path") or o.get("dataset")
                  or o.get("wheel") or o.get("installed_package") or "")
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
    lines += [
        "## Split",
        "",
        f"- Method: {sp['method']} (seed {sp['seed']}, val fraction {sp['val_fraction']})",
        f"- train: {sp['train']['documents']:,} documents, {sp['train']['characters']:,} characters",
        f"- val: {sp['val']['documents']:,} documents, {sp['val']['characters']:,} characters",
        "",
        "## Outputs",
        "",
    ]
    for name, o in card["outputs"].items():
        lines.append(f"- `{name}`: {o['bytes']:,} bytes, sha256 `{o['sha256']}`")
    return "\n".join(lines) + "\n"
