"""The speedrun: the whole pipeline in one command, each stage through its own subcommand's code.

    data build -> tokenizer train -> pretrain -> sft -> rl -> eval tasks (pretrain, sft, rl)
    -> report -> export hf -> export gguf

Each step is `saessak.cli.main([...])` with the command line a user would type, so the speedrun
and the stage commands cannot drift apart. A step whose output is complete is skipped (the
stage's done marker; for eval, its key in eval/results_final.json; for report and export, an output
newer than its inputs, the report's inputs being the eval results and every ledger attempt but the
report's and the exports' own). An interrupted model stage resumes from its checkpoints by itself (the
stage life-cycle, saessak/training/lifecycle.py). `--from STAGE`
passes `--force` to that stage and every one after it. The first failing step stops the run
with a message naming it and its exit status.
"""

from __future__ import annotations

import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from saessak import recipes
from saessak.errors import UserError
from saessak.io import read_json_or_none, write_json
from saessak.runfolder import MODEL_STAGES, REPORTED_SPLIT, STAGES, RunFolder, old_names, stage_name

@dataclass
class Step:
    name: str  # shown in the time table
    stage: str  # the runfolder.STAGES entry it belongs to (what --from names)
    argv: list[str]
    is_complete: Callable[[], bool]
    # Options decided when the step starts (the time plan's RL budget), given the seconds run so far.
    late_argv: Callable[[float], list[str]] | None = None


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


def _spent_since(run: RunFolder, out: Path) -> bool:
    """Whether a stage attempt ended after `out` was written. The report's and the exports' own
    ledger records, written after their outputs, do not count (or a finished run would never skip
    its report); records from before attempts had an end time are older than any output."""
    from saessak.ledger import epoch, read_ledger

    t = _mtime(out)
    return any((epoch(rec.get("end")) or epoch(rec.get("heartbeat")) or 0.0) > t
               for rec in read_ledger(run.root) if rec["stage"] not in ("report", "export"))


def _eval_has(run: RunFolder, stage: str) -> bool:
    results = read_json_or_none(run.eval_results(REPORTED_SPLIT))
    if not isinstance(results, dict):
        return False
    return any(isinstance(results.get(n), dict) for n in [stage, *old_names(stage)])


def _left(plan: dict, elapsed_s: float) -> float:
    """Seconds of the budget (times its safety margin) left after `elapsed_s`, less the evaluations' estimate."""
    return plan["budget_s"] * plan["safety"] - elapsed_s - plan["reserve_after_rl_s"]


def rl_budget_now(plan: dict, elapsed_s: float) -> float | None:
    """RL's budget when it starts (plan: RUN/plan.json): what is left of the budget after what has
    run and the evaluations' estimate, at least the plan's minimum. There is no cap at the planned
    figure nor at the recipe's: when earlier stages end sooner than predicted, RL gets the
    difference (12-06: SFT 473 s against 555 predicted, 103 s that a cap at the plan left unused;
    a fast host left 170 s under a cap at the recipe's 600 s)."""
    if plan.get("rl_time_budget_s") is None:
        return None
    left = _left(plan, elapsed_s)
    budget = round(max(plan["min_rl_s"], left), 1)
    plan["rl_reset"] = {"elapsed_s": round(elapsed_s, 1), "left_s": round(left, 1), "rl_time_budget_s": budget}
    return budget


def sft_budget_now(plan: dict, elapsed_s: float) -> float | None:
    """SFT's wall-time budget when it starts: the latest it may end and still leave RL the plan's
    minimum and the evaluations their estimate. SFT keeps its planned steps when they fit and cuts
    them, once its warm-up has timed them, when they do not (saessak/sft/stage.py)."""
    if plan.get("min_rl_s") is None:
        return None
    budget = round(max(0.0, _left(plan, elapsed_s) - plan["min_rl_s"]), 1)
    plan["sft_reset"] = {"elapsed_s": round(elapsed_s, 1), "sft_time_budget_s": budget}
    return budget


def _planned(run: RunFolder, preset: str, budget_min: float) -> dict | None:
    got = read_json_or_none(run.root / "plan.json")
    ok = isinstance(got, dict) and got.get("preset") == preset and got.get("budget_s") == round(budget_min * 60.0, 1)
    return got if ok else None


def plan(run_dir: str, preset: str, sources: str | None = None, budget_min: float = 0.0) -> list[Step]:
    """The steps. With a time budget, `saessak plan` runs first (RUN/plan.json, saessak/report/plan.py),
    SFT gets its planned steps and RL, as it starts, the time left."""
    run = RunFolder(run_dir)
    r = str(run.root)
    data = ["data", "build", "--out", str(run.data)]
    max_docs = recipes.get(preset).speedrun.get("max_docs")
    if max_docs:
        data += ["--max-docs", str(max_docs)]
    if sources:
        data += ["--sources", sources]
    steps = []
    if budget_min:
        steps.append(Step("plan", "data", ["plan", "--run", r, "--preset", preset, "--budget-min", f"{budget_min:g}"],
                          lambda: _planned(run, preset, budget_min) is not None))
    steps += [
        Step("data", "data", data, lambda: run.is_done("data")),
        Step("tokenizer", "tokenizer", ["tokenizer", "train", "--run", r, "--preset", preset],
             lambda: run.is_done("tokenizer")),
    ]
    steps += [Step(stage, stage, [stage, "--run", r, "--preset", preset], lambda st=stage: run.is_done(st))
              for stage in MODEL_STAGES]
    if budget_min:
        by_name = {s.name: s for s in steps}

        def sft_steps(elapsed: float) -> list[str]:
            got = _planned(run, preset, budget_min)
            if not got or not got.get("sft_max_steps"):
                return []
            argv = ["--max-steps", str(got["sft_max_steps"])]
            # a resumed SFT keeps the budget its first attempt was given (its checkpoint keeps the count)
            seconds = (got.get("sft_reset") or {}).get("sft_time_budget_s")
            if seconds is None:
                seconds = sft_budget_now(got, elapsed)
                write_json(run.root / "plan.json", got)
            return argv + (["--time-budget", str(seconds)] if seconds is not None else [])

        def rl_budget(elapsed: float) -> list[str]:
            got = _planned(run, preset, budget_min)
            if not got or got.get("rl_time_budget_s") is None:
                return []
            seconds = (got.get("rl_reset") or {}).get("rl_time_budget_s") or rl_budget_now(got, elapsed)
            write_json(run.root / "plan.json", got)
            return ["--time-budget", str(seconds)]

        by_name["sft"].late_argv, by_name["rl"].late_argv = sft_steps, rl_budget
    for stage in MODEL_STAGES:
        # The final eval reads the sealed split, which nothing else reads (tasks/base.py).
        # Greedy accuracy only: it is the headline and what the RL target reads. The k samples per item
        # for pass@k cost four times the greedy pass (about 200 of a cpu-tiny speedrun's 1,200 s), which
        # the time plan gives to RL instead; `saessak eval tasks --run RUN --stage rl --split final --k 4`
        # measures pass@k afterwards.
        argv = ["eval", "tasks", "--run", r, "--stage", stage, "--split", REPORTED_SPLIT, "--k", "0"]
        steps.append(Step(f"eval-{stage}", "eval", argv, lambda st=stage: _eval_has(run, st)))
    report_json = run.root / "report.json"
    results = run.eval_results(REPORTED_SPLIT)
    hf_dir = run.root / "export" / "hf"
    gguf = run.root / "export" / "model.gguf"
    steps += [
        Step("report", "report", ["report", "--run", r],
             lambda: _newer_than(report_json, results) and not _spent_since(run, report_json)),
        Step("export-hf", "export", ["export", "hf", "--run", r, "--out", str(hf_dir)],
             lambda: _newer_than(hf_dir / "README.md", report_json)),
        Step("export-gguf", "export", ["export", "gguf", "--run", r, "--out", str(gguf)],
             lambda: _newer_than(gguf, report_json)),
    ]
    return steps


def _run_step(step: Step, forced: bool, log, elapsed: float = 0.0) -> StepResult:
    from saessak.cli import main

    if not forced and step.is_complete():
        log(f"[speedrun] {step.name}: complete, skipped")
        return StepResult(step.name, "skipped", 0.0)
    argv = list(step.argv) + (step.late_argv(elapsed) if step.late_argv else []) + (["--force"] if forced else [])
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
             log=print, budget_min: float | None = None) -> SpeedrunResult:
    """`budget_min`: the time budget the plan sizes SFT and RL for (None: the recipe's; 0: no plan)."""
    recipe = recipes.get(preset)  # an unknown preset is a UserError before anything runs
    if from_stage is not None:
        from_stage = stage_name(from_stage)
        if from_stage not in STAGES:
            raise UserError(f"--from {from_stage!r}: not a stage; choose one of {', '.join(STAGES)}")
    first_forced = STAGES.index(from_stage) if from_stage else len(STAGES)
    if budget_min is None:
        budget_min = float(recipe.speedrun.get("budget_min", 0))
    if budget_min < 0:
        raise UserError(f"--budget-min {budget_min:g}: must be 0 (no plan) or more")
    t_start = time.perf_counter()
    planned = _planned(RunFolder(run_dir), preset, budget_min) if budget_min else None
    if planned and planned.get("rl_reset") and first_forced <= STAGES.index("rl"):
        planned["rl_reset"] = None  # RL runs again: its budget is set again from the time left then
        write_json(Path(run_dir) / "plan.json", planned)
    result = SpeedrunResult(run=str(run_dir), preset=preset)
    for step in plan(run_dir, preset, sources, budget_min):
        forced = STAGES.index(step.stage) >= first_forced
        res = _run_step(step, forced, log, time.perf_counter() - t_start)
        result.steps.append(res)
        if res.status == "failed":
            log(f"saessak: error: speedrun stopped: stage '{step.name}' failed with exit status {res.exit_code}. "
                f"Fix the cause and run the same command again: complete stages are skipped.")
            break
    return result


def time_table(result: SpeedrunResult) -> str:
    rows = [f"{'stage':<14} {'status':<8} {'wall s':>9}"]
    rows += [f"{s.name:<14} {s.status:<8} {s.wall_s:>9.1f}" for s in result.steps]
    total = sum(s.wall_s for s in result.steps)
    rows.append(f"{'total':<14} {'':<8} {total:>9.1f}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- command line


def register(subparsers) -> None:
    from saessak.cli import add_tag_option

    p = subparsers.add_parser(
        "speedrun", help="run the whole pipeline: data, tokenizer, pretrain, SFT, RL, eval, report, export",
        description="Runs every stage through its own subcommand; complete stages are skipped, interrupted "
                    "ones resume. Ends with a per-stage time table; results in RUN/report.md.")
    p.add_argument("--preset", required=True, help="micro (CI, minutes), cpu-tiny (CPU speedrun), cpu-small, d12, d20, ...")
    p.add_argument("--run", default=None, help="run folder (default runs/<preset>)")
    p.add_argument("--from", dest="from_stage", default=None, metavar="STAGE",
                   help="force this stage and every later one: " + ", ".join(STAGES))
    p.add_argument("--sources", default=None, help="data build --sources (default: the data stage's defaults)")
    p.add_argument("--budget-min", type=float, default=None, metavar="MINUTES",
                   help="time budget: SFT steps and the RL budget are sized to fit it from a measurement of this "
                        "machine at the start (RUN/plan.json; default: the preset's, 20 for cpu-tiny; 0: the "
                        "recipe as it is)")
    add_tag_option(p, run_of=lambda args: args.run or f"runs/{args.preset}")
    p.set_defaults(func=run)


def run(args) -> int:
    run_dir = args.run or f"runs/{args.preset}"
    command = "saessak " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["speedrun"] else \
        f"saessak speedrun --preset {args.preset} --run {run_dir}"
    info = {"command": command, "preset": args.preset, "run": run_dir}
    if Path(run_dir).is_dir() or not Path(run_dir).exists():
        # Written first so the report step (inside the speedrun) can name the command that built the run.
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_json(f"{run_dir}/speedrun.json", {**info, "ok": None, "steps": []})
    result = speedrun(run_dir, args.preset, from_stage=args.from_stage, sources=args.sources,
                      budget_min=args.budget_min)
    table = time_table(result)
    print("\n[speedrun] time per stage\n" + table)
    write_json(f"{run_dir}/speedrun.json", {
        **info, "ok": result.ok,
        "steps": [{"name": s.name, "status": s.status, "wall_s": round(s.wall_s, 3), "exit_code": s.exit_code}
                  for s in result.steps],
        "total_wall_s": round(sum(s.wall_s for s in result.steps), 3),
    })
    if not result.ok:
        return next(s.exit_code for s in result.steps if s.status == "failed") or 1
    print(f"[speedrun] done: {run_dir}/report.md, {run_dir}/export/hf, {run_dir}/export/model.gguf")
    return 0
