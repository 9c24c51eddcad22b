"""The project's bill (`saessak bill`): every attempt of every run under one or more folders, priced.

A model's headline cost is what its own stages cost (`ledger.headline_attempts`: the attempts that
built its data, tokenizer and weights); a project spends more: failed and killed attempts, ablations
and experiments, evaluations, reports, exports, benchmarks that wrote a ledger. The bill puts both
side by side, with the ratio total / headline, broken down by tag, run, stage, status and device.
Money comes from the same pricing as the run report (`ledger.project_costs`, `ledger.ledger_costs`).

Outputs: `bill.md`, `bill.json` (schema in docs/REPORT.md#the-project-bill) and `bill.png`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from saessak.io import atomic_path, fmt, md_table, write_json, write_text
from saessak.ledger import (
    FAILED_STATUSES,
    STATUSES,
    device_text,
    load_prices,
    now_iso,
    parse_since,
    price_notes,
    project_costs,
    statuses_text,
    sum_rows,
)

SCHEMA_VERSION = 1
UNTAGGED = "untagged"
_MONEY_KEYS = ("attempts", "statuses", "wall_s", "device_hours", "energy_kwh", "cost_krw", "cost_usd")


def _slim(sums: dict[str, Any]) -> dict[str, Any]:
    return {k: sums[k] for k in _MONEY_KEYS}


def _group(rows: list[dict[str, Any]], key) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return {name: _slim(sum_rows(members)) for name, members in groups.items()}


def build_bill(dirs: list[str | os.PathLike], prices: str | os.PathLike | None = None, since: str | None = None,
               command: str | None = None) -> dict[str, Any]:
    """The bill as a dict (see docs/REPORT.md#the-project-bill)."""
    table = load_prices(prices)
    project = project_costs(dirs, table, parse_since(since))
    rows = []
    for run in project["runs"]:
        for rec in run["ledger"]["records"]:
            rows.append({**rec, "run": run["run"], "tag": run["tag"] or UNTAGGED})
    runs = [r for r in project["runs"] if r["ledger"]["records"]]
    finals = [r for r in runs if r["tag"] == "final"]
    finals_rule = "runs tagged final"
    if not finals:
        finals = [r for r in runs if r["model"]]
        finals_rule = ("no run is tagged final, so every run with a finished model is listed "
                       "(`saessak bill tag RUN final` chooses)")
    headline = [{"run": r["run"], "tag": r["tag"], "model": r["model"], "stages": r["ledger"]["headline"]["stages"],
                 **_slim(r["ledger"]["headline"])} for r in finals]
    total = _slim(sum_rows(rows))
    headline_krw = sum(h["cost_krw"] for h in headline)
    return {
        "schema_version": SCHEMA_VERSION,
        "date": now_iso(),
        "command": command,
        "folders": [str(d) for d in dirs],
        "since": since,
        "prices": {"source": table.source, "usd_to_krw": table.usd_to_krw,
                   "usd_to_krw_date": table.data["currency"].get("usd_to_krw_date")},
        "runs": len(runs),
        "total": total,
        "headline": {"rule": finals_rule, "models": headline, "cost_krw": headline_krw,
                     "cost_usd": sum(h["cost_usd"] for h in headline)},
        "ratio_total_to_headline": total["cost_krw"] / headline_krw if headline_krw > 0 else None,
        "by_tag": _group(rows, lambda r: r["tag"]),
        "by_run": {r["run"]: {"tag": r["tag"] or UNTAGGED, "model": r["model"],
                              "headline_krw": r["ledger"]["headline"]["cost_krw"],
                              **_slim(sum_rows(r["ledger"]["records"]))} for r in runs},
        "by_stage": _group(rows, lambda r: str(r["stage"])),
        "by_status": _group(rows, lambda r: r.get("status") or "done"),
        "by_device": _group(rows, lambda r: f"{device_text(r.get('device'))}, priced as {r['price_row']}"),
        "attempts": [{"run": r["run"], "stage": r["stage"], "attempt": r.get("attempt"), "status": r.get("status"),
                      "error": r.get("error"), "start": r.get("start"), "wall_s": r.get("wall_s"),
                      "device": device_text(r.get("device")), "price_row": r["price_row"],
                      "cost_krw": r["cost_krw"], "cost_usd": r["cost_usd"], "unmeasured": r.get("unmeasured")}
                     for r in rows],
        "price_notes": price_notes(rows),
        "problems": project["problems"],
        "left_out_by_since": project["left_out_by_since"],
    }


# ----------------------------------------------------------------------------- Markdown


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "—"


def _table(title: str, groups: dict[str, dict[str, Any]], total_krw: float) -> list[str]:
    headers = [title, "attempts", "wall s", "device-hours", "kWh", "KRW", "USD", "share"]
    rows = []
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["cost_krw"]):
        rows.append([f"`{name}`" if title == "run" else name, statuses_text(g["statuses"]), fmt(g["wall_s"], 1),
                     fmt(g["device_hours"], 4), fmt(g["energy_kwh"], 4), fmt(g["cost_krw"], 2),
                     fmt(g["cost_usd"], 4), _share(g["cost_krw"], total_krw)])
    return [f"### By {title}", "", md_table(headers, rows), ""]


def render_markdown(bill: dict[str, Any]) -> str:
    t, h = bill["total"], bill["headline"]
    lines = [
        "# saessak project bill",
        "",
        f"- folders: {', '.join(f'`{f}`' for f in bill['folders'])}; {_n(bill['runs'], 'run')}"
        + (f"; attempts started on or after {bill['since']}" if bill["since"] else ""),
        (f"- date: {bill['date']}; prices: {bill['prices']['source']}, {fmt(bill['prices']['usd_to_krw'])} KRW/USD "
        f"({bill['prices']['usd_to_krw_date']})"),
        "",
        "## Headline: each final model's own stages",
        "",
    ]
    if h["models"]:
        lines += [md_table(["run", "tag", "model", "stages", "wall s", "KRW", "USD"],
                           [[f"`{m['run']}`", m["tag"] or UNTAGGED, m["model"] or "—", ", ".join(m["stages"]) or "—",
                             fmt(m["wall_s"], 1), fmt(m["cost_krw"], 2), fmt(m["cost_usd"], 4)] for m in h["models"]]),
                  "", (f"Final models: {h['rule']}. Headline: the attempts that built the model (data, tokenizer, "
                      "pretrain, SFT, RL: each stage's last finished attempt and the attempts it resumed from)."), ""]
    else:
        lines += ["_No finished model in these folders._", ""]
    ratio = bill["ratio_total_to_headline"]
    failed = sum(t["statuses"].get(s, 0) for s in FAILED_STATUSES)
    lines += [
        "## Total spend",
        "",
        (f"Total: **{fmt(t['cost_krw'], 2)} KRW** (USD {fmt(t['cost_usd'], 4)}) over {_n(bill['runs'], 'run')} and "
        f"{_n(t['attempts'], 'attempt')} ({statuses_text(t['statuses'])}; {failed} did not finish), "
        f"{fmt(t['wall_s'], 1)} s wall, {fmt(t['device_hours'], 4)} device-hours, {fmt(t['energy_kwh'], 4)} kWh."),
        "",
        f"Total spend / headline: **{ratio:.2f}x**" if ratio is not None else
        "Total spend / headline: — (no headline to compare with)",
        "",
        "## Breakdown",
        "",
    ]
    lines += _table("tag", bill["by_tag"], t["cost_krw"])
    lines += _table("run", bill["by_run"], t["cost_krw"])
    lines += _table("stage", bill["by_stage"], t["cost_krw"])
    lines += _table("status", bill["by_status"], t["cost_krw"])
    lines += _table("device", bill["by_device"], t["cost_krw"])
    lost = [a for a in bill["attempts"] if a["status"] in FAILED_STATUSES]
    if lost:
        lines += ["## Attempts that did not finish", ""]
        lines += [f"- `{a['run']}` {a['stage']} {a['status']}" + (f" ({a['error']})" if a.get("error") else "")
                  + f", {fmt(float(a['wall_s'] or 0), 1)} s, {fmt(a['cost_krw'], 3)} KRW"
                  + (f"; not measured: {a['unmeasured']}" if a.get("unmeasured") else "") for a in lost]
        lines.append("")
    if bill["price_notes"]:
        lines += ["## Pricing notes", ""] + [f"- {n}" for n in bill["price_notes"]] + [""]
    if bill["problems"] or bill["left_out_by_since"]:
        lines += ["## Not counted", ""]
        lines += [f"- {p}" for p in bill["problems"]]
        if bill["left_out_by_since"]:
            lines.append(f"- {bill['left_out_by_since']} attempts started before {bill['since']} (or with no start time)")
        lines.append("")
    lines += [("Money = device-hours x the hourly price of the row that matches each attempt's device "
              "(docs/REPORT.md#price-table); energy = nameplate power x time x PUE, an upper bound.")]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plot

_COLOURS = {"done": "#4c956c", "running": "#8d99ae", "failed": "#d62828", "interrupted": "#f77f00",
            "killed": "#6a040f"}


def plot_bill(bill: dict[str, Any], path: Path) -> Path:
    """Two panels: KRW per run and per stage, each bar split by status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {a["run"]: Path(a["run"]).name or a["run"] for a in bill["attempts"]}
    if len(set(names.values())) < len(names):  # two runs of one name in different folders: full paths
        names = {run: run for run in names}
    by: dict[str, dict[str, dict[str, float]]] = {"run": {}, "stage": {}}
    for a in bill["attempts"]:
        for panel, name in (("run", names[a["run"]]), ("stage", str(a["stage"]))):
            cell = by[panel].setdefault(name, {})
            cell[a["status"]] = cell.get(a["status"], 0.0) + a["cost_krw"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.6 + 0.4 * max(3, len(by["run"]), len(by["stage"]))), dpi=100)
    for ax, panel in zip(axes, ("run", "stage")):
        names = sorted(by[panel], key=lambda n: sum(by[panel][n].values()))
        left = [0.0] * len(names)
        for status in STATUSES:
            values = [by[panel][n].get(status, 0.0) for n in names]
            if any(values):
                ax.barh(names, values, left=left, color=_COLOURS[status], label=status)
                left = [a + b for a, b in zip(left, values)]
        ax.set_xlabel("KRW")
        ax.set_title(f"spend per {panel}")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    ratio = bill["ratio_total_to_headline"]
    fig.suptitle(f"total {fmt(bill['total']['cost_krw'], 2)} KRW" + (f", {ratio:.2f}x the headline" if ratio else ""))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_bill(bill: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """bill.json, bill.md and bill.png in `out_dir`, each written atomically."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        from saessak.errors import UserError

        raise UserError(f"--out {out}: exists and is a file, not a folder")
    write_json(out / "bill.json", bill)
    write_text(out / "bill.md", render_markdown(bill))
    return [out / "bill.md", out / "bill.json", plot_bill(bill, out / "bill.png")]
