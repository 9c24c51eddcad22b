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
from saessak.evals import results
from saessak.io import read_json_or_none, write_json, write_text
from saessak.ledger import git_commit, ledger_costs, load_prices, now_iso, read_ledger
from saessak.model import ModelConfig
from saessak.report.markdown import render_markdown
from saessak.report.plots import plot_stage
from saessak.report.projection import project
from saessak.runfolder import MODEL_STAGES, STAGES, RunFolder, stage_name

# 2: the pretrained model's entries are keyed "pretrain" (1 called them "base").
SCHEMA_VERSION = 2


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
    mc = ModelConfig.from_dict(cfg)
    meta = read_json_or_none(final / "meta.json") or {}
    return {"stage": stage, "preset": meta.get("preset"), "params": mc.num_parameters(),
            "params_non_embedding": mc.num_parameters(include_embeddings=False), "config": cfg, "meta": meta}


def stages_run(run: RunFolder, records: list[dict]) -> list[str]:
    """Stage names in the order they first ran (from the ledger), then any done marker not in it."""
    names = [str(rec.get("stage", "")) for rec in records] + [s for s in STAGES if run.is_done(s)]
    return list(dict.fromkeys(stage_name(n) for n in names if n))


# ----------------------------------------------------------------------------- build / write


def build_report(run_dir: str | os.PathLike, prices: str | os.PathLike | None = None,
                 command: str | None = None) -> dict[str, Any]:
    run = RunFolder(run_dir)
    table = load_prices(prices)
    records = read_ledger(run.root)
    ledger = ledger_costs(records, table)
    return {
        "schema_version": SCHEMA_VERSION,
        "run": str(run.root),
        "date": now_iso(),
        "command": command,
        # The speedrun that built the run, if one did (its command, not the report's, is what to rerun).
        "speedrun": read_json_or_none(run.root / "speedrun.json"),
        "git_commit": git_commit(),
        "saessak_version": __version__,
        "stages": stages_run(run, records),
        "data": read_summary(run.data),
        "tokenizer": tokenizer_section(run),
        "model": model_section(run),
        "ledger": ledger,
        "prices": {
            "source": table.source,
            "usd_to_krw": table.usd_to_krw,
            "usd_to_krw_date": table.data["currency"].get("usd_to_krw_date"),
            "electricity_krw_per_kwh": table.krw_per_kwh,
            "pue": table.pue,
            "cpu": {k: table.data["cpu"].get(k) for k in ("name", "usd_per_hour", "vcpus", "watts", "price_source", "watts_source")},
        },
        "eval": results.summary(run),
        "projection": project(table, ledger),
        "plots": [],
    }


def write_report(run_dir: str | os.PathLike, prices: str | os.PathLike | None = None,
                 command: str | None = None) -> dict[str, Any]:
    """Build the report, draw the plots, and write report.json and report.md atomically."""
    run = RunFolder(run_dir)
    report = build_report(run.root, prices, command)
    plots: list[str] = []
    for stage in MODEL_STAGES:
        metrics = run.stage_dir(stage) / "metrics.jsonl"
        if metrics.exists():
            plots += [str(p.relative_to(run.root)) for p in plot_stage(metrics, stage, run.root / "plots")]
    report["plots"] = plots
    write_json(run.root / "report.json", report)
    write_text(run.root / "report.md", render_markdown(report))
    return report
