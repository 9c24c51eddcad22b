"""Markdown rendering of a report dict (saessak.report.build_report): RUN/report.md and the model card."""

from __future__ import annotations

from typing import Any


def fmt(v: Any, digits: int = 3) -> str:
    """Numbers for people: thousands separators, no trailing zeros, scientific only when huge or tiny."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e9 or abs(v) < 1e-3:
            return f"{v:.3g}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        s = f"{v:,.{digits}f}"
        return s.rstrip("0").rstrip(".") if "." in s else s
    return str(v)


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _device(d: dict | None) -> str:
    if not d:
        return "—"
    if d.get("type") == "cuda":
        return f"{d.get('gpu_count', 1)}x {d.get('gpu')}"
    return f"{d.get('cpu', 'CPU')} ({d.get('cpu_cores')} cores)"


def eval_table(ev: dict) -> str:
    tasks = sorted(set(ev["base"]["tasks"]) | set(ev["sft"]["tasks"]) | set(ev["rl"]["tasks"]))
    if not tasks:
        return "_No task evaluation in this run._"
    rows = []
    for t in tasks:
        gain, ci = ev.get("rl_gain", {}).get(t), ev.get("rl_gain_ci95", {}).get(t)
        shown = "—" if gain is None else f"{100 * gain:+.1f} pt" + ("" if ci is None else f" ± {100 * ci:.1f}")
        rows.append([t, pct(ev["base"]["tasks"].get(t)), pct(ev["sft"]["tasks"].get(t)), pct(ev["rl"]["tasks"].get(t)),
                     shown])
    out = table(["task family", "base", "SFT", "RL", "RL − SFT"], rows)
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


def ledger_table(ledger: dict) -> str:
    rows = []
    for stage, s in ledger["stages"].items():
        rows.append([stage, s["runs"], fmt(s["wall_s"], 1), fmt(s["cpu_s"], 1), _device(s.get("device")),
                     fmt(s["tokens"] or None), fmt(s["flops"] or None), pct(s.get("mfu")) if s.get("mfu") is not None else "—",
                     fmt(s.get("watts"), 1), fmt(s["energy_kwh"], 3), fmt(s["cost_krw"], 2), fmt(s["cost_usd"], 4)])
    t = ledger["total"]
    rows.append(["**total**", "", fmt(t["wall_s"], 1), fmt(t["cpu_s"], 1), "", fmt(t["tokens"] or None),
                 fmt(t["flops"] or None), "", "", fmt(t["energy_kwh"], 3), f"**{fmt(t['cost_krw'], 2)}**", f"**{fmt(t['cost_usd'], 4)}**"])
    out = table(["stage", "runs", "wall s", "CPU s", "device", "tokens", "FLOPs", "MFU", "power W", "kWh", "KRW", "USD"], rows)
    sources = sorted({s["watts_source"] for s in ledger["stages"].values() if s.get("watts_source")})
    if sources:
        out += "\n\nPower figures: " + "; ".join(sources) + "."
    return out


def _counts(d: Any) -> str:
    if not isinstance(d, dict):
        return "—"
    return ", ".join(f"{k} {v:,}" for k, v in d.items() if isinstance(v, int) and v) or "none"


def data_summary(data: dict | None) -> str:
    if not data:
        return "_No data card in this run._"
    rows = [[str(s.get("name", "?")), s.get("origin") or "—", s.get("licence") or "—",
             f"{fmt(s.get('documents_in'))} → {fmt(s.get('documents_out'))}", fmt(s.get("characters_out")),
             fmt(s.get("hangul_syllables_out")), _counts(s.get("pii_masked"))]
            for s in data.get("sources", [])]
    out = [table(["source", "origin", "licence", "documents in → out", "characters out", "Hangul syllables",
                  "PII masked"], rows)] if rows else []
    t = data.get("totals") or {}
    if t:
        out.append(f"\nTotal: {fmt(t.get('documents_out'))} documents, {fmt(t.get('characters_out'))} characters; "
                   f"PII masked: {_counts(t.get('pii_masked'))}; documents dropped: {_counts(t.get('documents_dropped'))}; "
                   f"duplicates removed: {_counts(t.get('dedup_removed'))}.")
    sp = data.get("split") or {}
    if isinstance(sp.get("train"), dict) and isinstance(sp.get("val"), dict):
        out.append(f"Split ({sp.get('method', '?')}): train {fmt(sp['train'].get('documents'))} documents, "
                   f"val {fmt(sp['val'].get('documents'))} documents.")
    return "\n".join(out) or "_Empty data card._"


def projection_table(proj: dict) -> str:
    rows = []
    for p in proj["presets"]:
        for gpu, g in p["gpus"].items():
            rows.append([p["preset"], fmt(p["params"]), fmt(float(p["tokens"])), fmt(p["flops"]), gpu,
                         fmt(g["gpu_hours"], 1), fmt(g["wall_hours_8gpu"], 2), fmt(g["cost_usd"], 0), fmt(g["cost_krw"], 0)])
    ref = proj["reference"]
    rows.append([ref["name"], "671B (37B active)", "14.8T", "—", ref.get("gpu") or "—", fmt(ref.get("gpu_hours")), "—",
                 fmt(ref.get("cost_usd")), fmt(ref.get("cost_krw"), 0)])
    a = proj["assumptions"]
    notes = (f"Assumptions: MFU {pct(a['mfu'])}, {a['gpus_per_run']} GPUs per run; tokens = {a['tokens']}; "
             f"FLOPs = {a['flops']} (SFT+RL fraction from this run: {fmt(a['sft_rl_flops_fraction_of_pretrain'])}). "
             f"Reference: {ref.get('source')}.")
    return table(["recipe", "params", "tokens", "FLOPs", "GPU", "GPU-hours", "hours on 8 GPUs", "USD", "KRW"], rows) + "\n\n" + notes


def _one_line(text: Any) -> str:
    if isinstance(text, list):  # chat messages
        text = " / ".join(str(m.get("content", "")) for m in text if isinstance(m, dict))
    return " ⏎ ".join(str(text).strip().splitlines()) or "(empty)"


def sample_lines(ev: dict, per_task: int = 1) -> list[str]:
    """A few evaluation conversations of the last model stage (one per task family)."""
    stage = next((s for s in ("rl", "sft", "base") if ev.get(s, {}).get("samples")), None)
    if stage is None:
        return []
    lines = ["", f"### Sample conversations ({stage} model, held-out test items, greedy)", ""]
    seen: dict[str, int] = {}
    for s in ev[stage]["samples"]:
        if not isinstance(s, dict):
            continue
        task = str(s.get("task", "?"))
        if seen.get(task, 0) >= per_task:
            continue
        seen[task] = seen.get(task, 0) + 1
        mark = "correct" if s.get("correct") else "wrong"
        lines.append(f"- **{task}** (level {s.get('level', '?')}, {mark}; expected `{_one_line(s.get('answer', ''))}`)  \n"
                     f"  user: {_one_line(s.get('prompt', ''))}  \n  assistant: {_one_line(s.get('response', ''))}")
    return lines


def render_markdown(r: dict) -> str:
    ev, led, pr = r["eval"], r["ledger"], r["prices"]
    total = led["total"]
    parts = [
        f"# saessak run report — `{r['run']}`",
        "",
        f"- date: {r['date']}  \n- git commit: `{r.get('git_commit')}`  \n- saessak {r.get('saessak_version')}  \n"
        f"- command: `{r.get('command') or '—'}`  \n- stages: {', '.join(r['stages']) or '—'}",
        "",
        "## Headline",
        "",
        f"Total cost of this run: **{fmt(total['cost_krw'], 2)} KRW** (USD {fmt(total['cost_usd'], 4)}), "
        f"{fmt(total['wall_s'], 1)} s wall, {fmt(total['flops'] or None)} FLOPs, {fmt(total['energy_kwh'], 4)} kWh. "
        f"Val bits per byte after pretraining: **{fmt(ev['base'].get('bpb'), 4)}**.",
        "",
        eval_table(ev),
        "",
        "## Data",
        "",
        data_summary(r.get("data")),
        "",
        "## Tokenizer",
        "",
    ]
    tok = r.get("tokenizer") or {}
    flat_tok = {k: v for k, v in tok.items() if not isinstance(v, (dict, list))}
    overall = tok.get("overall") if isinstance(tok.get("overall"), dict) else tok.get("val") if isinstance(tok.get("val"), dict) else {}
    flat_tok.update({k: v for k, v in (overall or {}).items() if not isinstance(v, (dict, list))})
    parts.append("\n".join(f"- {k}: {fmt(v, 4)}" for k, v in flat_tok.items()) or "_No tokenizer stats._")
    parts += ["", "## Model", ""]
    m = r.get("model")
    if m:
        c = m["config"]
        parts.append(f"- stage exported/evaluated last: {m['stage']}, preset: {m.get('preset') or '—'}\n"
                     f"- parameters: {fmt(m['params'])} ({fmt(m['params_non_embedding'])} without embeddings)\n"
                     f"- shape: {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, MLP {c['intermediate_size']}, "
                     f"{c['num_attention_heads']} heads ({c['num_key_value_heads']} KV), vocab {c['vocab_size']}, "
                     f"context {c['max_position_embeddings']}, tied embeddings {c['tie_word_embeddings']}")
    else:
        parts.append("_No finished model._")
    parts += [
        "", "## Cost ledger", "",
        ledger_table(led) if led["stages"] else "_Empty ledger._",
        "",
        f"Money = device-hours x hourly price; energy = device-hours x power x PUE {fmt(pr['pue'])} "
        f"(nameplate power, an upper bound); KRW at {fmt(pr['usd_to_krw'])} KRW/USD ({pr.get('usd_to_krw_date')}). "
        f"CPU: {pr['cpu'].get('name')}, USD {pr['cpu'].get('usd_per_hour')}/h for {pr['cpu'].get('vcpus')} vCPUs "
        f"({pr['cpu'].get('price_source')}); power {pr['cpu'].get('watts')} W ({pr['cpu'].get('watts_source')}). "
        f"Electricity alone (own machine, {fmt(pr['electricity_krw_per_kwh'])} KRW/kWh): "
        f"{fmt(total['power_cost_krw'], 3)} KRW. Price table: {pr['source']}.",
        "", "## Evaluation", "",
        f"- val bits per byte (base): {fmt(ev['base'].get('bpb'), 4)}",
        "",
        eval_table(ev),
    ]
    parts += sample_lines(ev)
    parts += ["", "## Projection to GPUs", "", projection_table(r["projection"])]
    if r.get("plots"):
        parts += ["", "## Plots", ""] + [f"![{p}]({p})" for p in r["plots"]]
    return "\n".join(parts) + "\n"
