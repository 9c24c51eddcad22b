"""Markdown rendering of a report dict (saessak.report.build.build_report): RUN/report.md.

The tables of the data card, the evaluation and the ledger are rendered by the code that owns
them (data.card, evals.results, ledger), the same tables the model card carries.
"""

from __future__ import annotations

from typing import Any

from saessak.data.card import summary_markdown
from saessak.report.pii_section import pii_lines
from saessak.evals.results import markdown_table as eval_table
from saessak.io import fmt, md_table, pct
from saessak.ledger import markdown_table as ledger_table
from saessak.ledger import project_sentence
from saessak.runfolder import MODEL_STAGES


def projection_table(proj: dict) -> str:
    rows = []
    for p in proj["presets"]:
        for gpu, g in p["gpus"].items():
            rows.append([p["preset"], fmt(p["params"]), fmt(p.get("active_params", p["params"])),
                         fmt(p.get("flops_per_token")), fmt(p.get("kv_bytes_per_token")),
                         fmt(float(p["tokens"])), fmt(p["flops"]), gpu,
                         fmt(g["gpu_hours"], 1), fmt(g["wall_hours_8gpu"], 2), fmt(g["cost_usd"], 0), fmt(g["cost_krw"], 0)])
    ref = proj["reference"]
    rows.append([ref["name"], "671B", "37B", "—", "—", "14.8T", "—", ref.get("gpu") or "—", fmt(ref.get("gpu_hours")), "—",
                 fmt(ref.get("cost_usd")), fmt(ref.get("cost_krw"), 0)])
    a = proj["assumptions"]
    notes = (f"Assumptions: MFU {pct(a['mfu'])}, {a['gpus_per_run']} GPUs per run; tokens = {a['tokens']}; "
             f"FLOPs = {a['flops']} (SFT+RL fraction from this run: {fmt(a['sft_rl_flops_fraction_of_pretrain'])}). "
             f"Reference: {ref.get('source')}.")
    return md_table(["recipe", "params", "active params", "FLOPs/token", "KV bytes/token (bf16)", "tokens", "FLOPs",
                     "GPU", "GPU-hours", "hours on 8 GPUs", "USD", "KRW"], rows) + "\n\n" + notes


def _one_line(text: Any) -> str:
    if isinstance(text, list):  # chat messages
        text = " / ".join(str(m.get("content", "")) for m in text if isinstance(m, dict))
    return " ⏎ ".join(str(text).strip().splitlines()) or "(empty)"


def sample_lines(ev: dict, per_task: int = 1) -> list[str]:
    """A few evaluation conversations of the last model stage (one per task family)."""
    stage = next((s for s in reversed(MODEL_STAGES) if ev.get(s, {}).get("samples")), None)
    if stage is None:
        return []
    lines = ["", f"### Sample conversations ({stage} model, held-out {ev.get('split', 'test')} items, greedy)", ""]
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


def _cpu_row_text(row: dict) -> str:
    # How the row was chosen (a nearest-row note) is said under the ledger table.
    return (f"CPU: {row.get('name')}, USD {row.get('usd_per_hour')}/h for {row.get('vcpus')} vCPUs "
            f"({row.get('price_source')}); power {row.get('watts')} W ({row.get('watts_source')}).")


def _whole_bill(r: dict) -> list[str]:
    """This run's cost beside its model's headline and the whole project's spend (ledger.project_sentence)."""
    led = r["ledger"]
    head = led.get("headline")
    lines = [project_sentence(led["total"], r.get("project"))]
    if head:
        lines.append(f"Of this run's {led['total'].get('attempts', '?')} attempts, the ones that built its "
                     f"model ({', '.join(head['stages']) or 'none'}: each stage's last finished attempt and the "
                     f"attempts it resumed from) cost {fmt(head['cost_krw'], 2)} KRW, the headline; evaluations, "
                     "reports, exports and attempts that failed or were redone are the rest.")
    return [" ".join(lines), ""]


def _precision_text(p: dict) -> str:
    from saessak.model.precision import PrecisionChoice

    fields = set(PrecisionChoice.__dataclass_fields__)
    return PrecisionChoice(**{k: v for k, v in p.items() if k in fields}).describe()


def speed_lines(r: dict) -> list[str]:
    """What the run measured to choose its precision, and the speedrun's time plan."""
    prec, plan = r.get("precision") or {}, r.get("plan")
    if not prec and not plan:
        return []
    out = ["", "## Speed: precision and time plan", ""]
    for stage, p in prec.items():
        if isinstance(p, dict) and "dtype" not in p:  # RL: its training passes and its rollouts
            out += [f"- {stage} {part}: {_precision_text(q)}" for part, q in p.items() if isinstance(q, dict)]
        elif isinstance(p, dict):
            out.append(f"- {stage}: {_precision_text(p)}")
    if plan:
        m, est = plan.get("measured") or {}, plan.get("estimate_s") or {}
        rec = plan.get("recipe") or {}
        out += ["", f"Time plan for a {fmt(plan.get('budget_s', 0) / 60, 1)}-minute budget (saessak/report/plan.py): "
                    f"{plan.get('note')}. Measured at the start: one SFT step {fmt(m.get('sft_step_s'), 3)} s "
                    f"({m.get('sft_dtype')}), decoding {fmt((m.get('decode_s_per_token') or 0) * 1e3, 2)} ms per "
                    f"token ({m.get('decode_dtype')}), {fmt(m.get('eval_items'))} evaluation items. Predicted with "
                    f"the recipe: " + ", ".join(f"{k} {fmt(v, 0)} s" for k, v in est.items()) + ".",
                f"SFT steps: {fmt(plan.get('sft_max_steps'))} (recipe {fmt(rec.get('sft_max_steps'))}); RL budget: "
                f"{fmt((plan.get('rl_reset') or {}).get('rl_time_budget_s', plan.get('rl_time_budget_s')))} s "
                f"(recipe {fmt(rec.get('rl_time_budget_s'))} s"
                + (f"; re-set when RL started, {fmt(plan['rl_reset']['elapsed_s'], 0)} s into the run"
                   if plan.get("rl_reset") else "") + ")."]
        cut, sft_reset = r.get("sft_time_budget"), plan.get("sft_reset")
        if sft_reset:
            line = (f"SFT's deadline: {fmt(sft_reset.get('sft_time_budget_s'), 0)} s, set when SFT started "
                    f"{fmt(sft_reset.get('elapsed_s'), 0)} s into the run (it leaves RL its minimum)")
            if isinstance(cut, dict):
                line += (f"; at step {fmt(cut.get('at_step'))} SFT measured {fmt(cut.get('step_s'), 3)} s a step and "
                         f"{fmt(cut.get('val_s'), 1)} s a validation pass and "
                         + (f"cut its steps from {fmt(cut.get('from'))} to {fmt(cut.get('to'))}"
                            if cut.get("to") != cut.get("from") else f"kept its {fmt(cut.get('from'))} steps"))
            out.append(line + ".")
    return out


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
        f"Val bits per byte after pretraining: **{fmt(ev['pretrain'].get('bpb'), 4)}**.",
        "",
        *_whole_bill(r),
        eval_table(ev),
        "",
        "## Data",
        "",
        summary_markdown(r.get("data")),
        "",
        *pii_lines(r.get("pii")),
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
        + " ".join(_cpu_row_text(row) for row in (pr.get("cpu_rows") or {"cpu": pr["cpu"]}).values())
        + f" Electricity alone (own machine, {fmt(pr['electricity_krw_per_kwh'])} KRW/kWh): "
        f"{fmt(total['power_cost_krw'], 3)} KRW. Price table: {pr['source']}."
        + ("".join(f"\n\n- not counted: {p}" for p in led.get("problems") or [])),
        "", "## Evaluation", "",
        f"- val bits per byte (pretrain): {fmt(ev['pretrain'].get('bpb'), 4)}",
        "",
        eval_table(ev),
    ]
    parts += sample_lines(ev)
    parts += speed_lines(r)
    parts += ["", "## Projection to GPUs", "", projection_table(r["projection"])]
    if r.get("plots"):
        parts += ["", "## Plots", ""] + [f"![{p}]({p})" for p in r["plots"]]
    return "\n".join(parts) + "\n"
