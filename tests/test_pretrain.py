"""`saessak pretrain`: end to end on the micro preset, skip/force, bad input, exact resume, DDP."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saessak.cli import main
from tests.run_fixtures import make_run

REPO = Path(__file__).resolve().parent.parent
FAST = ["--preset", "micro", "--no-samples", "--quiet"]


@pytest.fixture(scope="module")
def tokenized_run(tmp_path_factory):
    """A run folder with data and a trained tokenizer; tests copy it."""
    root = make_run(tmp_path_factory.mktemp("pre") / "run")
    assert main(["tokenizer", "train", "--run", str(root), "--vocab-size", "600"]) == 0
    return root


@pytest.fixture()
def run(tokenized_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tokenized_run, dst)
    return dst


def train_losses(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "pretrain" / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["type"] == "train":
            out[r["step"]] = r["loss"]
    return out


def cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "saessak", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, **kw)


def test_micro_pretrain_end_to_end(run):
    assert main(["pretrain", "--run", str(run), "--preset", "micro", "--max-steps", "16", "--quiet"]) == 0
    base = run / "pretrain"
    done = json.loads((base / "done.json").read_text())
    assert done["preset"] == "micro" and done["steps"] == 16 and done["final_val_bpb"] > 0
    assert done["tokens"] == 16 * done["tokens_per_step"]
    meta = json.loads((base / "final" / "meta.json").read_text())
    assert meta["preset"] == "micro" and meta["step"] == 16
    assert (base / "final" / "model.safetensors").exists()
    losses = train_losses(run)
    assert list(losses) == list(range(1, 17))
    first, last = sum(list(losses.values())[:3]) / 3, sum(list(losses.values())[-3:]) / 3
    assert last < first - 0.3, (first, last)  # the loss falls
    vals = [json.loads(x) for x in (base / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert vals and vals[-1]["step"] == 16 and vals[-1]["val_bpb"] == done["final_val_bpb"]
    samples = json.loads((base / "samples.json").read_text())
    assert len(samples) >= 3 and all(isinstance(s["completion"], str) for s in samples)
    rec = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()][-1]
    assert rec["stage"] == "pretrain" and rec["params"] == done["params"] and rec["tokens"] == done["tokens"]
    assert rec["flops"] > 6 * rec["params"] * rec["tokens"] * 0.5 and 0 < rec["mfu"] < 1
    assert not (base / "ckpt").exists()  # finished: resume checkpoints are dropped
    # The final model loads with the shared loader.
    from saessak.model.checkpoint import load_model

    assert load_model(base / "final").config.vocab_size == done["config"]["vocab_size"]


def test_done_stage_is_skipped_and_force_retrains(run, capsys):
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "2"]) == 0
    marker = run / "pretrain" / "done.json"
    t0 = marker.stat().st_mtime_ns
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "3"]) == 0
    assert "complete" in capsys.readouterr().out and marker.stat().st_mtime_ns == t0
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "3", "--force"]) == 0
    assert json.loads(marker.read_text())["steps"] == 3


def test_unknown_preset_and_missing_tokenizer(tmp_path, capsys):
    bare = make_run(tmp_path / "bare")
    assert main(["pretrain", "--run", str(bare), "--preset", "gigantic"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["pretrain", "--run", str(bare), "--preset", "micro"]) == 2
    assert "tokenizer" in capsys.readouterr().err
    assert not (bare / "pretrain").exists()


def test_empty_val_split_is_refused_before_any_output(run, capsys):
    (run / "data" / "val.jsonl").write_text("\n")
    assert main(["pretrain", "--run", str(run), *FAST]) == 2
    assert "val split has no text" in capsys.readouterr().err
    assert not (run / "pretrain" / "shards").exists() and not (run / "pretrain" / "done.json").exists()


def test_force_with_bad_data_keeps_the_finished_stage(run, capsys):
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "2"]) == 0
    (run / "data" / "train.jsonl").write_text("")
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "2", "--force"]) == 2
    assert "has no text" in capsys.readouterr().err
    assert (run / "pretrain" / "done.json").exists() and (run / "pretrain" / "final" / "model.safetensors").exists()


def test_bad_numbers_are_user_errors(run, capsys):
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "0"]) == 2
    assert "--max-steps 0" in capsys.readouterr().err


def test_tokenizer_that_does_not_match_the_shards(run, capsys):
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "2", "--ckpt-every", "1"]) == 0
    (run / "pretrain" / "done.json").unlink()  # pretend it was interrupted
    shards_before = sorted(p.name for p in (run / "pretrain" / "shards").iterdir())
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "500", "--force"]) == 0
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "2"]) == 2
    assert "another tokenizer" in capsys.readouterr().err
    assert sorted(p.name for p in (run / "pretrain" / "shards").iterdir()) == shards_before
    assert (run / "pretrain" / "final").exists()


def test_checkpoint_from_another_config_is_refused(run, capsys):

    from saessak import training
    from saessak.model import Llama
    from saessak.model import model_config
    from saessak.tokenizer import Tokenizer

    vocab = Tokenizer.load(run / "tokenizer").vocab_size
    other = Llama(model_config("cpu-tiny", vocab))
    opt = training.build_optimizer(other, 1e-3)
    ckpt = training.save_checkpoint(run / "pretrain", 5, other, opt, {"tokens": 0})
    assert main(["pretrain", "--run", str(run), *FAST, "--max-steps", "8"]) == 2
    assert "another model config" in capsys.readouterr().err
    assert ckpt.exists() and not (run / "pretrain" / "done.json").exists()


def test_resume_flag_without_checkpoint_is_an_error(run, capsys):
    assert main(["pretrain", "--run", str(run), *FAST, "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_compiled_micro_pretrain_matches_eager_and_its_model_feeds_sft(run, tmp_path):
    """cpu-tiny and the GPU presets pretrain under torch.compile: the same few micro steps compiled
    (in a process of its own, as a user runs it) give the eager run's losses, and the compiled
    run's final model is a plain checkpoint that SFT loads and trains."""
    import torch

    from saessak.model.checkpoint import load_model
    from saessak.sft.stage import run_sft

    steps = 3
    args = [*FAST, "--max-steps", str(steps), "--ckpt-every", "0"]
    eager = tmp_path / "eager"
    shutil.copytree(run, eager)
    assert main(["pretrain", "--run", str(eager), *args, "--no-compile"]) == 0
    r = cli("pretrain", "--run", str(run), *args, "--compile")
    assert r.returncode == 0, r.stderr[-3000:]
    done = json.loads((run / "pretrain" / "done.json").read_text())
    assert done["compile"] is True and done["steps"] == steps
    a, b = train_losses(eager), train_losses(run)
    assert list(a) == list(b) == list(range(1, steps + 1))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-3, (step, a[step], b[step])
    compiled_model = load_model(run / "pretrain" / "final")  # no "_orig_mod." wrapper names left in the file
    for (name, p), q in zip(compiled_model.state_dict().items(), load_model(eager / "pretrain" / "final").state_dict().values()):
        assert torch.allclose(p, q, atol=1e-3), name
    summary = run_sft(str(run), max_steps=2, batch_size=4, task_items_per_family=4, identity_items=4,
                      log=lambda *a: None)
    assert summary["steps"] == 2 and (run / "sft" / "final" / "model.safetensors").exists()


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_exact_resume_after_sigkill(run, tmp_path, compiled):
    """Kill -9 after a checkpoint, resume: the per-step losses equal an uninterrupted run's."""
    from saessak.training.checkpoints import list_checkpoints

    steps, every = 14, 3
    args = [*FAST, "--max-steps", str(steps), "--ckpt-every", str(every), "--val-every", "5",
            "--compile" if compiled else "--no-compile"]
    whole = tmp_path / "whole"
    shutil.copytree(run, whole)
    r = cli("pretrain", "--run", str(whole), *args)
    assert r.returncode == 0, r.stderr

    # A seeded step (a failure names it and reruns the same), early enough that the run still has
    # most of its steps ahead when the poller, late on a loaded machine, gets to kill it.
    kill_after = random.Random(f"exact-resume-{compiled}").randint(every + 1, 2 * every)
    proc = subprocess.Popen([sys.executable, "-m", "saessak", "pretrain", "--run", str(run), *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run / "pretrain" / "metrics.jsonl"
    deadline = time.time() + 240
    try:
        # Kill only once a complete checkpoint exists (the folder is renamed into place whole) and
        # the run has gone past the seeded step.
        while time.time() < deadline and proc.poll() is None:
            if list_checkpoints(run / "pretrain") and metrics.exists() \
                    and sum('"train"' in x for x in metrics.read_text().splitlines()) >= kill_after:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"run finished (or timed out) before it could be killed after step {kill_after}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (run / "pretrain" / "done.json").exists()
    assert list_checkpoints(run / "pretrain"), f"no checkpoint after step {kill_after}"

    r = cli("pretrain", "--run", str(run), *args, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = train_losses(whole), train_losses(run)
    assert list(a) == list(b) == list(range(1, steps + 1)), f"killed after step {kill_after}"
    for step in a:
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step], kill_after)
    da = json.loads((whole / "pretrain" / "done.json").read_text())
    db = json.loads((run / "pretrain" / "done.json").read_text())
    assert abs(da["final_val_bpb"] - db["final_val_bpb"]) < 1e-5 and db["resumed_from_step"]


def test_two_process_ddp_matches_single_process(run, tmp_path):
    """torchrun with 2 gloo processes x batch 4 == one process x batch 8 (same global batch)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    steps = 5
    common = [*FAST, "--max-steps", str(steps), "--ckpt-every", "0", "--grad-accum", "2", "--device", "cpu"]
    single = tmp_path / "single"
    shutil.copytree(run, single)
    r = cli("pretrain", "--run", str(single), *common, "--batch-size", "8")
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "saessak", "pretrain",
                        "--run-dir", str(run), *common, "--batch-size", "4"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = train_losses(single), train_losses(run)
    assert list(a) == list(b) == list(range(1, steps + 1))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-4, (step, a[step], b[step])
    done = json.loads((run / "pretrain" / "done.json").read_text())
    assert done["world_size"] == 2
    rec = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]
    assert sum(1 for x in rec if x["stage"] == "pretrain") == 1  # rank 0 writes the ledger once
