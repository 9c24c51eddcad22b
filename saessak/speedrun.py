"""The speedrun: the whole pipeline in one command, each stage through its own subcommand's code.

    data build -> tokenizer train -> pretrain -> sft -> rl -> eval tasks (base, sft, rl)
    -> report -> export hf -> export gguf

Each step is `saessak.cli.main([...])` with the command line a user would type, so the speedrun
and the stage commands cannot drift apart. A step whose output is complete is skipped (the
stage's done marker; for eval, its key in eval/results.json; for report and export, an output
newer than its inputs). An interrupted model stage resumes from its checkpoints. `--from STAGE`
passes `--force` to that stage and every one after it. The first failing step stops the run
with a message naming it and its exit status.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from saessak.errors import UserError
from saessak.runfolder import RunFolder

# Stage names accepted by --from, in pipeline order ("base" is an alias of "pretrain").
FROM_STAGES = ["data", "tokenizer", "pretrain", "sft", "rl", "eval", "report", "export"]


@dataclass(frozen=True)
class SpeedrunSettings:
    """What the speedrun passes to the stages beyond the preset itself."""

    max_docs: int | None = None  # data build --max-docs
    eval_n: int | None = None  # eval tasks --n (None: the eval stage's default)
    eval_k: int | None = None  # eval tasks --k (None: the eval stage's default)


SETTINGS = {
    # CI's end-to-end test: a small corpus slice and a few eval items, so the pipeline runs in minutes.
    "micro": SpeedrunSettings(max_docs=300, eval_n=8, eval_k=0),
    # Up to 1500 distinct test items per family (500 per level 1-3; small levels give what they have:
    # 466-1029 per family): keeps the standard error of an RL - SFT difference at about 1-2 points,
    # and greedy eval of about 3,600 items takes about 20 s per stage (pass@4 about four times that).
    "cpu-tiny": SpeedrunSettings(eval_n=1500),
}


@dataclass
class Step:
    name: str  # shown in the time table
    group: str  # the FROM_STAGES entry it belongs to
    argv: list[str]
    is_complete: Callable[[], bool]
    checkpoint_dir: Path | None = None  # a model stage: --resume when checkpoints are here


@dataclass
class StepResult:
    name: str
    status: str  # ran, skipped, failed
    wall_s: float
    exit_code: int = 0


@dataclass
class SpeedrunResult:
    run: str
    preset: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)


def _mtime(p: Path) -> float:
    return p.stat().st_mtime if p.exists() else 0.0


def _newer_than(out: Path, *inputs: Path) -> bool:
    return out.exists() and all(_mtime(out) >= _mtime(i) for i in inputs)


def _eval_has(run: RunFolder, stage: str) -> bool:
    try:
        results = json.loads((run.root / "eval" / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(results, dict) and isinstance(results.get(stage), dict)


def _has_checkpoints(ckpt_dir: Path) -> bool:
    return ckpt_dir.is_dir() and any(p.name.startswith("step_") for p in ckpt_dir.iterdir())


def plan(run_dir: str, preset: str, sources: str | None = None) -> list[Step]:
    run = RunFolder(run_dir)
    r = str(run.root)
    s = SETTINGS.get(preset, SpeedrunSettings())
    data = ["data", "build", "--out", str(run.data)]
    if s.max_docs:
        data += ["--max-docs", str(s.max_docs)]
    if sources:
        data += ["--sources", sources]
    steps = [
        Step("data", "data", data, lambda: run.is_done("data")),
        Step("tokenizer", "tokenizer", ["tokenizer", "train", "--run", r, "--preset", preset],
             lambda: run.is_done("tokenizer")),
        Step("pretrain", "pretrain", ["pretrain", "--run", r, "--preset", preset], lambda: run.is_done("base"),
             run.stage_dir("base") / "ckpt"),
        Step("sft", "sft", ["sft", "--run", r, "--preset", preset], lambda: run.is_done("sft"),
             run.stage_dir("sft") / "ckpt"),
        Step("rl", "rl", ["rl", "--run", r, "--preset", preset], lambda: run.is_done("rl"),
             run.stage_dir("rl") / "ckpt"),
    ]
    for stage in ("base", "sft", "rl"):
        argv = ["eval", "tasks", "--run", r, "--stage", stage]
        if s.eval_n is not None:
            argv += ["--n", str(s.eval_n)]
        if stage == "base":
            # The base model has not learnt the chat format, so sampling k more answers from it only
            # costs time (4x the greedy pass); its greedy accuracy is still measured.
            argv += ["--k", "0"]
        elif s.eval_k is not None:
            argv += ["--k", str(s.eval_k)]
        steps.append(Step(f"eval-{stage}", "eval", argv, lambda st=stage: _eval_has(run, st)))
    report_json = run.root / "report.json"
    inputs = (run.ledger, run.root / "eval" / "results.json")
    hf_dir = run.root / "export" / "hf"
    gguf = run.root / "export" / "model.gguf"
    steps += [
        Step("report", "report", ["report", "--run", r], lambda: _newer_than(report_json, *inputs)),
        Step("export-hf", "export", ["export", "hf", "--run", r, "--out", str(hf_dir)],
             lambda: _newer_than(hf_dir / "README.md", report_json)),
        Step("export-gguf", "export", ["export", "gguf", "--run", r, "--out", str(gguf)],
             lambda: _newer_than(gguf, report_json)),
    ]
    return steps


def _run_step(step: Step, forced: bool, log) -> StepResult:
    from saessak.cli import main

    if not forced and step.is_complete():
        log(f"[speedrun] {step.name}: complete, skipped")
        return StepResult(step.name, "skipped", 0.0)
    argv = list(step.argv)
    if forced:
        argv.append("--force")
    elif step.checkpoint_dir is not None and _has_checkpoints(step.checkpoint_dir):
        argv.append("--resume")
    log(f"[speedrun] {step.name}: saessak {' '.join(argv)}")
    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse rejects a command line with SystemExit(2)
        code = e.code if isinstance(e.code, int) else 1
    except Exception:  # a crash inside a stage: show it, then stop the speedrun cleanly
        traceback.print_exc()
        code = 1
    wall = time.perf_counter() - t0
    return StepResult(step.name, "ran" if code == 0 else "failed", wall, code)


def speedrun(run_dir: str, preset: str, from_stage: str | None = None, sources: str | None = None,
             log=print) -> SpeedrunResult:
    from saessak.presets import get_preset

    get_preset(preset)  # an unknown preset is a UserError before anything runs
    if from_stage == "base":
        from_stage = "pretrain"
    if from_stage is not None and from_stage not in FROM_STAGES:
        raise UserError(f"--from {from_stage!r}: not a stage; choose one of {', '.join(FROM_STAGES)}")
    first_forced = FROM_STAGES.index(from_stage) if from_stage else len(FROM_STAGES)
    result = SpeedrunResult(run=str(run_dir), preset=preset)
    for step in plan(run_dir, preset, sources):
        forced = FROM_STAGES.index(step.group) >= first_forced
        res = _run_step(step, forced, log)
        result.steps.append(res)
        if res.status == "failed":
            log(f"saessak: error: speedrun stopped: stage '{step.name}' failed with exit status {res.exit_code}. "
                f"Fix the cause and run the same command again: complete stages are skipped.")
            break
    return result


def time_table(result: SpeedrunResult) -> str:
    rows = [f"{'stage':<12} {'status':<8} {'wall s':>9}"]
    rows += [f"{s.name:<12} {s.status:<8} {s.wall_s:>9.1f}" for s in result.steps]
    total = sum(s.wall_s for s in result.steps)
    rows.append(f"{'total':<12} {'':<8} {total:>9.1f}")
    return "\n".join(rows)
