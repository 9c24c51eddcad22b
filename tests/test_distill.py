"""`saessak distill` against a fake OpenAI-compatible teacher run by the test (no network).

The fake records every request it receives (messages, seed, Authorization) and answers each task
prompt correctly or wrongly by its seed, so which traces the grader must keep is known; it can be
told to answer 429 (with Retry-After) or 503 first, to require a key, or to be slow (for the kill).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from saessak.cli import main
from saessak.distill.prompts import task_items
from saessak.distill.teacher import retry_after_s
from saessak.io import read_json, read_jsonl
from saessak.ledger import ledger_costs, load_prices, read_ledger
from saessak.report.pii_section import pii_section
from saessak.runfolder import RunFolder
from saessak.tasks.registry import grade
from tests.pii_numbers import rrn

ROOT = Path(__file__).resolve().parent.parent
EMAIL, PHONE, RRN = "hong.gildong@example.co.kr", "010-2345-6789", rrn("900101", "1", "23456")


class FakeTeacher:
    """A Chat Completions server in a thread. `answers` maps a task prompt to its answer."""

    def __init__(self, answers: dict[str, str], key: str | None = None, fail: list[int] | None = None,
                 retry_after: str | None = "0", delay_s: float = 0.0):
        self.answers, self.key, self.fail, self.retry_after, self.delay_s = answers, key, list(fail or []), retry_after, delay_s
        self.received: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "Not Found"}})
                if fake.key and self.headers.get("Authorization") != f"Bearer {fake.key}":
                    return self._send(401, {"error": {"message": "Incorrect API key provided"}})
                with fake.lock:
                    status = fake.fail.pop(0) if fake.fail else 200
                    fake.statuses.append(status)
                    if status == 200:
                        fake.received.append(body)
                if status != 200:
                    headers = {"Retry-After": fake.retry_after} if status == 429 and fake.retry_after else {}
                    return self._send(status, {"error": {"message": "slow down" if status == 429 else "overloaded"}},
                                      headers)
                time.sleep(fake.delay_s)
                self._send(200, fake.reply(body))

            def _send(self, status, obj, headers=None):
                raw = json.dumps(obj, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reply(self, body: dict) -> dict:
        prompt = body["messages"][-1]["content"]
        answer = self.answers.get(prompt)
        if answer is None:  # a user prompt: echo it back (so a masked prompt shows in the reply too)
            text = f"답변: {prompt}"
        elif body["seed"] % 2 == 0:
            text = f"차근차근 풀어 봅시다.\n정답: {answer}"
        else:
            text = "잘 모르겠습니다.\n정답: 오답입니다"
        return {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


ARGS = ["--tasks", "josa,arith", "--levels", "1,2", "--items-per-level", "2", "--samples", "2", "--seed", "3",
        "--backoff-s", "0.01", "--max-backoff-s", "0.05"]


def task_answers() -> tuple[dict[str, str], list[dict]]:
    items = task_items(("josa", "arith"), (1, 2), 2, 3)
    return {it["messages"][-1]["content"]: it["example"]["answer"] for it in items}, items


@pytest.fixture
def teacher(request):
    answers, _ = task_answers()
    fake = FakeTeacher(answers, **getattr(request, "param", {}))
    yield fake
    fake.close()


def distill(run, fake, *extra) -> int:
    return main(["distill", "--run", str(run), "--teacher-url", fake.url, "--teacher-model", "big-teacher", *ARGS,
                 *extra])


def test_only_graded_correct_traces_are_kept_with_pass_rates_card_and_ledger(tmp_path, teacher, capsys):
    run = tmp_path / "run"
    assert distill(run, teacher, "--teacher-price-per-mtok", "1,2") == 0
    _, items = task_answers()
    assert f"distill: {len(items)}/{len(items)} prompts (100%)" in capsys.readouterr().out  # the progress line, ETA 0 s
    assert len(teacher.received) == len(items) * 2
    # The teacher was told how to end (system message); the dataset keeps the bare prompt, as eval asks it.
    assert all(b["messages"][0]["role"] == "system" and "정답" in b["messages"][0]["content"] for b in teacher.received)
    rows = read_jsonl(run / "distill" / "train.jsonl")
    by_prompt = {it["messages"][-1]["content"]: it["example"] for it in items}
    assert rows and all(r["graded"] and r["source"] == "task" for r in rows)
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert grade(by_prompt[r["messages"][0]["content"]], r["messages"][1]["content"])["correct"]
    correct_sent = sum(b["seed"] % 2 == 0 for b in teacher.received)
    assert len(rows) == correct_sent < len(teacher.received)  # the wrong half was asked and dropped
    card = read_json(run / "distill" / "data_card.json")
    assert card["teacher"] == {"host": teacher.url.split("/")[2], "model": "big-teacher",
                               "prompt_tokens": 10 * len(teacher.received), "completion_tokens": 5 * len(teacher.received)}
    assert card["sampling"]["samples"] == 2 and card["counts"]["kept"] == len(rows)
    rates = card["pass_rates"]
    assert set(rates) == {"josa", "arith"} and set(rates["josa"]) == {"1", "2"}
    assert sum(c["correct"] for lv in rates.values() for c in lv.values()) == len(rows)
    assert "pass rate" in (run / "distill" / "data_card.md").read_text(encoding="utf-8")
    # The ledger: the teacher's tokens, priced with the given price; the report and the bill price it the same way.
    rec = [r for r in read_ledger(run) if r["stage"] == "distill"][-1]
    assert rec["status"] == "done" and rec["teacher"]["completion_tokens"] == 5 * len(teacher.received)
    cost = ledger_costs([rec], load_prices())
    want = (10 * 1 + 5 * 2) * len(teacher.received) / 1e6
    assert cost["records"][0]["teacher_usd"] == pytest.approx(want)
    assert cost["stages"]["distill"]["cost_usd"] > want and "distill" in cost["headline"]["stages"]
    from saessak.ledger import markdown_table
    from saessak.report.bill import build_bill

    assert build_bill([tmp_path])["by_stage"]["distill"]["cost_usd"] == pytest.approx(cost["stages"]["distill"]["cost_usd"])
    assert f"Teacher tokens (`saessak distill`, in the rows above): distill `big-teacher` at {card['teacher']['host']}" \
        in markdown_table(cost)
    # A second run is a no-op (done.json), and asks nothing.
    n = len(teacher.received)
    assert distill(run, teacher) == 0 and len(teacher.received) == n


def test_pii_in_a_prompt_is_masked_before_it_reaches_the_teacher(tmp_path, teacher, capsys):
    prompts = tmp_path / "p.jsonl"
    secret = f"제 메일은 {EMAIL}, 전화는 {PHONE}, 주민등록번호는 {RRN}입니다. 요약해 주세요."
    prompts.write_text(json.dumps({"prompt": secret}, ensure_ascii=False) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    assert distill(run, teacher, "--tasks", "none", "--prompts", str(prompts)) == 0
    sent = json.dumps(teacher.received, ensure_ascii=False)
    assert len(teacher.received) == 2
    for value in (EMAIL, PHONE, RRN):
        assert value not in sent
    # User prompts go as written (no system message added), masked.
    assert [m["role"] for m in teacher.received[0]["messages"]] == ["user"]
    rows = read_jsonl(run / "distill" / "train.jsonl")
    assert len(rows) == 2 and not any(r["graded"] for r in rows)
    assert not any(v in json.dumps(rows, ensure_ascii=False) for v in (EMAIL, PHONE, RRN))
    card = read_json(run / "distill" / "data_card.json")
    assert card["pii_sent"]["total"] == {"email": 1, "phone": 1, "rrn": 1} and card["allow_pii"] is False
    lines, facts = pii_section(RunFolder(run))  # the report's personal-data section
    assert facts["sent_to_teacher"]["counts"] == {"email": 1, "phone": 1, "rrn": 1}
    assert [(r["stage"], r["source"], r["total"]) for r in facts["sources"]] == [
        ("distill", "--prompts", 3), ("distill", "teacher replies", 0)]  # it echoed what it got: masked
    assert any("3 identifiers masked before they were sent" in line for line in lines)

    # --allow-pii: sent as is (and said so); the dataset is masked all the same, the reply included.
    teacher.received.clear()
    assert distill(tmp_path / "run2", teacher, "--tasks", "none", "--prompts", str(prompts), "--allow-pii") == 0
    assert all(b["messages"][-1]["content"] == secret for b in teacher.received) and len(teacher.received) == 2
    assert "--allow-pii" in capsys.readouterr().err
    rows = read_jsonl(tmp_path / "run2" / "distill" / "train.jsonl")
    assert not any(v in json.dumps(rows, ensure_ascii=False) for v in (EMAIL, PHONE, RRN))
    card = read_json(tmp_path / "run2" / "distill" / "data_card.json")
    assert card["pii_sent"] == {"keep_pii": True, "kept": {"--prompts (sent to the teacher)": {"email": 1, "phone": 1,
                                                                                                 "rrn": 1}},
                                "total": {"email": 1, "phone": 1, "rrn": 1}}
    assert card["pii"]["total"] == {"email": 3, "phone": 3, "rrn": 3}  # the prompt once, each echoed reply
    assert card["pii"]["masked"]["teacher replies"] == {"email": 2, "phone": 2, "rrn": 2}


@pytest.mark.parametrize("teacher", [{"fail": [429, 503, 429, 502, 500]}], indirect=True)
def test_429_and_5xx_are_retried(tmp_path, teacher, capsys):
    run = tmp_path / "run"
    assert distill(run, teacher, "--concurrency", "1") == 0
    _, items = task_answers()
    assert teacher.statuses[:5] == [429, 503, 429, 502, 500] and len(teacher.received) == len(items) * 2
    rec = [r for r in read_ledger(run) if r["stage"] == "distill"][-1]
    assert rec["teacher"]["retries"] == {"HTTP 429": 2, "HTTP 500": 1, "HTTP 502": 1, "HTTP 503": 1}
    assert "retry 1/6" in capsys.readouterr().out


def test_retry_after_is_honoured_and_giving_up_is_a_clear_error(tmp_path, capsys):
    answers, _ = task_answers()
    fake = FakeTeacher(answers, fail=[429], retry_after="1")
    try:
        t0 = time.monotonic()
        assert distill(tmp_path / "a", fake, "--tasks", "josa", "--levels", "1", "--items-per-level", "1",
                       "--samples", "1") == 0
        assert time.monotonic() - t0 >= 1.0  # waited as told, not the 0.01 s back-off
        fake.fail = [503] * 10
        assert distill(tmp_path / "b", fake, "--max-retries", "2") == 2
        err = capsys.readouterr().err
        assert "no answer after 3 tries (last: HTTP 503: overloaded)" in err and "Traceback" not in err
    finally:
        fake.close()
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0 and retry_after_s("2.5") == 2.5
    assert retry_after_s("soon") is None


def test_wrong_url_or_key_is_a_clear_error(tmp_path, capsys, monkeypatch):
    answers, _ = task_answers()
    fake = FakeTeacher(answers, key="sk-right")
    try:
        monkeypatch.setenv("TEACHER_KEY", "sk-wrong")
        assert distill(tmp_path / "a", fake, "--api-key-env", "TEACHER_KEY") == 2
        err = capsys.readouterr().err
        assert "refused the request (HTTP 401: Incorrect API key provided): check the key in $TEACHER_KEY" in err
        assert "sk-wrong" not in err and "Traceback" not in err
        assert distill(tmp_path / "a", fake) == 2
        assert "no API key was sent (pass --api-key-env VAR" in capsys.readouterr().err
        assert distill(tmp_path / "a", fake, "--api-key-env", "NOT_SET_ANYWHERE") == 2
        assert "--api-key-env NOT_SET_ANYWHERE: the environment variable is not set" in capsys.readouterr().err
        monkeypatch.setenv("TEACHER_KEY", "sk-right")
        wrong_path = fake.url.removesuffix("/v1") + "/api"
        assert main(["distill", "--run", str(tmp_path / "b"), "--teacher-url", wrong_path, "--teacher-model", "m",
                     "--api-key-env", "TEACHER_KEY", *ARGS]) == 2
        assert "no Chat Completions endpoint at" in capsys.readouterr().err
        assert distill(tmp_path / "c", fake, "--api-key-env", "TEACHER_KEY") == 0  # the right key works
    finally:
        fake.close()
    # Nothing listens there: a clear error at once, not minutes of retries.
    t0 = time.monotonic()
    assert main(["distill", "--run", str(tmp_path / "d"), "--teacher-url", fake.url, "--teacher-model", "m",
                 *ARGS]) == 2
    err = capsys.readouterr().err
    assert f"--teacher-url {fake.url}: cannot reach the teacher" in err and time.monotonic() - t0 < 5
    assert main(["distill", "--run", str(tmp_path / "e"), "--teacher-url", "localhost:8000", "--teacher-model", "m",
                 *ARGS]) == 2
    assert "give an http(s) URL" in capsys.readouterr().err


def test_a_killed_distill_resumes_without_re_asking_and_gives_the_same_dataset(tmp_path, capsys):
    answers, items = task_answers()
    ref = FakeTeacher(answers)
    try:
        assert distill(tmp_path / "ref", ref) == 0
    finally:
        ref.close()
    fake = FakeTeacher(answers, delay_s=0.15)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "saessak", "distill", "--run", str(run), "--teacher-url", fake.url,
           "--teacher-model", "big-teacher", *ARGS, "--concurrency", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "SAESSAK_HEARTBEAT_S": "0.2"})
    try:
        deadline = time.monotonic() + 60
        while len(list((run / "distill" / "items").glob("*.json"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        finished = sorted((run / "distill" / "items").glob("*.json"))
        assert 3 <= len(finished) < len(items)
        assert not (run / "distill" / "train.jsonl").exists() and not (run / "distill" / "done.json").exists()
        asked_before = len(fake.received)
        done_ids = {read_json(f)["id"] for f in finished}
        fake.delay_s = 0.0
        assert distill(run, fake, "--concurrency", "1") == 0
        again = fake.received[asked_before:]
        asked_again = {p for b in again for p in [b["messages"][-1]["content"]]}
        done_prompts = {it["messages"][-1]["content"] for it in items if it["id"] in done_ids}
        assert not asked_again & done_prompts, "a finished prompt was asked again"
        assert len(again) <= (len(items) - len(finished)) * 2
    finally:
        if proc.poll() is None:
            proc.kill()
        fake.close()
    assert (run / "distill" / "train.jsonl").read_bytes() == (tmp_path / "ref" / "distill" / "train.jsonl").read_bytes()
    statuses = [r["status"] for r in read_ledger(run) if r["stage"] == "distill"]
    assert statuses == ["killed", "done"]
    # Other settings on an unfinished run would mix two datasets: refused.
    (run / "distill" / "done.json").unlink()
    assert distill(run, fake, "--temperature", "0.2") == 2
    assert "other settings is there (differs in: temperature)" in capsys.readouterr().err


def test_sft_trains_on_the_distilled_dataset(tmp_path, teacher):
    from tests.finetune_fixtures import make_run

    run = make_run(tmp_path / "run", max_position_embeddings=256)
    assert distill(run, teacher) == 0
    data = run / "distill" / "train.jsonl"
    assert main(["sft", "--run", str(run), "--preset", "micro", "--max-steps", "1", "--batch-size", "1",
                 "--seq-len", "256", "--task-items-per-family", "1", "--identity-items", "1", "--data", str(data)]) == 0
    done = read_json(run / "sft" / "done.json")
    assert f"--data {data}" in done["pii"]["masked"]


@pytest.mark.slow  # importing trl (transformers) alone takes longer than the rest of this file
def test_trl_reads_the_distilled_dataset_as_conversations(tmp_path, teacher):
    datasets = pytest.importorskip("datasets")
    trl_utils = pytest.importorskip("trl.data_utils")
    assert distill(tmp_path / "run", teacher) == 0
    data = tmp_path / "run" / "distill" / "train.jsonl"
    ds = datasets.load_dataset("json", data_files=str(data), split="train")
    assert len(ds) == len(read_jsonl(data)) and all(trl_utils.is_conversational(row) for row in ds)
    assert ds[0]["messages"][-1]["role"] == "assistant"


def test_teacher_tokens_are_priced_from_the_price_table_row_or_said_unpriced(tmp_path):
    from saessak.errors import UserError

    prices = load_prices()
    rec = {"stage": "distill", "wall_s": 0.0, "device": {"type": "cpu", "cpu": "AMD EPYC 9R14", "cpu_cores": 2},
           "teacher": {"host": "api.deepseek.com", "model": "deepseek-reasoner", "prompt_tokens": 2_000_000,
                       "completion_tokens": 1_000_000}}
    row = ledger_costs([rec], prices)["records"][0]
    assert row["teacher_usd"] == pytest.approx(2 * 0.55 + 2.19) and row["cost_usd"] == pytest.approx(2 * 0.55 + 2.19)
    assert row["teacher_price"]["source"] == "teacher.deepseek_reasoner"
    rec["teacher"]["model"] = "my-own-model"
    row = ledger_costs([rec], prices)["records"][0]
    assert row["teacher_usd"] == 0.0 and "teacher tokens of 'my-own-model' not priced" in row["price_note"]
    bad = tmp_path / "p.toml"
    bad.write_text("[teacher.mine]\nmatch = ['my-own']\nusd_per_mtok_in = -1\nusd_per_mtok_out = 2\n")
    with pytest.raises(UserError, match=r"'teacher.mine.usd_per_mtok_in' is negative"):
        load_prices(bad)
    bad.write_text("[teacher.mine]\nmatch = ['my-own']\nusd_per_mtok_in = 1\nusd_per_mtok_out = 2\n")
    assert ledger_costs([rec], load_prices(bad))["records"][0]["teacher_usd"] == pytest.approx(2 + 2)


@pytest.mark.slow
def test_distil_from_a_local_saessak_serve_into_a_fresh_micro_student(tmp_path):
    """The real path end to end: a tiny model that memorised some josa items' worked solutions is
    served by `saessak serve`; distill asks it, grades, keeps the correct traces; a fresh micro
    student fine-tunes on them."""
    from saessak.tasks.registry import solution
    from tests.finetune_fixtures import make_run
    from tests.serve_util import CliServer, train_demo_chat_model

    items = task_items(("josa",), (1,), 4, 5)
    known = items[:3]  # the teacher memorised three of the four; the fourth it answers by chance
    chats = [(it["messages"][-1]["content"], solution(it["example"])) for it in known]
    teacher_dir = train_demo_chat_model(tmp_path / "teacher", steps=400, chats=chats)
    student = make_run(tmp_path / "student", max_position_embeddings=256)
    with CliServer(teacher_dir, tmp_path) as server:
        assert main(["distill", "--run", str(student), "--teacher-url", server.base_url + "/v1",
                     "--teacher-model", "teacher", "--tasks", "josa", "--levels", "1", "--items-per-level", "4",
                     "--seed", "5", "--samples", "2", "--temperature", "0", "--max-tokens", "120",
                     "--teacher-system", "", "--teacher-price-per-mtok", "0,0"]) == 0
    rows = read_jsonl(student / "distill" / "train.jsonl")
    by_prompt = {it["messages"][-1]["content"]: it["example"] for it in items}
    assert {c[0] for c in chats} <= {r["messages"][0]["content"] for r in rows}  # what it knows, it says
    assert all(grade(by_prompt[r["messages"][0]["content"]], r["messages"][1]["content"])["correct"] for r in rows)
    card = read_json(student / "distill" / "data_card.json")
    assert card["pass_rates"]["josa"]["1"]["samples"] == 8 and card["pass_rates"]["josa"]["1"]["correct"] == len(rows)
    assert card["teacher"]["completion_tokens"] > 0  # `saessak serve` reports usage
    assert main(["sft", "--run", str(student), "--preset", "micro", "--max-steps", "2", "--batch-size", "2",
                 "--seq-len", "256", "--task-items-per-family", "0", "--identity-items", "2",
                 "--data", str(student / "distill" / "train.jsonl")]) == 0
    assert (student / "sft" / "final" / "model.safetensors").exists()


def test_a_task_prompt_that_reads_as_personal_data_is_withheld_not_masked(tmp_path, teacher):
    """Masking a generated question would change it (a 13-digit number can pass the RRN rules):
    it is not sent at all, and counted; with --allow-pii it is sent as it is."""
    import threading

    from saessak.distill.config import DistillConfig
    from saessak.distill.stage import _Asker
    from saessak.distill.teacher import Teacher

    item = {"id": "numbers-train-x", "source": "task", "task": "numbers", "level": 5,
            "messages": [{"role": "user", "content": f"한글로 읽으세요: {RRN}"}],
            "example": {"task": "numbers", "answer": "?", "prompt": "", "meta": {}}}
    ask = _Asker(DistillConfig(samples=1), Teacher(teacher.url, "m"), tmp_path, False, threading.Event())
    rec = ask(0, item)
    assert rec["withheld"] and rec["samples"] == [] and rec["pii_sent"] == {"rrn": 1} and teacher.received == []
    assert read_json(tmp_path / "items" / "000000.json")["withheld"]
    loose = _Asker(DistillConfig(samples=1), Teacher(teacher.url, "m"), tmp_path, True, threading.Event())
    assert not loose(1, item)["withheld"] and RRN in teacher.received[0]["messages"][-1]["content"]
