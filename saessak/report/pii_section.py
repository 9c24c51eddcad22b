"""The report's personal-data section: identifiers masked per source at the door into training.

Reads what the stages recorded (saessak/data/ingest.py): the data card's per-source counts (the
corpus build), RUN/sft/done.json's "pii" (the user's chat data) and RUN/distill/done.json's "pii"
(the teacher's replies and the user's prompts in the distilled dataset) and "pii_sent" (what left
the machine). A source whose data went in
unmasked (`--keep-pii`) is listed with what it kept and said so in bold.

`pii_facts(run)` gives the dict report.json keeps under "pii"; `pii_lines(facts)` renders it (the
report builds its JSON first and its Markdown from that).
"""

from __future__ import annotations

from typing import Any

from saessak.data.card import read_summary
from saessak.data.ingest import counts_text
from saessak.io import md_table, read_json_or_none
from saessak.runfolder import RunFolder


def _row(stage: str, source: str, keep_pii: bool, counts: Any) -> dict[str, Any]:
    counts = {k: v for k, v in counts.items() if isinstance(v, int)} if isinstance(counts, dict) else {}
    return {"stage": stage, "source": source, "keep_pii": keep_pii, "counts": dict(sorted(counts.items())),
            "total": sum(counts.values())}


def pii_facts(run: RunFolder) -> dict[str, Any]:
    """{"sources": [{"stage", "source", "keep_pii", "counts": {type: n}, "total"}], "keep_pii": any,
    "generated_only": [stages that took no outside data], "unrecorded": [stages whose summary predates
    the record]}."""
    rows, generated_only, unrecorded = [], [], []
    data = read_summary(run.data)
    if data:
        keep = bool(data.get("keep_pii"))
        for s in data.get("sources", []):
            rows.append(_row("data", str(s.get("name", "?")), keep, s.get("pii_kept" if keep else "pii_masked")))
    sent = None
    for stage in ("distill", "sft"):  # the stages whose done.json holds a `Door.record()` as "pii"
        done = read_json_or_none(run.done_path(stage))
        if not isinstance(done, dict):
            continue
        pii = done.get("pii")
        if isinstance(pii, dict):
            keep = bool(pii.get("keep_pii"))
            per_source = pii.get("kept" if keep else "masked")
            for source, counts in (per_source.items() if isinstance(per_source, dict) else ()):
                rows.append(_row(stage, str(source), keep, counts))
            if not per_source:
                generated_only.append(stage)
        else:
            unrecorded.append(stage)
        if stage == "distill" and isinstance(done.get("pii_sent"), dict):
            total = done["pii_sent"].get("total")
            sent = {"host": (done.get("teacher") or {}).get("host"), "allow_pii": bool(done.get("allow_pii")),
                    "counts": _row(stage, "sent", False, total)["counts"]}
    return {"sources": rows, "keep_pii": any(r["keep_pii"] for r in rows), "generated_only": generated_only,
            "unrecorded": unrecorded, "sent_to_teacher": sent}


def pii_lines(facts: dict[str, Any] | None) -> list[str]:
    """Markdown for `pii_facts(run)` (or report.json's copy of it)."""
    lines = ["## Personal data", ""]
    facts = facts or {}
    rows = facts.get("sources") or []
    if not rows and not facts.get("unrecorded") and not facts.get("generated_only"):
        return lines + ["_No stage of this run took data in._", ""]
    if rows:
        lines.append(md_table(
            ["stage", "source", "identifiers", "by type"],
            [[r["stage"], f"`{r['source']}`", f"{r['total']:,} {'**kept unmasked (--keep-pii)**' if r['keep_pii'] else 'masked'}",
              counts_text(r["counts"])] for r in rows]))
        lines.append("")
    sent = facts.get("sent_to_teacher")
    if sent:
        n = sum(sent["counts"].values())
        how = "**sent unmasked (--allow-pii)**" if sent["allow_pii"] else "masked before they were sent"
        lines += [(f"Prompts sent to the distillation teacher (`{sent['host']}`): {n:,} identifiers {how} "
                   f"({counts_text(sent['counts'])})."), ""]
    if facts.get("keep_pii"):
        lines += ["**Some data went into training with its personal data unmasked (`--keep-pii`).**", ""]
    for stage in facts.get("generated_only") or []:
        lines += [f"_{stage}: no outside data (only the project's generated task solutions and identity chats)._", ""]
    for stage in facts.get("unrecorded") or []:
        lines += [f"_{stage}: no personal-data record (the stage ran before its input was masked at the door)._", ""]
    lines += [("Counted by `saessak.pii` (docs/PII.md) in what each stage took in, per source. The project's own "
               "generated text (task items, identity chats) is not personal data and is not scanned."), ""]
    return lines


def pii_section(run: RunFolder) -> tuple[list[str], dict[str, Any]]:
    """Both halves at once: the Markdown lines and the dict."""
    facts = pii_facts(run)
    return pii_lines(facts), facts
