"""The whole pipeline at micro scale, through the real stages: data -> ... -> report -> export.

CI runs this (marked e2e, not slow). It checks the outputs other tools rely on, that the exported
Hugging Face folder loads offline and matches our model, and that a second run skips every stage.
"""

import json
import os
import time

import pytest

from saessak.cli import main

pytestmark = pytest.mark.e2e

# `micro_run` (tests/conftest.py): one micro speedrun per session, shared with bench/speedrun_time.py's smoke test.


def test_every_stage_left_its_output(micro_run):
    run, _ = micro_run
    for marker in ("data/done.json", "tokenizer/done.json", "pretrain/done.json", "sft/done.json", "rl/done.json",
                   "eval/results_final.json", "report.json", "report.md", "export/hf/config.json",
                   "export/hf/README.md", "export/model.gguf", "speedrun.json"):
        assert (run / marker).exists(), marker
    steps = json.loads((run / "speedrun.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["ran"] * len(steps)


def test_report_has_the_keys_other_tools_rely_on(micro_run):
    run, _ = micro_run
    r = json.loads((run / "report.json").read_text())
    assert {"data", "tokenizer", "pretrain", "sft", "rl", "eval"} <= set(r["stages"])
    total = r["ledger"]["total"]
    assert total["wall_s"] > 0 and total["flops"] > 0 and total["cost_krw"] > 0 and total["cost_usd"] > 0
    assert r["eval"]["pretrain"]["bpb"] > 0
    assert r["eval"]["split"] == "final"  # the speedrun's report reads the sealed split
    for stage in ("sft", "rl"):
        tasks = r["eval"][stage]["tasks"]
        assert tasks and all(0.0 <= v <= 1.0 for v in tasks.values())
    assert any(p.endswith("pretrain_loss.png") for p in r["plots"])
    assert r["data"]["sources"] and r["tokenizer"]["vocab_size"] > 0
    # The report names the speedrun that built the run (what to rerun), not only its own command.
    assert r["speedrun"]["command"].startswith("saessak speedrun --preset micro")


def test_exported_folder_loads_in_transformers_and_matches(micro_run):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from saessak.tokenizer.chat_format import render
    from saessak.model.checkpoint import load_model
    from saessak.tokenizer import Tokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    run, _ = micro_run
    hf = run / "export" / "hf"
    tok = AutoTokenizer.from_pretrained(hf, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(hf, local_files_only=True, dtype=torch.float32).eval()
    ours = load_model(run / "rl" / "final").eval()
    ours_tok = Tokenizer.load(run / "tokenizer")
    msgs = [{"role": "user", "content": "사과 3개와 배 2개는 모두 몇 개인가요?"}]
    ids = render(ours_tok, msgs, add_generation_prompt=True).ids
    out = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    assert list(out["input_ids"] if hasattr(out, "keys") else out) == ids
    with torch.no_grad():
        x = torch.tensor([ids])
        assert (model(x).logits - ours(x)).abs().max().item() < 1e-4


def test_second_run_skips_complete_stages(micro_run, capsys):
    run, first_wall = micro_run
    t0 = time.perf_counter()
    assert main(["speedrun", "--preset", "micro", "--run", str(run)]) == 0
    steps = json.loads((run / "speedrun.json").read_text())["steps"]
    assert {s["status"] for s in steps} == {"skipped"}
    assert time.perf_counter() - t0 < 10
    assert first_wall < 240 * 2  # budget 4 min on 2 cores; doubled for a shared machine


def test_gguf_holds_the_trained_model(micro_run):
    gguf = pytest.importorskip("gguf")
    from safetensors.numpy import load_file

    from saessak.tokenizer.chat_format import CHAT_TEMPLATE

    run, _ = micro_run
    reader = gguf.GGUFReader(str(run / "export" / "model.gguf"))
    assert reader.fields["tokenizer.chat_template"].contents() == CHAT_TEMPLATE
    sd = load_file(str(run / "rl" / "final" / "model.safetensors"))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == len(sd)
    assert (tensors["token_embd.weight"].data == sd["model.embed_tokens.weight"]).all()
