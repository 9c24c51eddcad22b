"""`--arch deepseek` through the pipeline: the model factory and presets, checkpoints (saessak's own
config.json and a Hugging Face deepseek_v3 one), pretraining with router-bias updates, router stats
and the MTP loss, exact resume, the HF export (transformers loads it as DeepseekV3ForCausalLM, equal
logits), the GGUF export (deepseek2), SFT/RL on a DeepSeek model, and the micro speedrun."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from saessak.cli import main
from saessak.errors import UserError
from saessak.model import DeepSeek, DeepseekConfig, Llama, ModelConfig, build_model, is_deepseek, model_config
from tests.run_fixtures import make_run

FAST = ["--preset", "micro-deepseek", "--no-samples", "--quiet"]


def engine_has_latent_cache() -> bool:
    from saessak.model import engine

    return hasattr(engine._SlotCache, "update_latent")


needs_engine = pytest.mark.skipif(not engine_has_latent_cache(), reason="engine latent cache not yet in")


@pytest.fixture(scope="module")
def tokenized_run(tmp_path_factory):
    root = make_run(tmp_path_factory.mktemp("ds") / "run")
    assert main(["tokenizer", "train", "--run", str(root), "--vocab-size", "600"]) == 0
    return root


@pytest.fixture(scope="module")
def pretrained(tokenized_run, tmp_path_factory):
    """A micro-deepseek run with a finished pretrain stage (8 steps)."""
    run = tmp_path_factory.mktemp("dsp") / "run"
    shutil.copytree(tokenized_run, run)
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "8", "--val-every", "4"]) == 0
    return run


def tiny_ids(vocab, n=12, seed=0):
    return torch.randint(0, vocab, (2, n), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- factory, presets, knobs

def test_factory_and_presets():
    assert type(build_model(model_config("micro"))) is Llama
    for name in ("micro-deepseek", "cpu-tiny-deepseek", "d12-deepseek", "d20-deepseek"):
        cfg = model_config(name)
        assert isinstance(cfg, DeepseekConfig) and cfg.num_nextn_predict_layers == 1, name
        cfg.validate()
    micro = model_config("micro-deepseek", vocab_size=600)
    assert (micro.n_routed_experts, micro.num_experts_per_tok, micro.n_shared_experts,
            micro.first_k_dense_replace, micro.vocab_size) == (4, 2, 1, 1, 600)
    d20 = model_config("d20-deepseek")
    assert (d20.n_routed_experts, d20.num_experts_per_tok, d20.n_group, d20.topk_group) == (64, 6, 8, 4)
    assert d20.num_hidden_layers == model_config("d20").num_hidden_layers  # the same depth knob
    # --arch switches a preset's shape either way
    assert isinstance(model_config("micro", arch="deepseek"), DeepseekConfig)
    assert isinstance(model_config("micro-deepseek", arch="llama"), ModelConfig)
    with torch.device("meta"):
        assert is_deepseek(build_model(micro)) and type(build_model(micro)) is DeepSeek
    with pytest.raises(UserError, match="num_experts_per_tok 9"):
        model_config("micro-deepseek", num_experts_per_tok=9)


def test_inconsistent_knobs_are_user_errors_before_training(tokenized_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tokenized_run, run)
    cases = [(["--bias-update-speed", "-1"], "--bias-update-speed -1"),
             (["--mtp-weight", "nan"], "--mtp-weight nan"),
             (["--preset", "micro", "--mtp-weight", "0.5"], "--mtp-weight: a DeepSeek setting"),
             (["--deepseek", "kv_lora_rank=abc"], "--deepseek kv_lora_rank='abc': expected an integer"),
             (["--deepseek", "norm_topk_prob=maybe"], "expected true or false"),
             (["--deepseek", "hidden_size=64"], "--deepseek hidden_size: fixed by the preset's shape"),
             (["--deepseek", "n_experts=4"], "--deepseek 'n_experts': not a DeepseekConfig field; one of"),
             (["--deepseek", "kv_lora_rank"], "expected NAME=VALUE"),
             (["--deepseek", "num_experts_per_tok=9"], "num_experts_per_tok 9"),
             (["--preset", "micro", "--deepseek", "kv_lora_rank=8"], "--deepseek kv_lora_rank: a DeepSeek setting")]
    for extra, msg in cases:
        assert main(["pretrain", "--run", str(run), *FAST, *extra]) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own choice check
        main(["pretrain", "--run", str(run), *FAST, "--arch", "mamba"])
    assert "--arch: invalid choice: 'mamba'" in capsys.readouterr().err
    assert not (run / "pretrain" / "done.json").exists()


def test_deepseek_option_sets_config_fields(tokenized_run, tmp_path):
    """`--deepseek` reaches the trained model: a smaller latent and more experts than the preset's."""
    run = tmp_path / "run"
    shutil.copytree(tokenized_run, run)
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "2", "--val-every", "0", "--deepseek",
                 "kv_lora_rank=12, qk_rope_head_dim=4,n_routed_experts=6,norm_topk_prob=false",
                 "--bias-update-speed", "0.02"]) == 0
    cfg = json.loads((run / "pretrain" / "done.json").read_text())["config"]
    assert (cfg["kv_lora_rank"], cfg["qk_rope_head_dim"], cfg["n_routed_experts"], cfg["norm_topk_prob"],
            cfg["bias_update_speed"]) == (12, 4, 6, False, 0.02)
    assert cfg["num_experts_per_tok"] == model_config("micro-deepseek").num_experts_per_tok  # the preset's
    model_cfg = json.loads((run / "pretrain" / "final" / "config.json").read_text())
    assert model_cfg["kv_lora_rank"] == 12 and model_cfg["n_routed_experts"] == 6


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_and_hf_config(tmp_path):
    from saessak.model.checkpoint import load_config, load_model, save_model

    cfg = model_config("micro-deepseek", vocab_size=300)
    torch.manual_seed(0)
    model = DeepSeek(cfg)
    model.init_weights(seed=1)
    with torch.no_grad():
        for _, moe in model.moe_layers():
            moe.gate.e_score_correction_bias.copy_(torch.randn(cfg.n_routed_experts) * 0.01)
    save_model(tmp_path / "ck", model)
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["architecture"] == "DeepseekV3ForCausalLM"
    assert load_config(tmp_path / "ck") == cfg
    back = load_model(tmp_path / "ck").eval()
    assert back.lm_head.weight is back.model.embed_tokens.weight  # tied again
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)  # biases and MTP included
    x = tiny_ids(300)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), back(x))

    # A Hugging Face deepseek_v3 folder (what transformers saves: no MTP weights) loads too.
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.DeepseekV3Config(**{k: v for k, v in cfg.to_hf_config().items()
                                              if k not in ("architectures", "model_type")})
    hf_model = transformers.DeepseekV3ForCausalLM(hf_cfg).eval()
    hf_model.save_pretrained(tmp_path / "hf")
    got = load_config(tmp_path / "hf")
    assert isinstance(got, DeepseekConfig) and got.n_routed_experts == 4
    ours = load_model(tmp_path / "hf").eval()
    assert ours.config.num_nextn_predict_layers == 0
    with torch.no_grad():
        assert (ours(x) - hf_model(x).logits).abs().max().item() < 1e-4
    bad = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**bad, "scoring_func": "softmax"}))
    with pytest.raises(UserError, match=r"hf/config\.json: .*scoring_func 'softmax'"):
        load_config(tmp_path / "hf")


# ---------------------------------------------------------------- pretraining

def test_pretrain_logs_router_stats_and_mtp(pretrained):
    rows = [json.loads(x) for x in (pretrained / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train"]
    assert all(r["mtp_loss"] > 0 and r["main_loss"] > 0 for r in train)
    # the loss trained on is main + mtp_weight * mtp
    assert abs(train[-1]["loss"] - (train[-1]["main_loss"] + 0.3 * train[-1]["mtp_loss"])) < 1e-4
    vals = [r for r in rows if r["type"] == "val"]
    assert [r["step"] for r in vals] == [4, 8]
    router = vals[-1]["router"]
    assert set(router) == {"1", "2"}  # the MoE layer and the MTP module's MoE
    assert all({"max_over_mean", "dead", "bias_min", "bias_max"} <= set(e) for e in router.values())
    assert any(e["bias_max"] > 0 for e in router.values())  # the biases moved
    done = json.loads((pretrained / "pretrain" / "done.json").read_text())
    assert done["config"]["architecture"] == "DeepseekV3ForCausalLM"
    assert done["moe"]["final_max_over_mean"] >= 1 and "dead_experts_last_10pct" in done["moe"]
    assert done["mtp_loss"] > 0
    ledger = [json.loads(x) for x in (pretrained / "ledger.jsonl").read_text().splitlines()]
    rec = [r for r in ledger if r["stage"] == "pretrain" and r["status"] == "done"][-1]
    assert rec["moe"] == done["moe"] and rec["mtp_loss"] == done["mtp_loss"]


def test_exact_resume_keeps_router_biases_and_mtp(tokenized_run, tmp_path, monkeypatch):
    """A run stopped right after its step-6 checkpoint and resumed ends bit-equal to one that ran
    through: weights, MTP modules and router biases (buffers in the checkpoint's state dict)."""
    from safetensors.torch import load_file

    from saessak.pretrain.stage import run_pretrain
    from saessak.training.lifecycle import StageRun

    kw = dict(samples=False, quiet=True, max_steps=9, ckpt_every=3, val_every=4)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    shutil.copytree(tokenized_run, whole)
    shutil.copytree(tokenized_run, cut)
    run_pretrain(str(whole), "micro-deepseek", **kw)

    class Crash(Exception):
        pass

    real = StageRun.checkpoint

    def crash_after_step_6(self, step, *a, **k):
        real(self, step, *a, **k)
        if step == 6:
            raise Crash

    monkeypatch.setattr(StageRun, "checkpoint", crash_after_step_6)
    with pytest.raises(Crash):
        run_pretrain(str(cut), "micro-deepseek", **kw)
    monkeypatch.setattr(StageRun, "checkpoint", real)
    summary = run_pretrain(str(cut), "micro-deepseek", resume=True, **kw)
    assert summary["resumed_from_step"] == 6

    a = load_file(str(whole / "pretrain" / "final" / "model.safetensors"))
    b = load_file(str(cut / "pretrain" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    biases = [k for k in a if k.endswith("e_score_correction_bias")]
    assert len(biases) == 2 and any(k.startswith("model.layers.2.") for k in biases)  # MTP's router too
    assert any(k.startswith("model.layers.2.eh_proj") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(a[k].abs().max() > 0 for k in biases)

    def losses(run):
        rows = (json.loads(x) for x in (run / "pretrain" / "metrics.jsonl").read_text().splitlines())
        return [(r["step"], r["loss"], r["mtp_loss"]) for r in rows if r["type"] == "train"]

    assert losses(whole) == losses(cut)


def test_two_process_ddp_sums_router_loads(tokenized_run, tmp_path):
    """torchrun with 2 gloo processes x batch 4 == one process x batch 8: the same losses and the
    same router biases, which needs each step's tokens-per-expert summed over the ranks."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    repo = Path(__file__).resolve().parent.parent
    common = [*FAST, "--max-steps", "4", "--ckpt-every", "0", "--val-every", "0", "--device", "cpu",
              "--bias-update-speed", "0.01"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    shutil.copytree(tokenized_run, single)
    shutil.copytree(tokenized_run, ddp)
    assert main(["pretrain", "--run", str(single), *common, "--batch-size", "8"]) == 0
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "saessak", "pretrain",
                        "--run-dir", str(ddp), *common, "--batch-size", "4"], cwd=repo,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a = load_file(str(single / "pretrain" / "final" / "model.safetensors"))
    b = load_file(str(ddp / "pretrain" / "final" / "model.safetensors"))
    for k in (k for k in a if k.endswith("e_score_correction_bias")):
        assert torch.equal(a[k], b[k]), k
        assert a[k].abs().max() > 0
    assert json.loads((ddp / "pretrain" / "done.json").read_text())["world_size"] == 2


def test_fsdp_with_deepseek_is_refused(tokenized_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "1")
    run = tmp_path / "run"
    shutil.copytree(tokenized_run, run)
    assert main(["pretrain", "--run", str(run), *FAST, "--fsdp"]) == 2
    assert "--fsdp with --arch deepseek" in capsys.readouterr().err


# ---------------------------------------------------------------- export

def check_hf_export(folder: Path, checkpoint: Path):
    """transformers loads the folder as DeepseekV3ForCausalLM (no custom code), logits equal ours."""
    transformers = pytest.importorskip("transformers")
    from saessak.model.checkpoint import load_model

    os.environ["HF_HUB_OFFLINE"] = "1"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["DeepseekV3ForCausalLM"] and cfg["model_type"] == "deepseek_v3"
    assert cfg["torch_dtype"] == "float32" and "eos_token_id" in cfg
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    assert type(hf).__name__ == "DeepseekV3ForCausalLM"
    ours = load_model(checkpoint).eval()
    x = tiny_ids(ours.config.vocab_size, n=20, seed=3)
    with torch.no_grad():
        assert (hf(x).logits - ours(x)).abs().max().item() <= 1e-4
    from safetensors.torch import load_file

    L = ours.config.num_hidden_layers
    assert not any(k.startswith(f"model.layers.{L}.") for k in load_file(str(folder / "model.safetensors")))
    return ours


def check_gguf(path: Path, ours):
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "deepseek2"
    cfg = ours.config
    n_moe = cfg.num_hidden_layers - cfg.first_k_dense_replace
    n_dense = cfg.first_k_dense_replace
    # per layer: 2 norms, attn_q, kv_a_mqa, kv_a_norm, k_b, v_b, output = 8; dense MLP 3; MoE: router,
    # exp_probs_b, 3 stacked experts, 3 shared = 8; plus token_embd and output_norm (tied: no output)
    want = cfg.num_hidden_layers * 8 + n_dense * 3 + n_moe * 8 + 2 + (0 if cfg.tie_word_embeddings else 1)
    assert len(reader.tensors) == want
    names = {t.name for t in reader.tensors}
    assert f"blk.{cfg.num_hidden_layers}.eh_proj.weight" not in names  # MTP not exported


def test_export_hf_and_gguf_of_a_deepseek_run(pretrained, tmp_path):
    out = tmp_path / "hf"
    assert main(["export", "hf", "--run", str(pretrained), "--stage", "pretrain", "--out", str(out)]) == 0
    ours = check_hf_export(out, pretrained / "pretrain" / "final")
    card = (out / "README.md").read_text()
    assert "DeepSeek-V3" in card and "routed experts" in card
    g = tmp_path / "m.gguf"
    assert main(["export", "gguf", "--run", str(pretrained), "--stage", "pretrain", "--out", str(g)]) == 0
    check_gguf(g, ours)


# ---------------------------------------------------------------- SFT / RL on a DeepSeek model

@needs_engine
def test_sft_updates_router_biases(pretrained, tmp_path):
    from safetensors.torch import load_file

    from saessak.sft.stage import run_sft

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    run_sft(str(run), max_steps=2, batch_size=4, task_items_per_family=4, identity_items=4, eval_every=2,
            ckpt_every=10, log=lambda *a: None)
    before = load_file(str(run / "pretrain" / "final" / "model.safetensors"))
    after = load_file(str(run / "sft" / "final" / "model.safetensors"))
    key = "model.layers.1.mlp.gate.e_score_correction_bias"
    assert not torch.equal(before[key], after[key])
    # the routing is kept as in pretraining: metrics at each validation, a summary in done.json and the ledger
    done = json.loads((run / "sft" / "done.json").read_text())
    moe = done["moe"]
    assert moe["tail_steps"] == 1 and moe["final_max_over_mean"] >= 1.0
    assert set(moe["dead_experts_last_10pct_per_layer"]) == {"1", "2"}  # the MoE layer and the MTP block's
    biases = torch.cat([v.float() for k, v in after.items() if k.endswith("e_score_correction_bias")])
    assert moe["bias_range"] == pytest.approx([float(biases.min()), float(biases.max())], abs=1e-6)
    rows = [json.loads(x) for x in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert "router" in rows[-1] and set(rows[-1]["router"]) == {"1", "2"}
    ledger = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]
    assert [r for r in ledger if r["stage"] == "sft" and r["status"] == "done"][-1]["moe"] == moe


@needs_engine
def test_sft_bias_update_speed_zero_freezes_the_routing(pretrained, tmp_path, capsys):
    from safetensors.torch import load_file

    from saessak.sft.stage import run_sft

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    assert main(["sft", "--run", str(run), "--bias-update-speed", "-0.1"]) == 2
    assert "--bias-update-speed -0.1: must be 0 or more" in capsys.readouterr().err
    run_sft(str(run), max_steps=2, batch_size=4, task_items_per_family=4, identity_items=4, eval_every=2,
            ckpt_every=10, bias_update_speed=0.0, log=lambda *a: None)
    before = load_file(str(run / "pretrain" / "final" / "model.safetensors"))
    after = load_file(str(run / "sft" / "final" / "model.safetensors"))
    keys = [k for k in after if k.endswith("e_score_correction_bias")]
    assert keys and all(torch.equal(before[k], after[k]) for k in keys)
    assert not all(torch.equal(before[k], after[k]) for k in after if k.endswith("q_proj.weight"))  # it trained
    assert json.loads((run / "sft" / "done.json").read_text())["moe"]["tail_steps"] == 1  # loads still counted


def test_bias_update_speed_on_a_llama_is_a_user_error(tokenized_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tokenized_run, run)
    assert main(["pretrain", "--run", str(run), "--preset", "micro", "--no-samples", "--quiet", "--max-steps", "2",
                 "--val-every", "0"]) == 0
    assert main(["sft", "--run", str(run), "--max-steps", "1", "--bias-update-speed", "0.1"]) == 2
    assert "--bias-update-speed: a DeepSeek setting" in capsys.readouterr().err
    assert not (run / "sft" / "done.json").exists()


# ---------------------------------------------------------------- the micro speedrun

def test_micro_deepseek_speedrun(tmp_path):
    if not engine_has_latent_cache():
        pytest.skip("engine latent cache not yet in: SFT, RL and eval generate through it")
    run = tmp_path / "micro-deepseek"
    assert main(["speedrun", "--preset", "micro-deepseek", "--run", str(run)]) == 0
    for marker in ("pretrain/done.json", "sft/done.json", "rl/done.json", "eval/results_final.json",
                   "report.json", "export/hf/config.json", "export/model.gguf", "speedrun.json"):
        assert (run / marker).exists(), marker
    steps = json.loads((run / "speedrun.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["ran"] * len(steps)
    ours = check_hf_export(run / "export" / "hf", run / "rl" / "final")
    check_gguf(run / "export" / "model.gguf", ours)
    rl = json.loads((run / "rl" / "done.json").read_text())
    assert rl["moe"]["tail_steps"] >= 1 and rl["moe"]["final_max_over_mean"] >= 1.0
