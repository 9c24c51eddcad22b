"""`saessak import hf` and what runs on an imported model (issue 14): bad folders refused with nothing
written, then import -> sft (full and LoRA) -> rl (GRPO, LoRA, KL to the base with adapters off)
-> eval tasks -> export hf (merged and --adapter-only) -> export gguf, and serve --model PATH."""

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from saessak.cli import main  # noqa: E402
from tests.hf_fixtures import make_checkpoint  # noqa: E402

SMALL_SFT = dict(max_steps=2, batch_size=2, seq_len=96, task_items_per_family=2, identity_items=2, eval_every=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"qwen3": make_checkpoint("qwen3", root / "qwen3", shard=True),
            "llama": make_checkpoint("llama", root / "llama", template_file=True)}


def _broken(tmp_path, folders, family="qwen3"):
    dst = tmp_path / "model"
    shutil.copytree(folders[family], dst)
    return dst


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def _truncate_last_shard(path):
    shard = sorted(path.glob("model-*.safetensors"))[-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    return shard.name


BAD = {
    "no config": (lambda p: (p / "config.json").unlink(), ["config.json", "missing"]),
    "Gemma": (lambda p: _edit_config(p, architectures=["GemmaForCausalLM"], model_type="gemma"),
              ["architectures", "GemmaForCausalLM"]),
    "yarn rope": (lambda p: _edit_config(p, rope_scaling={"rope_type": "yarn", "factor": 4.0}),
                  ["rope_scaling.rope_type", "yarn"]),
    "sliding window": (lambda p: _edit_config(p, use_sliding_window=True, sliding_window=16),
                       ["sliding_window", "16"]),
    "soft-capping": (lambda p: _edit_config(p, final_logit_softcapping=30.0), ["final_logit_softcapping", "30.0"]),
    "no tokenizer": (lambda p: (p / "tokenizer.json").unlink(), ["tokenizer.json", "missing"]),
    "vocab mismatch": (lambda p: _edit_config(p, vocab_size=500), ["model.embed_tokens.weight", "vocab_size"]),
    "tokenizer too big": (lambda p: _edit_config(p, vocab_size=300), ["vocab_size 300", "tokenizer"]),
    "truncated shard": (_truncate_last_shard, ["truncated", ".safetensors"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_folders_are_refused_and_nothing_is_written(tmp_path, folders, capsys, case):
    src = _broken(tmp_path, folders)
    breaker, words = BAD[case]
    named = breaker(src)
    run = tmp_path / "run"
    assert main(["import", "hf", str(src), "--run", str(run)]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("saessak: error:"), err
    for w in words + ([named] if isinstance(named, str) else []):
        assert w in err, (w, err)
    assert not run.exists()


def test_import_leaves_the_source_untouched_and_records_the_stage(tmp_path, folders):
    before = {p.name: p.read_bytes() for p in folders["qwen3"].iterdir()}
    run = tmp_path / "run"
    assert main(["import", "hf", str(folders["qwen3"]), "--run", str(run), "--preset", "micro"]) == 0
    assert {p.name: p.read_bytes() for p in folders["qwen3"].iterdir()} == before
    final = run / "pretrain" / "final"
    assert len(list(final.glob("model-*.safetensors"))) > 1 and (final / "model.safetensors.index.json").exists()
    rec = json.loads((run / "ledger.jsonl").read_text().splitlines()[-1])
    assert rec["stage"] == "import" and rec["status"] == "done" and rec["params"] > 0
    # A second import without --force must not replace it.
    assert main(["import", "hf", str(folders["qwen3"]), "--run", str(run)]) != 0


def _logits_equal(ours_dir, hf_dir, arch):
    from saessak.model.checkpoint import load_model

    ours = load_model(ours_dir, dtype=torch.float32).eval()
    ref = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    assert type(ref).__name__ == arch
    ids = torch.randint(0, ours.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(ids) - ref(ids).logits).abs().max().item() <= 1e-4
    return ref, ids


def test_qwen3_import_sft_lora_rl_eval_export(tmp_path, folders):
    """The whole path on a sharded Qwen3 import, LoRA in both training stages."""
    import gguf
    from peft import PeftModel

    from saessak.evals.task_eval import run_eval_tasks
    from saessak.export.gguf_export import export_gguf
    from saessak.export.hf import export_hf
    from saessak.model.hf_import import import_hf
    from saessak.rl.stage import run_rl
    from saessak.sft.stage import run_sft
    from tests.finetune_fixtures import ToyTasks

    run = tmp_path / "run"
    quiet = lambda *a, **k: None  # noqa: E731
    import_hf(str(folders["qwen3"]), str(run), preset="micro", log=quiet)
    run_sft(str(run), lora_r=4, lora_alpha=8.0, lr=5e-3, log=quiet, **SMALL_SFT)
    sft = json.loads((run / "ledger.jsonl").read_text().splitlines()[-1])
    assert 0 < sft["trainable_params"] < sft["params"] and sft["peak_rss_mb"] > 0
    assert (run / "sft" / "adapter" / "adapter_model.safetensors").exists()
    run_rl(str(run), tasks_api=ToyTasks(), max_steps=2, prompts_per_step=2, num_generations=2,
           max_completion_length=6, lora_r=4, beta=0.05, micro_batch_size=4, log=quiet)
    rl = json.loads((run / "ledger.jsonl").read_text().splitlines()[-1])
    assert rl["stage"] == "rl" and 0 < rl["trainable_params"] < rl["params"]
    res = run_eval_tasks(str(run), "rl", tasks_api=ToyTasks(), n=2, max_tokens=6, log=quiet)
    assert res

    # The merged model: transformers loads Qwen3ForCausalLM with saessak's logits.
    export_hf(str(run), tmp_path / "hf_rl", stage="rl")
    _logits_equal(run / "rl" / "final", tmp_path / "hf_rl", "Qwen3ForCausalLM")
    assert (tmp_path / "hf_rl" / "tokenizer_config.json").exists()
    card = (tmp_path / "hf_rl" / "README.md").read_text()
    assert "Qwen3ForCausalLM" in card and "imported checkpoint" in card

    # The SFT adapter alone, on the exported base, through peft == saessak's merged SFT model.
    export_hf(str(run), tmp_path / "hf_base", stage="pretrain")
    export_hf(str(run), tmp_path / "adapter", stage="sft", adapter_only=True)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors"]
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf_base", dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    from saessak.model.checkpoint import load_model

    merged = load_model(run / "sft" / "final", dtype=torch.float32).eval()
    ids = torch.randint(0, merged.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (peft_model(ids).logits - merged(ids)).abs().max().item() <= 1e-4
        with peft_model.disable_adapter():
            assert (peft_model(ids).logits - merged(ids)).abs().max().item() > 1e-4  # the adapter did something

    export_gguf(str(run), tmp_path / "q3.gguf", stage="rl")
    r = gguf.GGUFReader(str(tmp_path / "q3.gguf"))
    assert r.fields["general.architecture"].contents() == "qwen3"
    names = {t.name for t in r.tensors}
    assert "blk.0.attn_q_norm.weight" in names and "output.weight" not in names  # tied embeddings
    assert r.fields["tokenizer.ggml.model"].contents() == "gpt2"


def test_llama3_full_sft_export_and_gguf(tmp_path, folders):
    import gguf

    from saessak.export.gguf_export import export_gguf
    from saessak.export.hf import export_hf
    from saessak.model.hf_import import import_hf
    from saessak.sft.stage import run_sft

    run = tmp_path / "run"
    quiet = lambda *a, **k: None  # noqa: E731
    import_hf(str(folders["llama"]), str(run), preset="micro", log=quiet)
    run_sft(str(run), log=quiet, **SMALL_SFT)
    rec = json.loads((run / "ledger.jsonl").read_text().splitlines()[-1])
    assert rec["trainable_params"] == rec["params"]
    export_hf(str(run), tmp_path / "hf")
    _logits_equal(run / "sft" / "final", tmp_path / "hf", "LlamaForCausalLM")
    assert (tmp_path / "hf" / "chat_template.jinja").exists()
    export_gguf(str(run), tmp_path / "l.gguf")
    r = gguf.GGUFReader(str(tmp_path / "l.gguf"))
    assert r.fields["general.architecture"].contents() == "llama"
    freqs = next(t for t in r.tensors if t.name == "rope_freqs.weight")
    assert float(freqs.data.max()) == pytest.approx(8.0) and float(freqs.data.min()) == pytest.approx(1.0)


def _ask(base_url):
    import openai

    client = openai.OpenAI(base_url=base_url + "/v1", api_key="k", max_retries=0, timeout=60)
    out = client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=8, temperature=0,
                                         messages=[{"role": "system", "content": "한국어로 답하세요."},
                                                   {"role": "user", "content": "안녕하세요?"}])
    assert out.choices[0].finish_reason in ("stop", "length")
    assert out.usage.completion_tokens >= 1
    return out


def test_serve_loads_an_imported_folder_for_an_openai_client(folders):
    """The server's own loader on the Hugging Face folder (sharded Qwen3), in process."""
    pytest.importorskip("openai")
    from saessak.serve.app import ServeSettings
    from saessak.serve.loading import load_served_model
    from tests.serve_util import InProcessServer

    with InProcessServer(ServeSettings(api_key="k"), lambda: load_served_model(folders["qwen3"])) as srv:
        out = _ask(srv.base_url)
    assert out.model == "qwen3"


@pytest.mark.slow
def test_serve_command_on_an_imported_folder(tmp_path, folders):
    """`saessak serve --model PATH` as a user runs it (a subprocess: ~20 s, mostly start-up)."""
    pytest.importorskip("openai")
    from tests.serve_util import CliServer

    with CliServer(folders["llama"], tmp_path, "--api-key", "k") as srv:
        _ask(srv.base_url)
