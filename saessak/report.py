"""The run report: `RUN/report.json`, `RUN/report.md` and `RUN/plots/*.png`.

`build_report` gathers what the stages left in the run folder (data card, tokenizer stats, model
config, ledger, evaluation, metrics) and prices the ledger (saessak.costs); every input is read
defensively, so a run that stopped early still gets a report of what exists. The JSON schema is
documented in docs/REPORT.md; the keys other tools rely on are "stages", "ledger" -> "total"
("wall_s", "flops", "cost_krw", "cost_usd") and "eval" -> "base" ("bpb"), "sft"/"rl" ("tasks").
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from saessak.evaluate import paired_gain
from saessak.ledger import git_commit, now_iso, read_ledger
from saessak.runfolder import MODEL_STAGES, RunFolder

SCHEMA_VERSION = 1


def _read_json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


# ----------------------------------------------------------------------------- sections


_SOURCE_KEYS = ("name", "documents_in", "documents_out", "characters_in", "characters_out", "hangul_syllables_out",
                "pii_masked", "documents_dropped", "dedup_removed")


def _origin(o: Any) -> str | None:
    if not isinstance(o, dict):
        return None if o is None else str(o)
    if "package" in o:
        return f"{o['package']} {o.get('version', '')}".strip()
    return next((str(o[k]) for k in ("path", "dataset", "wheel", "installed_package") if o.get(k)), None)


def _licence(lic: Any) -> str | None:
    return lic.get("name") if isinstance(lic, dict) else lic


def data_section(run: RunFolder) -> dict[str, Any] | None:
    """The data card's headline figures (schema: docs/DATA_CARD.md): per source and totals."""
    card = _read_json_or_none(run.data / "data_card.json")
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
    }


def tokenizer_section(run: RunFolder) -> dict[str, Any] | None:
    stats = _read_json_or_none(run.tokenizer_dir / "stats.json")
    return stats if isinstance(stats, dict) else None


def model_section(run: RunFolder) -> dict[str, Any] | None:
    stage = run.latest_model_stage()
    if stage is None:
        return None
    final = run.final_checkpoint(stage)
    cfg = _read_json_or_none(final / "config.json")
    if not isinstance(cfg, dict):
        return None
    from saessak.model import ModelConfig

    mc = ModelConfig.from_dict(cfg)
    meta = _read_json_or_none(final / "meta.json") or {}
    return {"stage": stage, "preset": meta.get("preset"), "params": mc.num_parameters(),
            "params_non_embedding": mc.num_parameters(include_embeddings=False), "config": cfg, "meta": meta}


def _accuracy(v: Any) -> float | None:
    """A task result may be a bare accuracy or a dict holding one under a known name."""
    if _num(v) is not None:
        return _num(v)
    if isinstance(v, dict):
        for key in ("accuracy", "acc", "greedy", "pass@1", "greedy_accuracy", "score"):
            if _num(v.get(key)) is not None:
                return _num(v[key])
    return None


def _base_bpb(run: RunFolder) -> float | None:
    done = _read_json_or_none(run.done_path("base")) or {}
    for key in ("val_bpb", "bpb", "final_val_bpb"):
        if _num(done.get(key)) is not None:
            return _num(done[key])
    from saessak.io import read_jsonl

    for rec in reversed(read_jsonl(run.stage_dir("base") / "metrics.jsonl")):
        if _num(rec.get("val_bpb")) is not None:
            return _num(rec["val_bpb"])
    return None


def eval_section(run: RunFolder) -> dict[str, Any]:
    results = _read_json_or_none(run.root / "eval" / "results.json") or {}
    out: dict[str, Any] = {}
    for stage in MODEL_STAGES:
        raw = results.get(stage) if isinstance(results.get(stage), dict) else {}
        tasks = {name: acc for name, v in (raw.get("tasks") or {}).items() if (acc := _accuracy(v)) is not None}
        out[stage] = {"tasks": tasks, "details": raw.get("tasks") or {}}
        for key in ("samples", "n", "seed", "levels", "items"):
            if key in raw:
                out[stage][key] = raw[key]
    out["base"]["bpb"] = _base_bpb(run)
    sft, rl = out["sft"]["tasks"], out["rl"]["tasks"]
    out["rl_gain"] = {t: rl[t] - sft[t] for t in rl if t in sft}
    # 95 % half-widths of the gains, paired over the same items (when both stages kept per-item outcomes)
    raw_sft, raw_rl = results.get("sft"), results.get("rl")
    if isinstance(raw_sft, dict) and isinstance(raw_rl, dict):
        ci = {t: g[1] for t in out["rl_gain"] if (g := paired_gain(raw_sft, raw_rl, t)) is not None}
        if ci:
            out["rl_gain_ci95"] = ci
    return out


def stages_run(run: RunFolder, records: list[dict]) -> list[str]:
    """Stage names in the order they first ran (from the ledger), then any done marker not in it."""
    seen: list[str] = []
    for rec in records:
        name = str(rec.get("stage", ""))
        if name and name not in seen:
            seen.append(name)
    from saessak.runfolder import STAGES

    for stage in STAGES:
        alias = "pretrain" if stage == "base" else stage
        if run.is_done(stage) and stage not in seen and alias not in seen:
            seen.append(stage)
    return seen


# ----------------------------------------------------------------------------- build / write


def build_report(run_dir: str | os.PathLike, prices: str | os.PathLike | None = None,
                 command: str | None = None) -> dict[str, Any]:
    from saessak import __version__
    from saessak.costs import ledger_costs, load_prices
    from saessak.projection import project

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
        "speedrun": _read_json_or_none(run.root / "speedrun.json"),
        "git_commit": git_commit(),
        "saessak_version": __version__,
        "stages": stages_run(run, records),
        "data": data_section(run),
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
        "eval": eval_section(run),
        "projection": project(table, ledger),
        "plots": [],
    }


def write_report(run_dir: str | os.PathLike, prices: str | os.PathLike | None = None,
                 command: str | None = None) -> dict[str, Any]:
    """Build the report, draw the plots, and write report.json and report.md atomically."""
    from saessak.io import write_json, write_text
    from saessak.report_md import render_markdown
    from saessak.report_plots import plot_stage

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
