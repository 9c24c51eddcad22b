"""Every stage attempt is in the ledger from its start: heartbeats, statuses, kills, resumes (saessak/ledger.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saessak.errors import UserError
from saessak.io import append_jsonl, write_json
from saessak.ledger import (
    StageTimer,
    headline_attempts,
    heartbeat_interval,
    ledger_costs,
    load_prices,
    read_ledger,
)
from saessak.runfolder import RunFolder
from saessak.training.checkpoints import latest_checkpoint

REPO = Path(__file__).resolve().parent.parent
BEAT = 1.0  # the heartbeat interval of the kill tests, seconds


def _attempt_files(run: Path) -> list[Path]:
    return sorted((run / "ledger").glob("*.json"))


def _wait(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}:\n"
                        + (log.read_text()[-3000:] if log else ""))
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


# ----------------------------------------------------------------------------- one attempt, in process


def test_an_attempt_is_recorded_at_start_kept_current_and_closed_once(tmp_path):
    run = tmp_path / "run"
    timer = StageTimer(run, "pretrain", heartbeat_s=0.05)
    first = json.loads(timer.path.read_text())
    assert first["status"] == "running" and first["wall_s"] >= 0 and first["end"] is None
    assert first["pid"] == os.getpid() and first["host"] == socket.gethostname() and first["device"]["type"] == "cpu"
    assert [r["status"] for r in read_ledger(run)] == ["running"]  # this process lives
    assert not (run / "ledger.jsonl").exists()
    timer.progress(tokens=1000, flops=5e9, steps=3)
    _wait(lambda: json.loads(timer.path.read_text())["beats"] >= 2, 10, "two heartbeats")
    beat = json.loads(timer.path.read_text())
    assert beat["tokens"] == 1000 and beat["flops"] == 5e9 and beat["wall_s"] > first["wall_s"]
    record = timer.finish(tokens=1200, params=7)
    assert record["status"] == "done" and record["tokens"] == 1200 and record["steps"] == 3
    assert json.loads(timer.path.read_text()) == record  # the attempt file holds the final record too
    lines = (run / "ledger.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [record]
    assert timer.finish() == record and len((run / "ledger.jsonl").read_text().splitlines()) == 1  # closed once
    [read] = read_ledger(run)  # the line and the file are one attempt
    assert read["attempt"] == timer.attempt and read["status"] == "done"


@pytest.mark.parametrize("error, status", [(ValueError("bad input: x.jsonl line 3"), "failed"),
                                           (KeyboardInterrupt(), "interrupted")])
def test_an_attempt_that_raises_keeps_its_status_and_error_class(tmp_path, error, status):
    with pytest.raises(type(error)), StageTimer(tmp_path, "sft", heartbeat_s=0):
        raise error
    [rec] = read_ledger(tmp_path)
    assert rec["status"] == status and rec["error"] == type(error).__name__
    if status == "failed":
        assert rec["error_message"] == "bad input: x.jsonl line 3"


def test_a_sigterm_while_the_heartbeat_thread_starts_still_ends_the_attempt_interrupted(tmp_path, monkeypatch):
    # The window a real SIGTERM hit once: after the start record, inside Thread.start(), where the
    # thread cannot be joined. The attempt must end as interrupted, not raise RuntimeError and be
    # left `running` (read as killed).
    import threading

    from saessak.ledger import Terminated

    def start_interrupted(self):
        raise Terminated("signal 15 (SIGTERM)")

    monkeypatch.setattr(threading.Thread, "start", start_interrupted)
    with pytest.raises(Terminated):
        StageTimer(tmp_path, "sft", heartbeat_s=60)
    [rec] = read_ledger(tmp_path)
    assert rec["status"] == "interrupted" and rec["error"] == "Terminated"


def test_heartbeat_interval_comes_from_the_environment_and_bad_values_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("SAESSAK_HEARTBEAT_S", "0.25")
    assert heartbeat_interval() == 0.25
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("SAESSAK_HEARTBEAT_S", bad)
        with pytest.raises(UserError, match="SAESSAK_HEARTBEAT_S"):
            heartbeat_interval()
    monkeypatch.setenv("SAESSAK_HEARTBEAT_S", "0")  # off: the start and end records only
    timer = StageTimer(tmp_path, "eval")
    assert timer._thread is None and json.loads(timer.path.read_text())["heartbeat_s"] == 0
    timer.finish()


# ----------------------------------------------------------------------------- reading statuses


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_running_records_whose_process_is_gone_read_as_killed(tmp_path):
    now = time.time()

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))

    here = socket.gethostname()
    base = {"status": "running", "wall_s": 5.0, "heartbeat_s": 1.0, "device": {"type": "cpu", "cpu_cores": 2}}
    cases = {
        "dead-pid": {"host": here, "pid": _dead_pid(), "start": iso(now - 60), "heartbeat": iso(now)},
        "reused-pid": {"host": here, "pid": os.getpid(), "proc_start": -1, "start": iso(now - 59),
                       "heartbeat": iso(now)},
        "alive": {"host": here, "pid": os.getpid(), "start": iso(now - 58), "heartbeat": iso(now)},
        "elsewhere-stale": {"host": "another-node", "pid": 1, "start": iso(now - 57), "heartbeat": iso(now - 120)},
        "elsewhere-fresh": {"host": "another-node", "pid": 1, "start": iso(now - 56), "heartbeat": iso(now - 2)},
    }
    for name, rec in cases.items():
        write_json(tmp_path / "ledger" / f"{name}.json", {"stage": "rl", "attempt": name, **base, **rec})
    got = {r["attempt"]: r for r in read_ledger(tmp_path)}
    assert {k: r["status"] for k, r in got.items()} == {
        "dead-pid": "killed", "reused-pid": "killed", "alive": "running",
        "elsewhere-stale": "killed", "elsewhere-fresh": "running"}
    assert list(got) == list(cases)  # in start order
    killed = got["dead-pid"]
    assert killed["recorded_status"] == "running" and killed["measured_until"] == killed["heartbeat"]
    assert "after the last heartbeat" in killed["unmeasured"]


def test_old_ledgers_read_as_finished_and_bad_lines_are_reported_not_raised(tmp_path):
    device = {"type": "cpu", "cpu": "Xeon", "cpu_cores": 2}
    append_jsonl(tmp_path / "ledger.jsonl", {"stage": "data", "wall_s": 3.0, "device": device})
    with open(tmp_path / "ledger.jsonl", "a") as f:
        f.write('{"stage": "tokenizer", "wall_s": "abc"}\n')
        f.write("[1, 2]\n")
    append_jsonl(tmp_path / "ledger.jsonl", {"stage": "pretrain", "wall_s": 60.0, "device": device})
    with open(tmp_path / "ledger.jsonl", "a") as f:
        f.write('{"stage": "sft", "wall_')  # torn by a kill mid-append
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "junk.json").write_text("{not json")
    problems: list[str] = []
    records = read_ledger(tmp_path, problems)
    assert [(r["stage"], r["status"]) for r in records] == [("data", "done"), ("pretrain", "done")]
    ledger = tmp_path / "ledger.jsonl"
    assert problems == [f"{ledger}:2: 'wall_s' is 'abc', not a number >= 0; line skipped",
                        f"{ledger}:3: not a JSON object; line skipped",
                        f"{ledger}:5: not valid JSON (Unterminated string starting at); line skipped",
                        f"{tmp_path / 'ledger' / 'junk.json'}: not valid JSON; file skipped"]
    costs = ledger_costs(records, load_prices())
    assert costs["total"]["wall_s"] == 63.0 and costs["total"]["statuses"] == {"done": 2}


def test_the_headline_is_the_chain_of_attempts_that_built_the_model():
    rows = [
        {"stage": "data", "attempt": "d1", "status": "done"},
        {"stage": "pretrain", "attempt": "p1", "status": "done"},  # redone with --force below: not the model's
        {"stage": "pretrain", "attempt": "p2", "status": "failed"},  # a fresh start that failed
        {"stage": "pretrain", "attempt": "p3", "status": "killed"},  # fresh start, killed after a checkpoint
        {"stage": "pretrain", "attempt": "p4", "status": "done", "resumed_from_step": 40},
        {"stage": "eval", "attempt": "e1", "status": "done"},
        {"stage": "sft", "attempt": "s1", "status": "interrupted"},
    ]
    # p4 resumed from p3's checkpoint; p3 did not resume, so the chain stops there.
    rows[3]["resumed_from_step"] = None
    assert [r["attempt"] for r in headline_attempts(rows)] == ["d1", "p3", "p4"]


# ----------------------------------------------------------------------------- real processes

_CHILD = """
import sys, time
from saessak.ledger import StageTimer, count_from_process_start
if sys.argv[2] == "from-start":
    count_from_process_start()
time.sleep(float(sys.argv[3]))  # what happens before the attempt starts (imports, input checks)
with StageTimer(sys.argv[1], "data"):
    time.sleep(float(sys.argv[4]))
"""


def test_sigterm_ends_an_attempt_as_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), "no", "0", "60"], cwd=REPO)
    _wait(lambda: _attempt_files(tmp_path), 30, "the attempt's start record", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) != 0
    [rec] = read_ledger(tmp_path)
    assert rec["status"] == "interrupted" and rec["error"] == "Terminated"


def test_the_first_attempt_of_a_command_counts_from_the_process_start(tmp_path):
    for mode, run in (("from-start", tmp_path / "a"), ("no", tmp_path / "b")):
        subprocess.run([sys.executable, "-c", _CHILD, str(run), mode, "1.0", "0"], cwd=REPO, check=True)
    [a], [b] = read_ledger(tmp_path / "a"), read_ledger(tmp_path / "b")
    assert a["counted_from"] == "process start" and a["wall_s"] >= 1.0
    assert b["counted_from"] == "attempt start" and b["wall_s"] < 1.0


def _kill_mid_run(run: Path, stage: str, argv: list[str]) -> tuple[dict, float]:
    """Start `saessak <argv>` and SIGKILL it once it has written a heartbeat and a checkpoint;
    returns the killed attempt and the wall time from process start to kill, seen from here."""
    env = dict(os.environ, SAESSAK_HEARTBEAT_S=str(BEAT), TOKENIZERS_PARALLELISM="false")
    log = run.parent / f"{stage}.log"
    with open(log, "w") as out:
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "saessak", *argv], cwd=REPO, env=env, stdout=out, stderr=out)
        try:
            def ready():  # a heartbeat has carried the loop's progress, and there is a checkpoint to resume
                files = _attempt_files(run)
                rec = json.loads(files[-1].read_text()) if files else {}
                return rec.get("beats", 0) >= 1 and rec.get("steps", 0) >= 1 \
                    and latest_checkpoint(RunFolder(run).stage_dir(stage)) is not None

            _wait(ready, 240, f"a heartbeat and a checkpoint of {stage}", proc, log)
            proc.send_signal(signal.SIGKILL)
            truth = time.time() - t0
        finally:
            proc.kill()
            proc.wait()
    [killed] = [r for r in read_ledger(run) if r["stage"] == stage]
    return killed, truth


def _resume(run: Path, argv: list[str], stage: str) -> None:
    step = int(latest_checkpoint(RunFolder(run).stage_dir(stage)).name.split("_")[1])
    r = subprocess.run([sys.executable, "-m", "saessak", *argv, "--resume", "--max-steps", str(step + 1)],
                       cwd=REPO, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"), capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]


def _check_kill_and_resume(run: Path, stage: str, argv: list[str]) -> None:
    from saessak.report.bill import build_bill

    killed, truth = _kill_mid_run(run, stage, argv)
    assert killed["status"] == "killed" and killed["counted_from"] == "process start"
    # The attempt's time is measured up to its last heartbeat: within one interval of the truth
    # (the process's start is known to a clock tick, hence the 0.05 s above it).
    assert truth - BEAT <= killed["wall_s"] <= truth + 0.05, (killed["wall_s"], truth)
    assert killed.get("steps", 0) >= 1 and killed["tokens"] > 0 and killed["flops"] > 0  # progress so far
    _resume(run, argv, stage)
    bill = build_bill([run.parent])
    mine = [a for a in bill["attempts"] if a["stage"] == stage]
    assert [a["status"] for a in mine] == ["killed", "done"]
    assert bill["by_stage"][stage]["cost_krw"] == pytest.approx(sum(a["cost_krw"] for a in mine))
    assert bill["by_stage"][stage]["wall_s"] == pytest.approx(sum(a["wall_s"] for a in mine))
    done = [r for r in read_ledger(run) if r["stage"] == stage][-1]
    assert done["resumed_from_step"] >= 1
    # Both attempts built the model: the headline counts the killed one too.
    assert stage in bill["headline"]["models"][0]["stages"]
    assert bill["headline"]["models"][0]["attempts"] >= 2


def _pretrain_inputs(run: Path) -> None:
    from tests.helpers import KOREAN_SAMPLE, tiny_tokenizer

    rf = RunFolder(run)
    for split, n in (("train", 60), ("val", 6)):
        append_jsonl(rf.data / f"{split}.jsonl", {"id": split, "source": "test", "text": " ".join(KOREAN_SAMPLE)})
        for i in range(n - 1):
            append_jsonl(rf.data / f"{split}.jsonl", {"id": f"{split}{i}", "source": "test",
                                                      "text": KOREAN_SAMPLE[i % len(KOREAN_SAMPLE)] * (1 + i % 3)})
    rf.mark_done("data", {})
    tiny_tokenizer().save(rf.tokenizer_json)
    rf.mark_done("tokenizer", {})


def test_a_killed_pretrain_is_in_the_ledger_and_its_resume_adds_up(tmp_path):
    run = tmp_path / "project" / "run"
    _pretrain_inputs(run)
    _check_kill_and_resume(run, "pretrain", ["pretrain", "--run", str(run), "--preset", "micro", "--no-samples",
                                             "--quiet", "--max-steps", "100000", "--ckpt-every", "2"])


def test_a_killed_sft_is_in_the_ledger_and_its_resume_adds_up(tmp_path):
    from tests.finetune_fixtures import make_run

    run = make_run(tmp_path / "project" / "run", stages=("pretrain",))
    _check_kill_and_resume(run, "sft", ["sft", "--run", str(run), "--max-steps", "100000", "--ckpt-every", "2"])


def test_a_killed_rl_is_in_the_ledger_and_its_resume_adds_up(tmp_path):
    from tests.finetune_fixtures import make_run

    run = make_run(tmp_path / "project" / "run", stages=("pretrain", "sft"))
    _check_kill_and_resume(run, "rl", ["rl", "--run", str(run), "--max-steps", "100000", "--ckpt-every", "1"])


def test_sigterm_to_a_stage_command_ends_its_attempt_interrupted(tmp_path):
    from tests.finetune_fixtures import make_run

    run = make_run(tmp_path / "run", stages=("pretrain",))
    env = dict(os.environ, SAESSAK_HEARTBEAT_S="0.2", TOKENIZERS_PARALLELISM="false")
    log = tmp_path / "sft.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "saessak", "sft", "--run", str(run), "--max-steps", "100000"],
                                cwd=REPO, env=env, stdout=out, stderr=out)
        try:
            _wait(lambda: _attempt_files(run) and json.loads(_attempt_files(run)[0].read_text()).get("steps", 0) >= 1,
                  180, "a step of sft", proc, log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 143
        finally:
            proc.kill()
            proc.wait()
    assert "saessak: terminated (SIGTERM)" in log.read_text() and "Traceback" not in log.read_text()
    [rec] = read_ledger(run)
    assert rec["status"] == "interrupted" and rec["error"] == "Terminated" and rec["steps"] >= 1
