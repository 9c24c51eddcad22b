"""The one stage life-cycle every training stage follows (saessak/training/lifecycle.py)."""

from __future__ import annotations

import json

import pytest
import torch

from saessak.errors import UserError
from saessak.runfolder import RunFolder
from saessak.training.checkpoints import save_checkpoint
from saessak.training.lifecycle import StageRun, completed
from saessak.training.optim import build_optimizer
from tests.helpers import tiny_model


def _leftovers(stage_dir):
    (stage_dir / "shards").mkdir(parents=True)
    (stage_dir / "shards" / "meta.json").write_text("{}")
    (stage_dir / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n')
    (stage_dir / "samples.jsonl").write_text("{}\n")
    (stage_dir / "final").mkdir()


def test_fresh_start_clears_leftovers_but_keeps_what_the_stage_keeps(tmp_path):
    rf = RunFolder(tmp_path)
    _leftovers(rf.stage_dir("pretrain"))
    with StageRun(rf, "pretrain", keep=("shards",)) as st:
        assert st.begin() is None
        assert sorted(p.name for p in st.dir.iterdir()) == ["shards"]
        assert st.restore(tiny_model(), build_optimizer(tiny_model(), 1e-3)) is None


def test_a_checkpoint_is_resumed_without_asking_and_metrics_are_cut_back_to_it(tmp_path):
    rf = RunFolder(tmp_path)
    stage_dir = rf.stage_dir("sft")
    _leftovers(stage_dir)
    model = tiny_model(seed=1)
    save_checkpoint(stage_dir, 2, model, build_optimizer(model, 1e-3), {"tokens_trained": 7})
    fresh = tiny_model(seed=2)
    with StageRun(rf, "sft") as st:
        assert st.begin() == stage_dir / "ckpt" / "step_000002"
        state = st.restore(fresh, build_optimizer(fresh, 1e-3))
    assert state == {"tokens_trained": 7, "step": 2}
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert [json.loads(x)["step"] for x in (stage_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (stage_dir / "samples.jsonl").exists()  # a resumed attempt keeps its samples


def test_resume_without_a_checkpoint_is_an_error_that_deletes_nothing(tmp_path):
    rf = RunFolder(tmp_path)
    _leftovers(rf.stage_dir("rl"))
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        with StageRun(rf, "rl", resume=True) as st:
            st.begin()
    assert (rf.stage_dir("rl") / "metrics.jsonl").exists() and (rf.stage_dir("rl") / "final").exists()


def test_force_empties_the_stage_folder_checkpoints_and_kept_files_included(tmp_path):
    rf = RunFolder(tmp_path)
    stage_dir = rf.stage_dir("pretrain")
    _leftovers(stage_dir)
    model = tiny_model()
    save_checkpoint(stage_dir, 1, model, build_optimizer(model, 1e-3))
    rf.mark_done("pretrain", {"steps": 1})
    assert completed(rf, "pretrain", force=False) == {"steps": 1, "skipped": True}
    assert completed(rf, "pretrain", force=True) is None
    with StageRun(rf, "pretrain", force=True, keep=("shards",)) as st:
        assert st.begin() is None
    assert list(stage_dir.iterdir()) == []


def test_finish_saves_the_model_records_the_ledger_marks_done_and_drops_checkpoints(tmp_path):
    rf = RunFolder(tmp_path)
    model = tiny_model()
    with StageRun(rf, "sft") as st:
        st.begin()
        st.checkpoint(1, model, build_optimizer(model, 1e-3), {"tokens_trained": 0})
        assert (st.dir / "ckpt" / "step_000001").is_dir()
        st.finish(model, {"stage": "sft"}, {"steps": 1}, tokens=10, flops=1e6)
    assert rf.done_summary("sft") == {"steps": 1}
    assert (rf.final_checkpoint("sft") / "model.safetensors").exists() and not (st.dir / "ckpt").exists()
    record = json.loads(rf.ledger.read_text().splitlines()[-1])
    assert record["stage"] == "sft" and record["tokens"] == 10 and record["wall_s"] >= 0


def test_threads_are_restored_even_when_the_stage_fails(tmp_path):
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with StageRun(RunFolder(tmp_path), "rl", threads=1) as st:
            assert torch.get_num_threads() == 1 or st.info.device != "cpu"
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    assert not RunFolder(tmp_path).is_done("rl")


def test_every_attempt_is_in_the_ledger_from_its_start_with_how_it_ended(tmp_path):
    from saessak.ledger import read_ledger

    rf = RunFolder(tmp_path)
    model = tiny_model()
    with pytest.raises(RuntimeError, match="out of memory"), StageRun(rf, "sft") as st:
        [running] = read_ledger(tmp_path)  # written on entry, before any work
        assert running["status"] == "running" and running["stage"] == "sft"
        st.begin()
        st.checkpoint(3, model, build_optimizer(model, 1e-3), {"tokens_trained": 30})
        st.progress(steps=3, tokens=30, flops=1e6)
        raise RuntimeError("out of memory")
    with StageRun(rf, "sft") as st:  # the next attempt resumes from the checkpoint the first one left
        st.begin()
        st.restore(model, build_optimizer(model, 1e-3))
        st.finish(model, {"stage": "sft"}, {"steps": 5}, steps=2, tokens=20)
    first, second = read_ledger(tmp_path)
    assert (first["status"], first["error"], first["steps"], first["tokens"]) == ("failed", "RuntimeError", 3, 30)
    assert (second["status"], second["resumed_from_step"], second["tokens"]) == ("done", 3, 20)
    assert first["attempt"] != second["attempt"] and len(rf.ledger.read_text().splitlines()) == 2
