"""FSDP2 under torchrun (2 gloo processes on CPU, fp32) for pretrain, SFT and GRPO: the same losses as
one process (or DDP) on the same global batch, exact resume after SIGKILL on the same or another
number of ranks from a sharded (DCP) checkpoint, the final model and its export, clear errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saessak.cli import main
from saessak.io import read_jsonl
from saessak.training.checkpoints import list_checkpoints
from tests.run_fixtures import make_run

REPO = Path(__file__).resolve().parent.parent
PRE = ["--preset", "micro", "--no-samples", "--quiet", "--val-every", "0", "--val-tokens", "512", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(n: int, *args: str, **kw) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "saessak", *args]


def run_cmd(cmd, timeout=300):
    r = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    root = make_run(tmp_path_factory.mktemp("fsdp") / "run")
    assert main(["tokenizer", "train", "--run", str(root), "--vocab-size", "600"]) == 0
    return root


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def train_losses(run: Path, stage: str = "pretrain") -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run / stage / "metrics.jsonl") if r.get("type", "train") == "train"}


def assert_same_curve(a: dict, b: dict, tol: float = 1e-4) -> None:
    assert list(a) == list(b), (list(a), list(b))
    for step in a:
        assert abs(a[step] - b[step]) <= tol, (step, a[step], b[step])


def assert_same_weights(dir_a: Path, dir_b: Path, tol: float = 1e-4) -> None:
    from safetensors.torch import load_file

    wa, wb = load_file(str(dir_a / "model.safetensors")), load_file(str(dir_b / "model.safetensors"))
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and wa[k].shape == wb[k].shape, k
        assert float((wa[k].float() - wb[k].float()).abs().max()) <= tol, k


# ----------------------------------------------------------------------------- bad input (fast, in-process)


def test_fsdp_options_without_torchrun_are_clear_errors(tokenized, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    run = copy_run(tokenized, tmp_path / "run")
    assert main(["pretrain", "--run", str(run), *PRE, "--max-steps", "1", "--fsdp"]) == 2
    err = capsys.readouterr().err
    assert "--fsdp" in err and "torchrun --nproc_per_node" in err
    assert main(["pretrain", "--run", str(run), *PRE, "--max-steps", "1", "--fsdp-cpu-offload"]) == 2
    assert "give --fsdp as well" in capsys.readouterr().err
    assert not (run / "pretrain").exists()  # nothing started, nothing written
    for stage in ("sft", "rl"):
        assert main([stage, "--run", str(run), "--preset", "micro", "--fsdp"]) == 2
        assert "torchrun" in capsys.readouterr().err


def test_activation_checkpointing_keeps_gradients_and_names():
    """Full and selective recomputation give the plain model's loss and gradients, and the state
    dict keeps its Hugging Face names (checkpoints and export are unchanged)."""
    import torch

    from saessak.model.llama import Llama, ModelConfig
    from saessak.training.parallel import apply_activation_checkpointing

    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    grads, names = {}, {}
    for mode in ("none", "full", "selective"):
        model = Llama(cfg)
        model.init_weights(0)
        apply_activation_checkpointing(model, mode)
        loss = model(x[:, :-1].contiguous(), targets=x[:, 1:].contiguous())
        loss.backward()
        grads[mode] = (float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()})
        names[mode] = list(model.state_dict())
    for mode in ("full", "selective"):
        assert names[mode] == names["none"]
        assert abs(grads[mode][0] - grads["none"][0]) < 1e-6
        for n, g in grads["none"][1].items():
            assert torch.allclose(grads[mode][1][n], g, atol=1e-6), (mode, n)
    with pytest.raises(Exception, match="activation-checkpointing"):
        from saessak.training.parallel import Parallel

        Parallel(activation_checkpointing="some").validate()


# ----------------------------------------------------------------------------- pretrain


# In the default suite (about 15 s idle): CI runs 2-process FSDP, not only its single-process parts.
def test_fsdp_pretrain_matches_one_process_and_exports_the_same(tokenized, tmp_path):
    """2 ranks x batch 4 under FSDP == 1 process x batch 8; the final model and export are equal."""
    steps = ["--max-steps", "3", "--ckpt-every", "0"]
    single = copy_run(tokenized, tmp_path / "single")
    assert main(["pretrain", "--run", str(single), *PRE, *steps, "--batch-size", "8"]) == 0
    sharded = copy_run(tokenized, tmp_path / "fsdp")
    run_cmd(torchrun(2, "pretrain", "--run-dir", str(sharded), *PRE, *steps, "--batch-size", "4", "--fsdp"))
    assert_same_curve(train_losses(single), train_losses(sharded))
    assert_same_weights(single / "pretrain" / "final", sharded / "pretrain" / "final")
    done = json.loads((sharded / "pretrain" / "done.json").read_text())
    assert done["parallel"] == "fsdp" and done["world_size"] == 2
    recs = [r for r in read_jsonl(sharded / "ledger.jsonl") if r["stage"] == "pretrain"]
    assert len(recs) == 1 and recs[0]["parallel"] == "fsdp"
    peaks = recs[0]["peak_memory_bytes_per_rank"]
    assert len(peaks) == 2 and all(p > 0 for p in peaks)
    for run in (single, sharded):
        assert main(["export", "hf", "--run", str(run), "--stage", "pretrain", "--out", str(run / "export" / "hf")]) == 0
    assert_same_weights(single / "export" / "hf", sharded / "export" / "hf")
    for name in ("config.json", "tokenizer.json"):
        assert (single / "export" / "hf" / name).read_text() == (sharded / "export" / "hf" / name).read_text()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (torchrun starts its workers in sessions of their own)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _kill_after_checkpoint(cmd, run: Path, at_least_step: int, timeout=240) -> None:
    """Start `cmd` (torchrun) and SIGKILL its workers and itself once a complete checkpoint exists
    and the loop has logged `at_least_step` steps."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    metrics = run / "pretrain" / "metrics.jsonl"
    try:
        while time.time() < deadline and proc.poll() is None:
            if list_checkpoints(run / "pretrain") and metrics.exists() \
                    and sum('"train"' in x for x in metrics.read_text().splitlines()) >= at_least_step:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        proc.kill()
    finally:
        proc.wait()
    time.sleep(1.0)  # the workers are not our children: nothing to wait on
    assert not (run / "pretrain" / "done.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("resume_ranks", [1, 2, 0])
def test_fsdp_pretrain_resumes_exactly_after_sigkill(tokenized, tmp_path, resume_ranks):
    """Killed 2-rank FSDP run, resumed from its sharded checkpoint on 1 rank (batch 8), on 2 ranks
    (batch 4), or (0) in one plain process without torchrun (batch 8; DCP reshards on load): the
    loss curve and final model equal an uninterrupted one-process run."""
    steps = ["--max-steps", "6", "--ckpt-every", "2"]
    whole = copy_run(tokenized, tmp_path / "whole")
    assert main(["pretrain", "--run", str(whole), *PRE, *steps, "--batch-size", "8"]) == 0
    run = copy_run(tokenized, tmp_path / "run")
    _kill_after_checkpoint(torchrun(2, "pretrain", "--run-dir", str(run), *PRE, *steps, "--batch-size", "4",
                                    "--fsdp"), run, at_least_step=3)
    (step, ckpt), = list_checkpoints(run / "pretrain")[-1:]
    assert (ckpt / "dcp" / ".metadata").exists() and not (ckpt / "model.safetensors").exists()
    if resume_ranks:
        run_cmd(torchrun(resume_ranks, "pretrain", "--run-dir", str(run), *PRE, *steps,
                         "--batch-size", str(8 // resume_ranks), "--fsdp", "--resume"))
    else:
        assert main(["pretrain", "--run", str(run), *PRE, *steps, "--batch-size", "8", "--resume"]) == 0
    assert_same_curve(train_losses(whole), train_losses(run))
    assert_same_weights(whole / "pretrain" / "final", run / "pretrain" / "final")
    done = json.loads((run / "pretrain" / "done.json").read_text())
    assert done["resumed_from_step"] == step and done["world_size"] == max(1, resume_ranks)


# ----------------------------------------------------------------------------- SFT and GRPO


@pytest.mark.slow
def test_fsdp_sft_matches_one_process(tmp_path):
    from tests.finetune_fixtures import make_run as make_finetune_run

    base = make_finetune_run(tmp_path / "base")
    single, sharded = copy_run(base, tmp_path / "single"), copy_run(base, tmp_path / "fsdp")
    args = ["--max-steps", "3", "--batch-size", "4", "--eval-every", "3"]
    assert main(["sft", "--run", str(single), *args]) == 0
    run_cmd(torchrun(2, "sft", "--run-dir", str(sharded), *args, "--fsdp"))
    a, b = read_jsonl(single / "sft" / "metrics.jsonl"), read_jsonl(sharded / "sft" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) <= 1e-4, (x, y)
    assert abs(a[-1]["val_loss"] - b[-1]["val_loss"]) <= 1e-4
    assert_same_weights(single / "sft" / "final", sharded / "sft" / "final")
    # A world size that does not divide the global batch is a clear error.
    bad = copy_run(base, tmp_path / "bad")
    r = subprocess.run(torchrun(2, "sft", "--run-dir", str(bad), "--max-steps", "1", "--batch-size", "3", "--fsdp"),
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "batch_size 3: not divisible by the 2 processes" in r.stderr


def test_fsdp_grpo_matches_one_process(tmp_path):
    """GRPO with the policy and the reference model sharded over 2 ranks: the same global batch of
    rollouts (one global draw cut into rank slices) and the same losses, KL and final model as
    one process. Dynamic sampling is off (its refills are each rank's own) and the threshold
    curriculum does not move in two steps, so both runs see the same prompts."""
    from tests.finetune_fixtures import make_run as make_finetune_run

    base = make_finetune_run(tmp_path / "base", stages=("pretrain", "sft"))
    single, sharded = copy_run(base, tmp_path / "single"), copy_run(base, tmp_path / "fsdp")
    args = ["--max-steps", "2", "--tasks", "josa,numbers", "--prompts-per-step", "4", "--max-completion-length", "12",
            "--beta", "0.04", "--num-iterations", "2", "--no-dynamic-sampling", "--curriculum", "threshold"]
    assert main(["rl", "--run", str(single), *args]) == 0
    run_cmd(torchrun(2, "rl", "--run-dir", str(sharded), *args, "--fsdp"), timeout=600)
    a, b = read_jsonl(single / "rl" / "metrics.jsonl"), read_jsonl(sharded / "rl" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
    for x, y in zip(a, b):
        assert x["reward/total/mean"] == y["reward/total/mean"] and x["groups_trained"] == y["groups_trained"]
        for key in ("loss", "kl", "entropy", "grad_norm"):
            assert abs(x[key] - y[key]) <= 1e-4, (key, x[key], y[key])
    assert_same_weights(single / "rl" / "final", sharded / "rl" / "final")
    rec = [r for r in read_jsonl(sharded / "ledger.jsonl") if r["stage"] == "rl"][-1]
    assert rec["parallel"] == "fsdp" and len(rec["peak_memory_bytes_per_rank"]) == 2
