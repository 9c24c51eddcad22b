"""The eval stage's results: where they are kept, how two stages compare, and the summary that the
run's report and the model card carry.

RUN/eval/results_final.json (the sealed `final` split, tasks/base.py) holds one entry per model
stage and is what the report and the model card read; RUN/eval/results.json holds the `test`
split's (the reported split of runs made before `final` existed, read when a run has no final
results, and labelled as such); other splits go to results_<split>.json. Entries written before
the pretraining stage had one name are keyed `base`; they are read as `pretrain`.

Reading an interval (docs/RL.md#reading-the-numbers): a difference with 95 % half-width h is
judged against a line L with both ends of its interval. It meets "at least L" only when the lower
end d - h clears L, fails it when the upper end d + h is below L, and is inconclusive when the
interval straddles L. "No drop by more than 2 points" is "at least -2" read the same way.
"""

from __future__ import annotations

import math
from typing import Any

from saessak.errors import UserError
from saessak.io import md_table, pct, read_json, read_json_or_none, read_jsonl
from saessak.runfolder import LEGACY_NAMES, MODEL_STAGES, REPORTED_SPLIT, RunFolder


def reported_split(rf: RunFolder) -> str:
    """The split a run's report reads: the sealed `final` split once the run has results on it,
    else `test` (a run made before `final` existed)."""
    return REPORTED_SPLIT if rf.eval_results(REPORTED_SPLIT).exists() else "test"


def judge(diff: float, half: float | None, line: float) -> str:
    """`met`, `not met` or `inconclusive`: is `diff` at least `line`, read with both ends of its
    95 % interval (half-width `half`; None: no interval, so only the point is known)."""
    if half is None:
        return "inconclusive"
    if diff - half >= line:
        return "met"
    if diff + half < line:
        return "not met"
    return "inconclusive"


def direction(diff: float, half: float | None) -> str:
    """`up`, `down` or `no clear change`: which side of zero the whole 95 % interval lies on."""
    if half is None:
        return "no interval"
    if diff - half > 0:
        return "up"
    if diff + half < 0:
        return "down"
    return "no clear change"


def read_results(rf: RunFolder, split: str = "test") -> dict:
    """{stage: result} of a run ({} when nothing was evaluated); old stage names are read as today's."""
    p = rf.eval_results(split)
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
    """Per model stage: task accuracy (greedy, on the reported split) and the eval's settings; the
    pretrained model's val bits per byte; RL - SFT per family with its paired 95 % interval and
    which side of zero that interval lies on."""
    split = reported_split(run)
    try:
        results = read_results(run, split)
    except UserError:  # a damaged results file: the report still shows everything else
        results = {}
    out: dict[str, Any] = {"split": split}
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
    out["rl_gain_reading"] = {t: direction(g, out.get("rl_gain_ci95", {}).get(t)) for t, g in out["rl_gain"].items()}
    return out


SPLIT_WORDS = {
    "final": "the sealed final split (read only by the speedrun's final eval and this report)",
    "test": "the test split (not sealed: earlier runs' test results informed the recipe; "
            "`saessak eval tasks --split final` gives the sealed estimate)",
}


def markdown_table(ev: dict) -> str:
    """A `summary` as a Markdown table of accuracy per family and stage, with how it was measured."""
    tasks = sorted(set().union(*(ev[s]["tasks"] for s in MODEL_STAGES)))
    if not tasks:
        return "_No task evaluation in this run._"
    rows = []
    for t in tasks:
        gain, ci = ev.get("rl_gain", {}).get(t), ev.get("rl_gain_ci95", {}).get(t)
        shown = "—" if gain is None else f"{100 * gain:+.1f} pt" + ("" if ci is None else f" ± {100 * ci:.1f}")
        reading = ev.get("rl_gain_reading", {}).get(t, "—")
        rows.append([t, *(pct(ev[s]["tasks"].get(t)) for s in MODEL_STAGES), shown, reading])
    out = md_table(["task family", "pretrain", "SFT", "RL", "RL − SFT", "reading"], rows)
    rl = ev.get("rl") or ev.get("sft") or {}
    if rl.get("n"):
        levels = rl.get("levels", "all")
        lv = "1-5 as the suite draws them" if levels == "all" else ", ".join(str(x) for x in levels)
        items = rl.get("items") or {}
        counts = f" ({', '.join(f'{t} {items[t]}' for t in tasks if t in items)})" if items else ""
        split = ev.get("split", "test")
        out += (f"\n\nGreedy accuracy on {SPLIT_WORDS.get(split, f'the {split} split')}: up to {rl['n']} "
                f"distinct items per family{counts}, levels {lv}, seed {rl.get('seed')}.")
        if ev.get("rl_gain_ci95"):
            out += (" ± is the 95 % interval of RL − SFT, paired over the same items "
                    "(1.96 × sd of the per-item differences / √N); the reading says which side of zero the "
                    "whole interval lies on (`no clear change` when it straddles zero).")
    return out
