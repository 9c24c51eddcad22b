import json

import pytest
import torch

from saessak.tokenizer.chat_format import render
from saessak.errors import UserError
from saessak.io import read_jsonl
from saessak.sft.pack import IGNORE, block_causal_mask, pack
from tests.finetune_fixtures import make_run
from tests.helpers import tiny_model, tiny_tokenizer

CONVS = [
    [{"role": "user", "content": "사과 3개와 배 2개는 모두 몇 개인가요?"},
     {"role": "assistant", "content": "3 + 2 = 5\n정답: 5"}],
    [{"role": "user", "content": "안녕하세요."}, {"role": "assistant", "content": "안녕하세요! 저는 새싹입니다."}],
    [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "오늘은 월요일. 내일은?"},
     {"role": "assistant", "content": "정답: 화요일"}],
]


def _rendered(tok):
    return [(r.ids, r.loss_mask) for r in (render(tok, c) for c in CONVS)]


def test_packing_trains_each_conversation_exactly_as_alone():
    tok = tiny_tokenizer()
    model = tiny_model(tok.vocab_size)
    rows = pack(_rendered(tok), seq_len=128, pad_id=tok.pad_id)
    assert len(rows) == 1  # all three fit in one row
    packed = model(rows.input_ids, position_ids=rows.position_ids, attn_mask=block_causal_mask(rows.segment_ids),
                   targets=rows.targets, loss_reduction="none")[0]
    at = 0
    for ids, mask in _rendered(tok):
        x = torch.tensor([ids[:-1]])
        t = torch.tensor([[i if m else IGNORE for i, m in zip(ids[1:], mask[1:])]])
        alone = model(x, targets=t, loss_reduction="none")[0]
        n = len(ids) - 1
        assert torch.allclose(packed[at:at + n], alone, atol=1e-5)
        assert rows.position_ids[0, at] == 0
        at += n
    # only assistant tokens (and their end-of-turn) are trained
    trained = rows.targets[rows.targets != IGNORE].tolist()
    expected = [t for ids, m in _rendered(tok) for t, k in zip(ids[1:], m[1:]) if k]
    assert trained == expected


def test_packing_starts_a_new_row_rather_than_splitting_a_conversation():
    tok = tiny_tokenizer()
    r = _rendered(tok)
    longest = max(len(ids) for ids, _ in r) - 1
    rows = pack(r, seq_len=longest, pad_id=tok.pad_id)
    assert len(rows) >= 2
    for row in range(len(rows)):
        seg = rows.segment_ids[row]
        for s in seg.unique().tolist():
            if s >= 0:  # each conversation in a row starts at position 0 and is contiguous
                pos = rows.position_ids[row][seg == s]
                assert pos.tolist() == list(range(len(pos)))


def test_task_conversations_cover_all_families_with_answer_lines():
    import saessak.tasks as tasks
    from saessak.sft.data import task_conversations

    convs = task_conversations(tasks.FAMILIES, 10, seed=1)
    assert len(convs) == 10 * len(tasks.FAMILIES)
    for c in convs:
        assert c[0]["role"] == "user" and c[-1]["role"] == "assistant"
        assert c[-1]["content"].strip().splitlines()[-1].startswith("정답:")
    again = task_conversations(tasks.FAMILIES, 10, seed=1)
    assert again == convs  # deterministic


def test_identity_conversations_say_local_and_no_data_kept():
    from saessak.sft.data import identity_conversations

    text = " ".join(m["content"] for c in identity_conversations(60, seed=0) for m in c)
    assert "새싹" in text and "로컬" in text and "저장하지 않" in text


def test_user_jsonl_and_hf_dataset_loading(tmp_path):
    from saessak.sft.data import load_hf_conversations, load_jsonl_conversations

    good = tmp_path / "chat.jsonl"
    good.write_text("\n".join(json.dumps({"messages": c}, ensure_ascii=False) for c in CONVS) + "\n")
    assert load_jsonl_conversations(good) == CONVS
    assert load_hf_conversations(f"json:{good}") == CONVS

    sharegpt = tmp_path / "sharegpt.jsonl"
    sharegpt.write_text(json.dumps({"conversations": [{"from": "human", "value": "안녕"},
                                                      {"from": "gpt", "value": "안녕하세요"}]},
                                   ensure_ascii=False) + "\n")
    assert load_hf_conversations(f"json:{sharegpt}") == [[{"role": "user", "content": "안녕"},
                                                           {"role": "assistant", "content": "안녕하세요"}]]


@pytest.mark.parametrize("line, why", [
    ("{not json", "not valid JSON"),
    (json.dumps({"text": "x"}), "'messages'"),
    (json.dumps({"messages": [{"role": "user", "content": "질문만"}]}), "no assistant turn"),
    (json.dumps({"messages": [{"role": "bot", "content": "x"}]}), "role"),
])
def test_bad_user_data_names_file_and_line(tmp_path, line, why):
    from saessak.sft.data import load_jsonl_conversations

    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"messages": CONVS[0]}, ensure_ascii=False) + "\n" + line + "\n")
    with pytest.raises(UserError, match=why) as e:
        load_jsonl_conversations(f)
    assert "bad.jsonl:2" in str(e.value)


def test_sft_stage_trains_resumes_exactly_and_skips(tmp_path, monkeypatch):
    from saessak.runfolder import RunFolder
    from saessak.training import lifecycle as training
    from saessak.sft.stage import run_sft

    run = make_run(tmp_path / "run")
    rf = RunFolder(run)
    quiet = dict(log=lambda *a: None)
    # Crash after the step-10 checkpoint, while saving the final model.
    real_save_final = training.save_final

    def crash(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(training, "save_final", crash)
    with pytest.raises(RuntimeError):
        run_sft(str(run), max_steps=12, **quiet)
    uninterrupted = {r["step"]: r["loss"] for r in read_jsonl(rf.stage_dir("sft") / "metrics.jsonl")}
    assert not rf.is_done("sft") and (rf.stage_dir("sft") / "ckpt" / "step_000010").is_dir()

    monkeypatch.setattr(training, "save_final", real_save_final)
    # The same command again (no --resume needed): the stage continues from its checkpoint.
    summary = run_sft(str(run), max_steps=12, **quiet)
    resumed = read_jsonl(rf.stage_dir("sft") / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 13))
    for r in resumed[10:]:
        assert abs(r["loss"] - uninterrupted[r["step"]]) < 1e-5
    assert resumed[-1]["loss"] < resumed[0]["loss"]
    assert rf.is_done("sft") and (rf.final_checkpoint("sft") / "model.safetensors").exists()
    assert summary["steps"] == 12 and "val_loss" in resumed[-1]
    ledger = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]
    assert ledger[-1]["stage"] == "sft" and ledger[-1]["tokens"] > 0 and ledger[-1]["flops"] > 0

    before = (rf.final_checkpoint("sft") / "model.safetensors").stat().st_mtime_ns
    run_sft(str(run), **quiet)  # done: skips, nothing rewritten
    assert (rf.final_checkpoint("sft") / "model.safetensors").stat().st_mtime_ns == before


def test_compiled_sft_trains_the_same_model_as_eager(tmp_path):
    """`compile` (on in the CPU recipes) changes the speed, not the training: same losses, and the
    validation loss (run on the plain model) is recorded."""
    from saessak.runfolder import RunFolder
    from saessak.sft.stage import run_sft

    losses = {}
    for compiled in (False, True):
        run = make_run(tmp_path / f"run{compiled}")
        run_sft(str(run), max_steps=4, compile=compiled, dtype="fp32", eval_every=2, log=lambda *a: None)
        rows = read_jsonl(RunFolder(run).stage_dir("sft") / "metrics.jsonl")
        losses[compiled] = [r["loss"] for r in rows]
        assert "val_loss" in rows[-1]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-4)


def test_a_time_budget_cuts_the_steps_at_the_end_of_warm_up_and_sets_the_schedule_for_them(tmp_path):
    """A machine slower than the plan assumed: SFT times its warm-up steps and a validation pass and
    cuts its step count to what fits (a budget already spent: one step more); the cosine decay then
    ends at the new last step. A budget with room leaves the count alone."""
    from saessak.runfolder import RunFolder
    from saessak.sft.stage import run_sft
    from saessak.training.optim import lr_at

    run = make_run(tmp_path / "cut")
    summary = run_sft(str(run), max_steps=200, warmup_steps=4, lr=1e-3, min_lr_ratio=0.1, time_budget_s=0.0,
                      log=lambda *a: None)
    rows = read_jsonl(RunFolder(run).stage_dir("sft") / "metrics.jsonl")
    assert summary["steps"] == 5 and [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    cut = summary["time_budget"]
    assert (cut["at_step"], cut["from"], cut["to"]) == (4, 200, 5) and cut["step_s"] > 0 and cut["val_s"] > 0
    assert "val_loss" in rows[3] and "val_loss" in rows[4]  # the timed pass, and the last step's
    assert rows[4]["lr"] == pytest.approx(lr_at(4, 5, 1e-3, 4, 0.1))
    assert RunFolder(run).is_done("sft")

    roomy = make_run(tmp_path / "roomy")
    summary = run_sft(str(roomy), max_steps=12, warmup_steps=4, time_budget_s=1e6, log=lambda *a: None)
    assert summary["steps"] == 12 and summary["time_budget"]["to"] == 12


def test_sft_cli_errors(tmp_path, capsys):
    from saessak.cli import main

    assert main(["sft", "--run", str(tmp_path / "none"), "--preset", "micro"]) == 2
    assert "pretrain" in capsys.readouterr().err
    run = make_run(tmp_path / "run")
    assert main(["sft", "--run", str(run), "--data", str(tmp_path / "missing.jsonl"), "--max-steps", "1"]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert not (run / "sft" / "done.json").exists()


@pytest.mark.slow
def test_sft_under_torchrun_two_processes(tmp_path):
    import os
    import subprocess
    import sys

    run = make_run(tmp_path / "run")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "saessak",
           "sft", "--run-dir", str(run), "--max-steps", "3"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    recs = read_jsonl(run / "sft" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert (run / "sft" / "done.json").exists()
    assert len([r for r in read_jsonl(run / "ledger.jsonl") if r["stage"] == "sft"]) == 1  # rank 0 only
