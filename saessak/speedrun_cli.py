"""`saessak speedrun --preset P [--run runs/NAME] [--from STAGE]`: the whole pipeline in one command."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "speedrun", help="run the whole pipeline: data, tokenizer, pretrain, SFT, RL, eval, report, export",
        description="Runs every stage through its own subcommand; complete stages are skipped, interrupted "
                    "ones resume. Ends with a per-stage time table; results in RUN/report.md.")
    p.add_argument("--preset", required=True, help="micro (CI, minutes), cpu-tiny (CPU speedrun), cpu-small, d12, d20, ...")
    p.add_argument("--run", default=None, help="run folder (default runs/<preset>)")
    p.add_argument("--from", dest="from_stage", default=None, metavar="STAGE",
                   help="force this stage and every later one: data, tokenizer, pretrain, sft, rl, eval, report, export")
    p.add_argument("--sources", default=None, help="data build --sources (default: the data stage's defaults)")
    p.set_defaults(func=run)


def run(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from saessak.io import write_json
    from saessak.speedrun import speedrun, time_table

    run_dir = args.run or f"runs/{args.preset}"
    command = "saessak " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["speedrun"] else \
        f"saessak speedrun --preset {args.preset} --run {run_dir}"
    info = {"command": command, "preset": args.preset, "run": run_dir}
    if Path(run_dir).is_dir() or not Path(run_dir).exists():
        # Written first so the report step (inside the speedrun) can name the command that built the run.
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_json(f"{run_dir}/speedrun.json", {**info, "ok": None, "steps": []})
    result = speedrun(run_dir, args.preset, from_stage=args.from_stage, sources=args.sources)
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
