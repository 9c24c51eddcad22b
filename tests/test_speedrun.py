"""Speedrun orchestration without training: the stage command lines, skipping, --from, failures."""

import pytest

import saessak.cli
from saessak.errors import UserError
from saessak.speedrun import plan, speedrun, time_table


class FakeStages:
    """Stands in for saessak.cli.main: records each command line and marks its stage complete."""

    def __init__(self, run, fail_on=None):
        self.run, self.calls, self.fail_on = run, [], fail_on

    def __call__(self, argv):
        from saessak.io import write_json
        from saessak.runfolder import RunFolder

        self.calls.append(argv)
        rf = RunFolder(self.run)
        head = argv[0] if argv[0] not in ("eval", "export", "data", "tokenizer") else f"{argv[0]} {argv[1]}"
        if self.fail_on == head:
            return 2
        if head == "data build":
            rf.mark_done("data")
        elif head == "tokenizer train":
            rf.mark_done("tokenizer")
        elif head in ("pretrain", "sft", "rl"):
            rf.mark_done(head)
        elif head == "eval tasks":
            path = rf.eval_results(argv[argv.index("--split") + 1])
            import json
            results = json.loads(path.read_text()) if path.exists() else {}
            results[argv[argv.index("--stage") + 1]] = {"tasks": {}}
            write_json(path, results)
        elif head == "report":
            write_json(rf.root / "report.json", {})
        elif head == "export hf":
            out = rf.root / "export" / "hf"
            out.mkdir(parents=True, exist_ok=True)
            (out / "README.md").write_text("card")
        elif head == "export gguf":
            (rf.root / "export" / "model.gguf").write_bytes(b"GGUF")
        return 0


def test_command_lines_follow_the_stage_contract(tmp_path):
    run = str(tmp_path / "r")
    steps = {s.name: s.argv for s in plan(run, "micro")}
    assert list(steps) == ["data", "tokenizer", "pretrain", "sft", "rl", "eval-pretrain", "eval-sft", "eval-rl",
                           "report", "export-hf", "export-gguf"]
    assert steps["data"][:4] == ["data", "build", "--out", f"{run}/data"] and "--max-docs" in steps["data"]
    assert steps["pretrain"] == ["pretrain", "--run", run, "--preset", "micro"]
    # eval settings (items) come from the preset's recipe; the speedrun scores every stage greedy only (--k 0);
    # the final eval, and only it, reads the sealed split
    assert steps["eval-sft"] == ["eval", "tasks", "--run", run, "--stage", "sft", "--split", "final", "--k", "0"]
    assert steps["eval-pretrain"] == ["eval", "tasks", "--run", run, "--stage", "pretrain", "--split", "final", "--k", "0"]
    assert steps["export-gguf"] == ["export", "gguf", "--run", run, "--out", f"{run}/export/model.gguf"]
    assert "--max-docs" not in {s.name: s.argv for s in plan(run, "cpu-tiny")}["data"]


def test_second_run_skips_everything_and_from_forces_the_rest(tmp_path, monkeypatch):
    run = str(tmp_path / "r")
    fake = FakeStages(run)
    monkeypatch.setattr(saessak.cli, "main", fake)
    first = speedrun(run, "micro", log=lambda *_: None)
    assert first.ok and [s.status for s in first.steps] == ["ran"] * 11
    fake.calls.clear()
    again = speedrun(run, "micro", log=lambda *_: None)
    assert fake.calls == [] and {s.status for s in again.steps} == {"skipped"}
    forced = speedrun(run, "micro", from_stage="rl", log=lambda *_: None)
    ran = [s.name for s in forced.steps if s.status == "ran"]
    assert ran == ["rl", "eval-pretrain", "eval-sft", "eval-rl", "report", "export-hf", "export-gguf"]
    assert all(argv[-1] == "--force" for argv in fake.calls)
    assert "total" in time_table(forced)


def test_interrupted_model_stage_is_run_again_without_force(tmp_path, monkeypatch):
    run = tmp_path / "r"
    fake = FakeStages(str(run))
    monkeypatch.setattr(saessak.cli, "main", fake)
    (run / "pretrain" / "ckpt" / "step_000010").mkdir(parents=True)  # killed mid-pretraining
    speedrun(str(run), "micro", log=lambda *_: None)
    # The stage's own life-cycle resumes from the checkpoint; the speedrun must not --force it.
    pre = next(a for a in fake.calls if a[0] == "pretrain")
    assert pre == ["pretrain", "--run", str(run), "--preset", "micro"]


def test_a_failed_stage_stops_the_run_and_names_itself(tmp_path, monkeypatch):
    run = str(tmp_path / "r")
    monkeypatch.setattr(saessak.cli, "main", FakeStages(run, fail_on="sft"))
    lines = []
    result = speedrun(run, "micro", log=lines.append)
    assert not result.ok
    assert [s.name for s in result.steps][-1] == "sft" and result.steps[-1].exit_code == 2
    assert "stage 'sft' failed with exit status 2" in lines[-1]


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(UserError, match="--from 'deploy'"):
        speedrun(str(tmp_path), "micro", from_stage="deploy")
    assert saessak.cli.main(["speedrun", "--preset", "huge", "--run", str(tmp_path / "x")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    # A real stage failing for real: an unknown corpus source stops the run at 'data' with exit 2.
    code = saessak.cli.main(["speedrun", "--preset", "micro", "--run", str(tmp_path / "y"), "--sources", "nope"])
    err = capsys.readouterr()
    assert code == 2 and "stage 'data' failed" in err.out + err.err
