"""The eval stage's results: where they are kept, how two stages compare, and the summary that the
run's report and the model card carry.

RUN/eval/results.json (the held-out test split) holds one entry per model stage; other splits
go to results_<split>.json. Entries written before the pretraining stage had one name are keyed
`base`; they are read as `pretrain`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from saessak.errors import UserError
from saessak.io import md_table, pct, read_json, read_json_or_none, read_jsonl
from saessak.runfolder import LEGACY_NAMES, MODEL_STAGES, RunFolder


def results_path(rf: RunFolder, split: str = "test") -> Path:
    """The held-out test split's results (the report's); other splits' results are kept apart."""
    return rf.stage_dir("eval") / ("results.json" if split == "test" else f"results_{split}.json")


def read_results(rf: RunFolder, split: str = "test") -> dict:
    """{stage: result} of a run ({} when nothing was evaluated); old stage names are read as today's."""
    p = results_path(rf, split)
    results = read_json(p) if p.exists() else {}
    if not isinstance(results, dict):
        raise UserError(f"{p}: expected a JSON object of results by stage")
    for old, new in LEGACY_NAMES.items():
        if old in results and new not in results:
            results[new] = results.pop(old)
    return results


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def paired_gain(before: dict, after: dict, family: str) -> tuple[float, float] | None:
    """(after - before accuracy, half-width of its 95 % interval) from per-item outcomes, when both
    results scored the same items; None otherwise. The interval is the normal one for a paired mean
    difference: 1.96 * sd(d) / sqrt(N) with d = after_i - before_i in {-1, 0, 1}."""
    a, b = (before.get("correct") or {}).get(family), (after.get("correct") or {}).get(family)
    same = (before.get("items_sha") or {}).get(family) == (after.get("items_sha") or {}).get(family)
    if not a or not b or len(a) != len(b) or not same or len(a) < 2:
        return None
    d = [int(y) - int(x) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    return mean, 1.96 * (var / n) ** 0.5


def _accuracy(v: Any) -> float | None:
    """A task result may be a bare accuracy or a dict holding one under a known name."""
    if _num(v) is not None:
        return _num(v)
    if isinstance(v, dict):
        for key in ("accuracy", "acc", "greedy", "pass@1", "greedy_accuracy", "score"):
            if _num(v.get(key)) is not None:
                return _num(v[key])
    return None


def _pretrain_bpb(run: RunFolder) -> float | None:
    done = read_json_or_none(run.done_path("pretrain")) or {}
    for key in ("val_bpb", "bpb", "final_val_bpb"):
        if _num(done.get(key)) is not None:
            return _num(done[key])
    for rec in reversed(read_jsonl(run.stage_dir("pretrain") / "metrics.jsonl")):
        if _num(rec.get("val_bpb")) is not None:
            return _num(rec["val_bpb"])
    return None


def summary(run: RunFolder) -> dict[str, Any]:
    """Per model stage: task accuracy (greedy, held-out test split) and the eval's settings; the
    pretrained model's val bits per byte; RL - SFT per family with its paired 95 % interval."""
    try:
        results = read_results(run)
    except UserError:  # a damaged results file: the report still shows everything else
        results = {}
    out: dict[str, Any] = {}
    for stage in MODEL_STAGES:
        raw = results.get(stage) if isinstance(results.get(stage), dict) else {}
        tasks = {name: acc for name, v in (raw.get("tasks") or {}).items() if (acc := _accuracy(v)) is not None}
        out[stage] = {"tasks": tasks, "details": raw.get("tasks") or {}}
        for key in ("samples", "n", "seed", "levels", "items"):
            if key in raw:
                out[stage][key] = raw[key]
    out["pretrain"]["bpb"] = _pretrain_bpb(run)
    sft, rl = out["sft"]["tasks"], out["rl"]["tasks"]
    out["rl_gain"] = {t: rl[t] - sft[t] for t in rl if t in sft}
    # 95 % half-widths of the gains, paired over the same items (when both stages kept per-item outcomes)
    raw_sft, raw_rl = results.get("sft"), results.get("rl")
    if isinstance(raw_sft, dict) and isinstance(raw_rl, dict):
        ci = {t: g[1] for t in out["rl_gain"] if (g := paired_gain(raw_sft, raw_rl, t)) is not None}
        if ci:
            out["rl_gain_ci95"] = ci
    return out


def markdown_table(ev: dict) -> str:
    """A `summary` as a Markdown table of accuracy per family and stage, with how it was measured."""
    tasks = sorted(set().union(*(ev[s]["tasks"] for s in MODEL_STAGES)))
    if not tasks:
        return "_No task evaluation in this run._"
    rows = []
    for t in tasks:
        gain, ci = ev.get("rl_gain", {}).get(t), ev.get("rl_gain_ci95", {}).get(t)
        shown = "—" if gain is None else f"{100 * gain:+.1f} pt" + ("" if ci is None else f" ± {100 * ci:.1f}")
        rows.append([t, *(pct(ev[s]["tasks"].get(t)) for s in MODEL_STAGES), shown])
    out = md_table(["task family", "pretrain", "SFT", "RL", "RL − SFT"], rows)
    rl = ev.get("rl") or ev.get("sft") or {}
    if rl.get("n"):
        levels = rl.get("levels", "all")
        lv = "1-5 as the suite draws them" if levels == "all" else ", ".join(str(x) for x in levels)
        items = rl.get("items") or {}
        counts = f" ({', '.join(f'{t} {items[t]}' for t in tasks if t in items)})" if items else ""
        out += (f"\n\nGreedy accuracy on the held-out test split: up to {rl['n']} distinct items per family"
                f"{counts}, levels {lv}, seed {rl.get('seed')}.")
        if ev.get("rl_gain_ci95"):
            out += (" ± is the 95 % interval of RL − SFT, paired over the same items "
                    "(1.96 × sd of the per-item differences / √N).")
    return out
