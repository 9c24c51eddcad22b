"""The project's bill (`saessak bill`) over a folder of micro runs: one completed, one killed, one that
failed on a bad input, plus a benchmark; its totals are the sum of the ledger lines (saessak/report/bill.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saessak.cli import main
from saessak.ledger import load_prices, read_ledger, record_cost
from tests.finetune_fixtures import make_run

REPO = Path(__file__).resolve().parent.parent


def _killed_sft(run: Path) -> None:
    """An SFT attempt killed with SIGKILL after its first heartbeat."""
    env = dict(os.environ, SAESSAK_HEARTBEAT_S="0.2", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "saessak", "sft", "--run", str(run), "--max-steps", "100000"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while True:
            files = list((run / "ledger").glob("*.json"))
            if files and json.loads(files[0].read_text()).get("beats", 0) >= 1:
                break
            assert proc.poll() is None and time.time() < deadline, "sft ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("bill") / "runs"
    done = make_run(root / "done", stages=("pretrain",))
    assert main(["sft", "--run", str(done), "--max-steps", "2", "--tag", "experiment"]) == 0
    assert main(["rl", "--run", str(done), "--max-steps", "1"]) == 0
    assert main(["bill", "tag", str(done), "final"]) == 0  # a later tag replaces the first
    killed = make_run(root / "killed", stages=("pretrain",))
    _killed_sft(killed)
    failed = make_run(root / "failed", stages=("pretrain",))
    bad = root.parent / "bad_chats.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "안녕"}]}\n')  # no assistant turn
    assert main(["sft", "--run", str(failed), "--data", str(bad), "--tag", "ablation"]) == 2
    return root


def _ledger_line_sum(root: Path) -> tuple[float, float, int]:
    prices = load_prices()
    costs = [record_cost(rec, prices) for run in sorted(root.iterdir()) if run.is_dir()
             for rec in read_ledger(run)]
    return sum(c["cost_krw"] for c in costs), sum(c["cost_usd"] for c in costs), len(costs)


def test_the_bill_sums_every_attempt_of_every_run(project, tmp_path, capsys):
    krw, usd, n = _ledger_line_sum(project)
    out = tmp_path / "bill"
    capsys.readouterr()
    assert main(["bill", str(project), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    bill = json.loads((out / "bill.json").read_text())
    assert bill["total"]["cost_krw"] == pytest.approx(krw) and bill["total"]["cost_usd"] == pytest.approx(usd)
    assert bill["total"]["attempts"] == n == len(bill["attempts"])
    assert f"total {krw:.2f} KRW (USD {usd:.4f})" in printed and "## Total spend" in printed
    assert (out / "bill.md").read_text().startswith("# saessak project bill")
    assert (out / "bill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Broken down every way, each breakdown adding up to the total.
    for key in ("by_tag", "by_run", "by_stage", "by_status", "by_device"):
        assert sum(g["cost_krw"] for g in bill[key].values()) == pytest.approx(krw), key
    assert set(bill["by_status"]) == {"done", "failed", "killed"}
    assert set(bill["by_tag"]) == {"final", "ablation", "untagged"}
    failed = next(a for a in bill["attempts"] if a["status"] == "failed")
    assert failed["stage"] == "sft" and failed["error"] == "UserError" and failed["run"].endswith("failed")
    killed = next(a for a in bill["attempts"] if a["status"] == "killed")
    assert killed["stage"] == "sft" and killed["unmeasured"] and killed["wall_s"] > 0
    # The headline: the final model's own stages only; the total is a multiple of it.
    [model] = bill["headline"]["models"]
    assert model["run"].endswith("done") and model["stages"] == ["sft", "rl"]  # the fixture's pretrain has no ledger line
    assert bill["ratio_total_to_headline"] == pytest.approx(krw / model["cost_krw"]) and bill["ratio_total_to_headline"] > 1
    # Every attempt here ran on this machine: priced with the row of its CPU, or said which row stood in.
    for a in bill["attempts"]:
        assert a["price_row"].startswith("cpu.")


def test_the_report_and_the_model_card_give_both_numbers(project, tmp_path):
    from saessak.export.hf import export_hf

    done = project / "done"
    assert main(["report", "--run", str(done)]) == 0
    md = (done / "report.md").read_text()
    assert "the project that produced it" in md and "(3 runs, 2 failed attempts of" in md
    card = (export_hf(done, tmp_path / "hf") / "README.md").read_text()
    assert "This model's run cost" in card and "(3 runs, 2 failed attempts of" in card
    # Alone in its folder, a run says only it is known.
    alone = make_run(tmp_path / "solo" / "run", stages=("pretrain",))
    assert main(["report", "--run", str(alone)]) == 0
    assert "only this run is known" in (alone / "report.md").read_text()


def test_a_benchmark_that_trains_can_put_its_cost_in_the_bill(project, tmp_path):
    bench = project / "bench-rl-step"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "rl_step.py"), "--smoke", "--no-trl", "--run", str(bench)],
                       cwd=REPO, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"),
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["smoke"] is True  # still the last line
    [rec] = read_ledger(bench)
    assert rec["stage"] == "bench" and rec["status"] == "done" and rec["bench"] == "rl_step.py"
    from saessak.report.bill import build_bill

    assert build_bill([project])["by_stage"]["bench"]["attempts"] == 1
    import shutil

    shutil.rmtree(bench)  # the other tests count the three runs


def test_lm_eval_records_its_cost_in_the_run_it_was_exported_from(tmp_path):
    pytest.importorskip("lm_eval")
    from saessak.evals.lm_eval import run as lm_eval_run
    from saessak.export.hf import export_hf
    from tests.run_fixture import make_run as make_finished_run

    run = make_finished_run(tmp_path / "run", stages=("pretrain",))
    hf = export_hf(run, run / "export" / "hf")

    class Args:
        model, tasks, limit, batch_size, output = str(hf), "saessak_ko_mc", 2, 2, None

    assert lm_eval_run(Args) == 0
    rec = [r for r in read_ledger(run) if r["stage"] == "eval"][-1]
    assert rec["harness"] == "lm-eval" and rec["status"] == "done" and "tokens" in rec["unmeasured"]


def test_since_leaves_older_attempts_out(project):
    from saessak.report.bill import build_bill

    all_of_it = build_bill([project])
    later = build_bill([project], since="2999-01-01")
    assert later["total"]["attempts"] == 0 and later["left_out_by_since"] == all_of_it["total"]["attempts"]
    assert build_bill([project], since="2000-01-01")["total"]["cost_krw"] == pytest.approx(all_of_it["total"]["cost_krw"])


def test_bad_input_is_a_clear_error_never_a_traceback(project, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_prices = tmp_path / "bad.toml"
    bad_prices.write_text("[cpu.amd_genoa]\nusd_per_hour = -1\n")
    cases = [
        (["bill", str(tmp_path / "nope")], "nope: folder not found"),
        (["bill", str(empty)], "no run folders"),
        (["bill", str(project), "--since", "last tuesday"], "--since 'last tuesday': not a date"),
        (["bill", str(project), "--prices", str(bad_prices)], "'cpu.amd_genoa.usd_per_hour' is negative"),
        (["bill", "tag", str(project / "done"), "best"], "tag 'best': not one of experiment, final, ablation"),
        (["bill", "tag", str(project / "done")], "usage: saessak bill tag RUN TAG"),
        (["bill", "tag", str(tmp_path / "nope"), "final"], "run folder not found"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_a_corrupt_ledger_line_is_counted_and_reported(project, tmp_path, capsys):
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(project, copy)
    ledger = copy / "failed" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(["{ not json", *lines, '{"stage": "sft", "wall_s": -5}']) + "\n")
    capsys.readouterr()
    assert main(["bill", str(copy), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert f"{ledger}:1: not valid JSON" in captured.err and f"{ledger}:{len(lines) + 2}: 'wall_s' is -5" in captured.err
    bill = json.loads((tmp_path / "out" / "bill.json").read_text())
    assert len(bill["problems"]) == 2 and "## Not counted" in (tmp_path / "out" / "bill.md").read_text()
    krw, _, _ = _ledger_line_sum(copy)  # the readable lines, all of them
    assert bill["total"]["cost_krw"] == pytest.approx(krw)
