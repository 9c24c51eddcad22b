"""The run report: priced ledger, eval keys other tools rely on, plots, bad input."""

import json

import pytest

from saessak.cli import main
from saessak.errors import UserError
from saessak.report.build import build_report, write_report
from saessak.report.plots import series_by_panel
from tests.run_fixture import make_run


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("rep") / "run")
    assert main(["report", "--run", str(run)]) == 0
    return run, json.loads((run / "report.json").read_text())


def test_minimum_keys_other_tools_rely_on(reported):
    _, r = reported
    assert r["stages"][:2] == ["data", "tokenizer"] and "pretrain" in r["stages"] and "rl" in r["stages"]
    total = r["ledger"]["total"]
    for key in ("wall_s", "flops", "cost_krw", "cost_usd"):
        assert isinstance(total[key], float)
    assert r["eval"]["pretrain"]["bpb"] == 3.25
    for stage in ("sft", "rl"):
        assert all(0.0 <= v <= 1.0 for v in r["eval"][stage]["tasks"].values())
    assert r["eval"]["rl"]["tasks"] == {"josa": 0.55, "numbers": 0.31}  # dict results reduced to accuracy
    assert r["eval"]["rl_gain"]["josa"] == pytest.approx(0.15)
    # paired over the same 20 items: 3 of them flipped to correct
    assert r["eval"]["rl_gain_ci95"] == {"josa": pytest.approx(1.96 * (((3 * 0.85**2 + 17 * 0.15**2) / 19) / 20) ** 0.5)}


def test_ledger_money_follows_the_price_table(reported, tmp_path):
    run, r = reported
    wall = 3.0 + 2.0 + 60.0 + 120.0 + 180.0
    assert r["ledger"]["total"]["wall_s"] == pytest.approx(wall)
    cpu = r["prices"]["cpu"]
    assert r["ledger"]["total"]["cost_usd"] == pytest.approx(wall / 3600 * 2 * cpu["usd_per_hour"] / cpu["vcpus"])
    assert r["ledger"]["total"]["cost_krw"] == pytest.approx(r["ledger"]["total"]["cost_usd"] * r["prices"]["usd_to_krw"])
    # A price file doubling the hourly price doubles the money, leaves the time alone. (A flat [cpu]
    # table, the older layout, prices every CPU record.)
    f1, f2 = tmp_path / "p1.toml", tmp_path / "p2.toml"
    f1.write_text(f"[cpu]\nusd_per_hour = {cpu['usd_per_hour']}\n")
    f2.write_text(f"[cpu]\nusd_per_hour = {2 * cpu['usd_per_hour']}\n")
    r1, r2 = build_report(run, prices=f1), build_report(run, prices=f2)
    assert r2["ledger"]["total"]["cost_usd"] == pytest.approx(2 * r1["ledger"]["total"]["cost_usd"])
    assert r2["ledger"]["stages"]["pretrain"]["wall_s"] == 60.0
    assert r2["prices"]["cpu"]["row"] == "cpu" and r2["prices"]["cpu"]["note"] is None


def test_the_report_is_an_attempt_of_its_own_and_reports_every_one_before_it(reported):
    run, r = reported
    from saessak.ledger import read_ledger

    mine = [x for x in read_ledger(run) if x["stage"] == "report"]
    assert len(mine) == 1 and mine[0]["status"] == "done" and mine[0]["wall_s"] > 0
    assert "report" not in r["ledger"]["stages"]  # it could not price itself while running
    assert "report" in build_report(run)["ledger"]["stages"]  # the next report counts it
    # The fixture's CPU ("Test Xeon") matches no row: priced with the Intel row, and said so.
    assert r["prices"]["cpu"]["row"] == "intel_sapphire_rapids"
    md = (run / "report.md").read_text()
    assert "the nearest row: no [cpu.*] row matches 'Test Xeon'" in md
    assert "only this run is known" in md  # alone in its folder


def test_markdown_and_plots(reported):
    run, r = reported
    md = (run / "report.md").read_text()
    for needle in ("## Cost ledger", "KRW", "DeepSeek-V3", "H100", "kolaw", "GPL-3.0", "phone 2", "14 → 12", "josa",
                   "+15.0 pt ± 16.1", "hangul_chars_per_token",
                   "assistant: 3 + 2 = 5 ⏎ 정답: 5"):
        assert needle in md, needle
    assert set(r["plots"]) >= {"plots/pretrain_loss.png", "plots/pretrain_bpb.png", "plots/sft_loss.png",
                               "plots/rl_reward.png", "plots/rl_accuracy.png"}
    for p in r["plots"]:
        assert (run / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_projection_to_gpu_presets_is_flops_based(reported):
    _, r = reported
    proj = r["projection"]
    names = [p["preset"] for p in proj["presets"]]
    assert "d20" in names and "micro" not in names
    d20 = next(p for p in proj["presets"] if p["preset"] == "d20")
    h100 = d20["gpus"]["H100"]
    assert h100["gpu_hours"] == pytest.approx(d20["flops"] / (989e12 * proj["assumptions"]["mfu"]) / 3600)
    assert proj["reference"]["gpu_hours"] == 2_788_000 and proj["reference"]["cost_usd"] == 5_576_000


def test_series_reader_is_defensive():
    recs = [{"step": 1, "loss": 2.0, "lr": 0.1}, {"step": 2, "loss": float("nan")}, "junk" and {},
            {"step": 3, "accuracy": {"josa": 0.5}, "reward_std": 0.2, "val_bpb": True}]
    panels = series_by_panel(recs)
    assert panels["loss"]["loss"] == ([1.0], [2.0])
    assert panels["accuracy"]["accuracy/josa"] == ([3.0], [0.5])
    assert "reward" not in panels and "bpb" not in panels


def test_partial_run_and_bad_input(tmp_path, capsys):
    run = make_run(tmp_path / "run", stages=("pretrain",))
    (run / "eval" / "results.json").unlink()
    r = write_report(run)
    assert r["eval"]["sft"]["tasks"] == {} and r["eval"]["rl_gain"] == {}
    assert main(["report", "--run", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    bad = tmp_path / "neg.toml"
    bad.write_text("[electricity]\nkrw_per_kwh = -1\n")
    assert main(["report", "--run", str(run), "--prices", str(bad)]) == 2
    assert "electricity.krw_per_kwh" in capsys.readouterr().err
    with pytest.raises(UserError):
        build_report(run, prices=tmp_path / "none.toml")


def test_a_run_folder_from_before_pretrain_had_one_name_still_reads(tmp_path, capsys):
    """Old run folders keep the pretrained model in base/ and its eval results under "base"."""
    from saessak.export.hf import export_hf
    from saessak.runfolder import RunFolder

    run = make_run(tmp_path / "old")
    (run / "pretrain").rename(run / "base")
    results = json.loads((run / "eval" / "results.json").read_text())
    results["base"] = results.pop("pretrain")
    (run / "eval" / "results.json").write_text(json.dumps(results))
    rf = RunFolder(run)
    assert rf.is_done("pretrain") and rf.preset() == "test" and rf.latest_model_stage() == "rl"
    r = build_report(run)
    assert r["eval"]["pretrain"]["bpb"] == 3.25 and r["eval"]["pretrain"]["tasks"]["josa"] == 0.1
    assert "pretrain" in r["stages"] and "base" not in r["stages"]
    out = export_hf(run, tmp_path / "hf", stage="base")  # the old name is still accepted
    assert "| josa | 10.0% |" in (out / "README.md").read_text()
    assert main(["export", "gguf", "--run", str(run), "--stage", "base", "--out", str(tmp_path / "m.gguf")]) == 0
