"""The run report: `RUN/report.json`, `RUN/report.md` and `RUN/plots/*.png`.

`build_report` gathers what the stages left in the run folder (data card, tokenizer stats, model
config, ledger, evaluation, metrics) and prices the ledger (saessak.ledger); every input is read
defensively, so a run that stopped early still gets a report of what exists. Each stage's facts
are summarised by the stage's own code (data.card, evals.results), the same summaries the model
card carries. The JSON schema is documented in docs/REPORT.md; the keys other tools rely on are
"stages", "ledger" -> "total" ("wall_s", "flops", "cost_krw", "cost_usd") and "eval" ->
"pretrain" ("bpb"), "sft"/"rl" ("tasks").
"""

from __future__ import annotations

import os
from typing import Any

from saessak import __version__
from saessak.data.card import read_summary
from saessak.report.pii_section import pii_facts
from saessak.errors import UserError
from saessak.evals import results
from saessak.io import read_json_or_none, write_json, write_text
from saessak.ledger import (
    PriceTable,
    StageTimer,
    git_commit,
    ledger_costs,
    load_prices,
    now_iso,
    project_summary,
    read_ledger,
)
from saessak.model.checkpoint import load_config
from saessak.report.markdown import render_markdown
from saessak.report.plots import plot_stage
from saessak.report.projection import project
from saessak.runfolder import MODEL_STAGES, STAGES, RunFolder, stage_name

# 2: the pretrained model's entries are keyed "pretrain" (1 called them "base").
SCHEMA_VERSION = 2
_CPU_FIELDS = ("name", "usd_per_hour", "vcpus", "watts", "price_source", "watts_source")


# ----------------------------------------------------------------------------- sections


def tokenizer_section(run: RunFolder) -> dict[str, Any] | None:
    stats = read_json_or_none(run.tokenizer_dir / "stats.json")
    return stats if isinstance(stats, dict) else None


def model_section(run: RunFolder) -> dict[str, Any] | None:
    stage = run.latest_model_stage()
    if stage is None:
        return None
    final = run.final_checkpoint(stage)
    cfg = read_json_or_none(final / "config.json")
    if not isinstance(cfg, dict):
        return None
    mc = load_config(final)  # the model's own class of config (Llama or DeepSeek)
    meta = read_json_or_none(final / "meta.json") or {}
    return {"stage": stage, "preset": meta.get("preset"), "params": mc.num_parameters(),
            "params_non_embedding": mc.num_parameters(include_embeddings=False), "config": cfg, "meta": meta}


def stages_run(run: RunFolder, records: list[dict]) -> list[str]:
    """Stage names in the order they first ran (from the ledger), then any done marker not in it."""
    names = [str(rec.get("stage", "")) for rec in records] + [s for s in STAGES if run.is_done(s)]
    return list(dict.fromkeys(stage_name(n) for n in names if n))


# ----------------------------------------------------------------------------- build / write


def prices_section(table: PriceTable, records: list[dict]) -> dict[str, Any]:
    """The price figures used: the table, and every CPU row the run's records were priced with
    (`cpu`: the first one, the row of the run's machine; `cpu_rows`: all, with how each was chosen)."""
    rows: dict[str, dict[str, Any]] = {}
    for device in [r.get("device") or {} for r in records if (r.get("device") or {}).get("type") != "cuda"] or [{}]:
        key, row, note = table.cpu_row(device)
        rows.setdefault(key, {"row": key, "note": note, **{k: row.get(k) for k in _CPU_FIELDS}})
    return {
        "source": table.source,
        "usd_to_krw": table.usd_to_krw,
        "usd_to_krw_date": table.data["currency"].get("usd_to_krw_date"),
        "electricity_krw_per_kwh": table.krw_per_kwh,
        "pue": table.pue,
        "cpu": next(iter(rows.values())),
        "cpu_rows": rows,
    }


def precision_section(records: list[dict]) -> dict[str, Any]:
    """The precision each stage's last finished attempt chose, with its measured figures."""
    out: dict[str, Any] = {}
    for rec in records:
        if rec.get("precision") and rec.get("status", "done") == "done":
            key = stage_name(str(rec.get("stage")))
            if rec.get("stage") == "eval" and rec.get("model_stage"):
                key = f"eval {rec['model_stage']}"
            out[key] = rec["precision"]
    return out


def build_report(run_dir: str | os.PathLike, prices: str | os.PathLike | None = None,
                 command: str | None = None, exclude_attempt: str | None = None) -> dict[str, Any]:
    """The report dict; `exclude_attempt` leaves out the report's own attempt (still running)."""
    run = RunFolder(run_dir)
    table = load_prices(prices)
    problems: list[str] = []
    records = [r for r in read_ledger(run.root, problems) if not exclude_attempt or r.get("attempt") != exclude_attempt]
    ledger = ledger_costs(records, table)
    ledger["problems"] = problems
    return {
        "schema_version": SCHEMA_VERSION,
        "run": str(run.root),
        "date": now_iso(),
        "command": command,
        # The speedrun that built the run, if one did (its command, not the report's, is what to rerun).
        "speedrun": read_json_or_none(run.root / "speedrun.json"),
        # The speedrun's time plan (saessak/report/plan.py) and the precision each stage measured and chose.
        "plan": read_json_or_none(run.root / "plan.json"),
        # SFT's time budget applied at the end of its warm-up (saessak/sft/stage.py), if it had one.
        "sft_time_budget": (read_json_or_none(run.done_path("sft")) or {}).get("time_budget"),
        "precision": precision_section(records),
        "git_commit": git_commit(),
        "saessak_version": __version__,
        "stages": stages_run(run, records),
        "data": read_summary(run.data),
        "pii": pii_facts(run),
        "tokenizer": tokenizer_section(run),
        "model": model_section(run),
        "ledger": ledger,
        # The whole project around the run (its folder's other runs), or None when it is alone.
        "project": project_summary(run.root, table),
        "prices": prices_section(table, records),
        "eval": results.summary(run),
        "projection": project(table, ledger),
        "plots": [],
    }


def write_report(run_dir: str | os.PathLike, prices: str | os.PathLike | None = None,
                 command: str | None = None) -> dict[str, Any]:
    """Build the report, draw the plots, and write report.json and report.md atomically. The report
    is a stage attempt of its own in the ledger; it reports every attempt before it."""
    run = RunFolder(run_dir)
    if not run.root.is_dir():
        raise UserError(f"--run {run.root}: run folder not found")
    with StageTimer(run.root, "report") as timer:
        report = build_report(run.root, prices, command, exclude_attempt=timer.attempt)
        plots: list[str] = []
        for stage in MODEL_STAGES:
            metrics = run.stage_dir(stage) / "metrics.jsonl"
            if metrics.exists():
                plots += [str(p.relative_to(run.root)) for p in plot_stage(metrics, stage, run.root / "plots")]
        report["plots"] = plots
        write_json(run.root / "report.json", report)
        write_text(run.root / "report.md", render_markdown(report))
    return report
