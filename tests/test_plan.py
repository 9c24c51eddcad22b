"""The speedrun's time budget as a plan (saessak/report/plan.py): what is scaled, when, and that it is kept."""

from __future__ import annotations

import json

import pytest

import saessak.cli
from saessak.report import plan as planning
from saessak.errors import UserError
from saessak.speedrun import rl_budget_now, sft_budget_now, speedrun
from tests.test_speedrun import FakeStages


@pytest.fixture()
def machine(monkeypatch):
    """A machine whose measured speeds the test sets: SFT step seconds and decode seconds per token."""
    speed = {"sft": 0.5, "decode": 1e-4, "items": 3000}
    monkeypatch.setattr(planning, "_sft_step_seconds", lambda preset, cfg, dev="cpu": (speed["sft"], {"sft_dtype": "bf16"}))
    monkeypatch.setattr(planning, "_decode_seconds_per_token", lambda cfg, v: (speed["decode"], {"decode_dtype": "fp32"}))
    monkeypatch.setattr(planning, "_eval_items", lambda preset: speed["items"])
    return speed


class PlanningStages(FakeStages):
    """FakeStages that runs the real `saessak plan` (its measurements are the fixture's)."""

    def __call__(self, argv):
        if argv[0] == "plan":
            self.calls.append(argv)
            return saessak.cli.real_main(argv)
        return super().__call__(argv)


def test_a_fast_machine_runs_the_recipe_as_it_is(machine):
    machine["sft"] = 0.1
    p = planning.make_plan("cpu-tiny", 20, log=lambda *_: None)
    est = p.estimate_s
    room = 1200 * planning.SAFETY - est["fixed"] - est["pretrain"] - est["eval"]
    assert p.scale == 1.0 and p.sft_max_steps == 800
    # RL gets all the budget leaves, more than the recipe's 600 s on a machine this fast
    assert p.rl_time_budget_s == pytest.approx(room - est["sft"], abs=0.1) and p.rl_time_budget_s > 600.0
    assert "fits" in p.note


def test_a_slower_machine_keeps_sft_and_shortens_rl(machine):
    machine["sft"] = 1.0  # 800 compiled SFT steps take about 10 minutes here
    p = planning.make_plan("cpu-tiny", 20, log=lambda *_: None)
    est = p.estimate_s
    room = 1200 * planning.SAFETY - est["fixed"] - est["pretrain"] - est["eval"]
    assert p.sft_max_steps == 800 and planning.MIN_RL_S <= p.rl_time_budget_s < 600
    assert p.rl_time_budget_s == pytest.approx(room - est["sft"], abs=0.1)
    assert est["fixed"] + est["pretrain"] + est["eval"] + est["sft"] + p.rl_time_budget_s <= 1200 * planning.SAFETY + 0.1
    assert "SFT keeps its 800 steps" in p.note


def test_a_much_slower_machine_cuts_sft_and_says_so(machine):
    machine["sft"] = 2.0
    p = planning.make_plan("cpu-tiny", 20, log=lambda *_: None)
    assert p.sft_max_steps < 800 and p.rl_time_budget_s == planning.MIN_RL_S
    assert "weaker SFT model" in p.note


def test_rl_budget_is_reset_from_the_time_actually_left(machine):
    machine["sft"] = 0.8
    p = planning.make_plan("cpu-tiny", 20, log=lambda *_: None).to_dict()
    assert p["rl_time_budget_s"] < p["recipe"]["rl_time_budget_s"]  # the plan shortened RL
    left = 1200 * planning.SAFETY - p["reserve_after_rl_s"]
    early = rl_budget_now(dict(p), elapsed_s=100.0)  # earlier stages ran faster than planned
    assert early == pytest.approx(left - 100.0, abs=0.1)  # RL gets all the time they left,
    assert early > p["recipe"]["rl_time_budget_s"]  # past the recipe's figure too
    ahead = rl_budget_now(dict(p), elapsed_s=left - p["rl_time_budget_s"] - 50.0)
    assert ahead == pytest.approx(p["rl_time_budget_s"] + 50.0, abs=0.1)  # above the planned figure
    late_plan = dict(p)
    late = rl_budget_now(late_plan, elapsed_s=900.0)  # earlier stages ran long
    assert late < p["rl_time_budget_s"] and late_plan["rl_reset"]["elapsed_s"] == 900.0
    assert rl_budget_now(dict(p), elapsed_s=5000.0) == planning.MIN_RL_S  # RL keeps a minimum


def test_sft_budget_leaves_rl_its_minimum_and_the_evals_their_estimate(machine):
    p = planning.make_plan("cpu-tiny", 20, log=lambda *_: None).to_dict()
    got = dict(p)
    budget = sft_budget_now(got, elapsed_s=240.0)
    assert budget == pytest.approx(1200 * planning.SAFETY - 240.0 - p["reserve_after_rl_s"] - planning.MIN_RL_S, abs=0.1)
    assert got["sft_reset"] == {"elapsed_s": 240.0, "sft_time_budget_s": budget}
    assert sft_budget_now(dict(p), elapsed_s=5000.0) == 0.0  # nothing left: SFT runs its minimum


@pytest.mark.parametrize("budget, elapsed, step_s, val_s, want", [
    (900.0, 40.0, 1.0, 5.0, 800),  # 780 more steps x (1 + 5/100) + 5 = 824 s fit in 860: no cut
    (600.0, 40.0, 1.0, 5.0, 20 + int((600 - 40 - 5) // 1.05)),  # cut to what fits
    (10.0, 40.0, 1.0, 5.0, 21),  # over already: one more step, never fewer than one
])
def test_steps_within_counts_the_validation_passes(budget, elapsed, step_s, val_s, want):
    from saessak.sft.stage import steps_within

    assert steps_within(budget, elapsed, 20, 800, step_s, val_s, 100) == want


def test_speedrun_passes_the_plan_to_sft_and_rl_and_keeps_it(tmp_path, monkeypatch, machine):
    machine["sft"] = 2.0
    run = str(tmp_path / "r")
    fake = PlanningStages(run)
    monkeypatch.setattr(saessak.cli, "real_main", saessak.cli.main, raising=False)
    monkeypatch.setattr(saessak.cli, "main", fake)
    speedrun(run, "cpu-tiny", log=lambda *_: None)
    assert fake.calls[0][:2] == ["plan", "--run"]  # the plan comes first
    saved = json.loads((tmp_path / "r" / "plan.json").read_text())
    calls = {c[0]: c for c in fake.calls}
    assert calls["sft"][-4:-2] == ["--max-steps", str(saved["sft_max_steps"])] and saved["sft_max_steps"] < 800
    assert calls["sft"][-2:] == ["--time-budget", str(saved["sft_reset"]["sft_time_budget_s"])]
    assert calls["rl"][calls["rl"].index("--time-budget") + 1] == str(saved["rl_reset"]["rl_time_budget_s"])
    # a second speedrun reads the plan back instead of measuring again
    machine["sft"] = 0.01
    fake.calls.clear()
    speedrun(run, "cpu-tiny", from_stage="sft", log=lambda *_: None)
    again = {c[0]: c for c in fake.calls}["sft"]
    assert again[again.index("--max-steps") + 1] == str(saved["sft_max_steps"])
    # and the budget SFT was first given (a resumed SFT keeps its count; it is not re-timed)
    assert again[again.index("--time-budget") + 1] == str(saved["sft_reset"]["sft_time_budget_s"])
    # --budget-min 0: the recipe as it is, no plan
    plain_fake = PlanningStages(str(tmp_path / "r0"))
    monkeypatch.setattr(saessak.cli, "main", plain_fake)
    speedrun(str(tmp_path / "r0"), "cpu-tiny", budget_min=0, log=lambda *_: None)
    plain = {c[0]: c for c in plain_fake.calls}
    assert "--max-steps" not in plain["sft"] and "--time-budget" not in plain["rl"]
    assert not (tmp_path / "r0" / "plan.json").exists() and "plan" not in plain


def test_micro_has_no_budget_and_bad_budget_is_a_user_error(tmp_path, monkeypatch, machine):
    run = str(tmp_path / "m")
    fake = PlanningStages(run)
    monkeypatch.setattr(saessak.cli, "real_main", saessak.cli.main, raising=False)
    monkeypatch.setattr(saessak.cli, "main", fake)
    speedrun(run, "micro", log=lambda *_: None)
    assert not (tmp_path / "m" / "plan.json").exists() and all(c[0] != "plan" for c in fake.calls)
    with pytest.raises(UserError, match="--budget-min -5"):
        speedrun(run, "micro", budget_min=-5, log=lambda *_: None)


def test_plan_command_writes_and_reads_back(tmp_path, machine, capsys):
    from saessak.cli import main

    run = tmp_path / "p"
    assert main(["plan", "--run", str(run), "--preset", "cpu-tiny"]) == 0
    first = json.loads((run / "plan.json").read_text())
    assert first["budget_s"] == 1200.0 and first["measured"]["sft_step_s"] == 0.5
    machine["sft"] = 9.0
    assert main(["plan", "--run", str(run), "--preset", "cpu-tiny"]) == 0  # read back, not measured
    assert json.loads((run / "plan.json").read_text())["measured"]["sft_step_s"] == 0.5
    assert main(["plan", "--run", str(run), "--preset", "cpu-tiny", "--force"]) == 0
    assert json.loads((run / "plan.json").read_text())["measured"]["sft_step_s"] == 9.0
    assert main(["plan", "--run", str(run), "--preset", "micro"]) == 0
    assert "no time budget" in capsys.readouterr().out
    assert main(["plan", "--run", str(run), "--preset", "nope"]) == 2


def test_real_measurement_of_the_micro_shape_is_quick():
    from saessak.model import model_config

    cfg = model_config("micro")
    step_s, facts = planning._sft_step_seconds("micro", cfg)
    decode_s, dfacts = planning._decode_seconds_per_token(cfg, cfg.vocab_size)
    assert 0 < step_s < 5 and 0 < decode_s < 0.1
    assert facts["sft_dtype"] in ("bf16", "fp32") and dfacts["decode_dtype"] in ("bf16", "fp32")
