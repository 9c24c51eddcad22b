"""The model card (README.md) that travels with exported weights.

It carries the run's data card summary, the audited cost ledger (every attempt, beside the whole
project's spend when the run sits in a folder with others), the evaluation and the licence,
each read from the run folder where its stage left it (RUN/data/data_card.json, RUN/ledger.jsonl,
RUN/eval/results.json) and rendered by the code that owns it, the same code the run's report
uses. Money comes from the ledger's measured facts and a price table (`--prices FILE` over
saessak/prices.toml), as in the report: the same table gives the same figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from saessak import __version__
from saessak.data.card import read_summary, summary_markdown
from saessak.evals import results
from saessak.io import fmt, read_json_or_none
from saessak.ledger import (
    git_commit,
    ledger_costs,
    load_prices,
    markdown_table,
    project_sentence,
    project_summary,
    read_ledger,
)
from saessak.model.checkpoint import load_config
from saessak.model.loading import Finished

LICENSE = "apache-2.0"


def _data_licences(data: dict | None) -> list[str]:
    if not data:
        return []
    out = []
    for s in data.get("sources", []):
        lic = s.get("licence") or s.get("license")
        if lic:
            out.append(f"{s.get('name', '?')}: {lic}")
    return out


def render_model_card(src: Finished, prices: str | os.PathLike | None = None,
                      exclude_attempt: str | None = None) -> str:
    """The card; `exclude_attempt` leaves out the export's own attempt (still running)."""
    table = load_prices(prices)
    records = [r for r in read_ledger(src.run.root) if not exclude_attempt or r.get("attempt") != exclude_attempt]
    ledger = ledger_costs(records, table)
    total = ledger["total"]
    head = ledger["headline"]
    data = read_summary(src.run.data)
    ev = results.summary(src.run)
    mc = load_config(src.checkpoint)
    cfg = mc.to_dict()
    meta_path = src.checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    params = mc.num_parameters()
    deepseek = mc.architecture == "DeepseekV3ForCausalLM"
    # A run that started from an open checkpoint (saessak import hf) says so, and its own class and template.
    origin = (read_json_or_none(src.run.final_checkpoint("pretrain") / "meta.json") or {}).get("imported_from")
    licences = _data_licences(data)
    lines = [
        "---",
        f"license: {LICENSE}",
        "language:\n- ko",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags:\n- saessak\n- " + ("deepseek_v3\n- moe" if deepseek else "llama") + "\n- korean",
        "---",
        "",
        f"# saessak (새싹) — {src.stage} model, {fmt(params)} parameters",
        "",
        (f"`{Path(origin).name}` fine-tuned with saessak from the imported checkpoint (stage `{src.stage}`). "
         if origin else f"A Korean-first {'DeepSeek-V3' if deepseek else 'Llama'}-architecture model trained end to "
         f"end with saessak "
         f"(stage `{src.stage}`, preset `{meta.get('preset') or '—'}`). ")
        + f"It loads with no custom code (`{mc.architecture}`).",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'tok = AutoTokenizer.from_pretrained("PATH")',
        'model = AutoModelForCausalLM.from_pretrained("PATH")',
        'ids = tok.apply_chat_template([{"role": "user", "content": "안녕하세요"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]',
        "out = model.generate(ids, max_new_tokens=64)",
        "print(tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True))",
        "```",
        "",
        ("Chat format: the model's own chat template (chat_template.jinja or tokenizer_config.json); generation "
         "stops at its eos_token_id." if origin else
         "Chat format: `<s><|system|>…<|end|><|user|>…<|end|><|assistant|>…<|end|>`; generation stops at `<|end|>`."),
        "",
        "## Model",
        "",
        f"{cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, MLP {cfg['intermediate_size']}, "
        f"{cfg['num_attention_heads']} heads ({cfg['num_key_value_heads']} KV), vocabulary {cfg['vocab_size']}, "
        f"context {cfg['max_position_embeddings']}, tied embeddings: {cfg['tie_word_embeddings']}."
        + (f" Mixture of experts: {cfg['n_routed_experts']} routed experts ({cfg['num_experts_per_tok']} per token) "
           f"and {cfg['n_shared_experts']} shared, from layer {cfg['first_k_dense_replace']}; multi-head latent "
           f"attention (latent {cfg['kv_lora_rank']}); {fmt(mc.num_active_parameters())} parameters active per "
           f"token. The multi-token-prediction modules trained with it are not exported."
           if deepseek else ""),
        "",
        "## Training data",
        "",
        summary_markdown(data),
        "",
        "## Training cost (measured, from the run's ledger)",
        "",
        markdown_table(ledger) if ledger["stages"] else "_Empty ledger._",
        "",
        f"Total: **{fmt(total['cost_krw'], 2)} KRW** (USD {fmt(total['cost_usd'], 4)}) at the prices in "
        f"`{table.source}`; {fmt(total['energy_kwh'], 4)} kWh (nameplate power x PUE).",
        "",
        project_sentence(total, project_summary(src.run.root, table))
        + f" The attempts that built the model ({', '.join(head['stages']) or 'none'}) cost "
        f"{fmt(head['cost_krw'], 2)} KRW of it; the rest is evaluation, reports, exports and attempts that failed "
        "or were redone.",
        "",
        "## Evaluation",
        "",
        f"Val bits per byte after pretraining: {fmt(ev['pretrain'].get('bpb'), 4)}. "
        f"Task accuracy (held-out {ev.get('split', 'test')} split, greedy):",
        "",
        results.markdown_table(ev),
        "",
        "## Licence",
        "",
        "Code and weights: Apache-2.0. Training data licences: "
        + ("; ".join(licences) if licences else "see the run's data card")
        + ". Personal data (Korean RRN, phone, card, account numbers, ...) was masked before training.",
        "",
        "## Limitations",
        "",
        "A small model trained on a small corpus: it makes mistakes, including factual ones; "
        "check what it writes before relying on it.",
        "",
        f"_Built from run `{src.run.root}`, git commit `{git_commit()}`, saessak {__version__}._",
    ]
    return "\n".join(lines) + "\n"
