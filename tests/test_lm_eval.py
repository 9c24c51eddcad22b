"""lm-evaluation-harness on an exported folder, with the project's local Korean multiple-choice task."""

import json

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from saessak.errors import UserError  # noqa: E402
from saessak.export.hf import export_hf  # noqa: E402
from saessak.evals.lm_eval import LOCAL_TASKS, evaluate  # noqa: E402
from tests.run_fixture import make_run  # noqa: E402


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    return export_hf(make_run(root / "run", stages=("pretrain",)), root / "hf")


def test_shipped_task_data_is_well_formed():
    rows = [json.loads(l) for l in (LOCAL_TASKS / "saessak_ko_mc.jsonl").read_text().splitlines() if l.strip()]
    assert len(rows) >= 30
    for r in rows:
        assert 0 <= r["label"] < len(r["choices"]) and len(set(r["choices"])) == len(r["choices"])
    golds = [r["label"] for r in rows]
    assert 0.3 < sum(g == 0 for g in golds) / len(golds) < 0.7  # "always the first choice" is no shortcut


def test_runs_the_local_korean_task_through_the_cli(hf_dir, tmp_path):
    from saessak.evals.lm_eval import run

    class Args:
        model, tasks, limit, batch_size = str(hf_dir), "saessak_ko_mc", 12, 4
        output = str(tmp_path / "lm_eval.json")

    assert run(Args) == 0
    out = json.loads((tmp_path / "lm_eval.json").read_text())
    res = out["results"]["saessak_ko_mc"]
    assert 0.0 <= res["acc,none"] <= 1.0 and 0.0 <= res["acc_norm,none"] <= 1.0
    assert out["n-samples"]["saessak_ko_mc"]["effective"] == 12


def test_accuracy_reflects_the_model(hf_dir, monkeypatch):
    """The harness scores what the model prefers: a model that always prefers gold gets 100%."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    rows = [json.loads(l) for l in (LOCAL_TASKS / "saessak_ko_mc.jsonl").read_text().splitlines() if l.strip()]
    gold_ids = {tuple(tok.encode(r["context"] + r["choices"][r["label"]], add_special_tokens=False)) for r in rows}
    from transformers import LlamaForCausalLM

    real_forward = LlamaForCausalLM.forward

    def oracle_forward(self, input_ids=None, **kw):
        out = real_forward(self, input_ids=input_ids, **kw)
        logits = torch.full_like(out.logits, -10.0)
        for b, seq in enumerate(input_ids.tolist()):
            # Every next token of a gold sentence is likely, everything else unlikely.
            for t in range(len(seq)):
                nxt = next((g[t + 1] for g in gold_ids if len(g) > t + 1 and list(g[:t + 1]) == seq[:t + 1]), None)
                if nxt is not None:
                    logits[b, t, nxt] = 10.0
        out.logits = logits
        return out

    monkeypatch.setattr(LlamaForCausalLM, "forward", oracle_forward)
    out = evaluate(hf_dir, "saessak_ko_mc", limit=None, batch_size=1)
    assert out["results"]["saessak_ko_mc"]["acc,none"] == 1.0


def test_bad_inputs(tmp_path, hf_dir):
    with pytest.raises(UserError, match="folder not found"):
        evaluate(tmp_path / "nope", "saessak_ko_mc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a Hugging Face model folder"):
        evaluate(tmp_path / "empty", "saessak_ko_mc")
    with pytest.raises(UserError, match="unknown lm-eval task"):
        evaluate(hf_dir, "no_such_task_xyz")
    with pytest.raises(UserError, match="at least one"):
        evaluate(hf_dir, " , ")
