"""`saessak report --run RUN [--prices FILE]`: write RUN/report.md, RUN/report.json and RUN/plots/*.png.

`saessak plan --run RUN --preset P [--budget-min M] [--force]`: the speedrun's time plan in RUN/plan.json
(saessak/report/plan.py).

`saessak bill [RUNS_DIR ...] [--prices FILE] [--since DATE] [--out DIR]`: the whole project's bill
(saessak/report/bill.py); `saessak bill tag RUN TAG` tags a run for it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def register(subparsers) -> None:
    from saessak.cli import add_tag_option
    from saessak.runfolder import TAGS

    p = subparsers.add_parser("report", help="write the run's report: cost ledger in KRW/USD, eval, plots",
                              description=__doc__)
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--prices", default=None, help="TOML price table overriding saessak/prices.toml (see docs/REPORT.md)")
    p.add_argument("--force", action="store_true", help="accepted for the speedrun; the report is always rewritten")
    add_tag_option(p)
    p.set_defaults(func=run)

    pl = subparsers.add_parser(
        "plan", help="measure this machine and size SFT steps and the RL budget to a time budget (RUN/plan.json)",
        description="Times one SFT step and the engine's decode on the preset's model shape, predicts each stage's "
                    "time and, when the recipe does not fit the budget, shortens RL first, then SFT. The speedrun "
                    "runs it first and follows it (docs/TRAINING.md).")
    pl.add_argument("--run", required=True, help="run folder (RUN/plan.json is written)")
    pl.add_argument("--preset", required=True, help="the recipe to plan")
    pl.add_argument("--budget-min", type=float, default=None, metavar="MINUTES",
                    help="the time budget (default: the preset's speedrun budget; 0: no plan)")
    pl.add_argument("--force", action="store_true", help="measure again even if RUN/plan.json fits")
    pl.set_defaults(func=run_plan)

    b = subparsers.add_parser(
        "bill", help="the project's whole bill: every run and attempt under RUNS_DIR, priced",
        description="Prices every attempt of every run folder under RUNS_DIR (default runs/): each final model's "
                    "headline cost beside the project's total, by tag, run, stage, status and device. "
                    "Writes bill.md, bill.json and bill.png. `saessak bill tag RUN TAG` tags a run "
                    f"({', '.join(TAGS)}).")
    b.add_argument("dirs", nargs="*", metavar="RUNS_DIR", help="folders holding run folders (default: runs/)")
    b.add_argument("--prices", default=None, help="TOML price table overriding saessak/prices.toml (see docs/REPORT.md)")
    b.add_argument("--since", default=None, metavar="DATE",
                   help="only attempts started on or after DATE (YYYY-MM-DD or ISO date-time, UTC)")
    b.add_argument("--out", default=None, metavar="DIR",
                   help="where bill.md, bill.json and bill.png go (default: FIRST_RUNS_DIR/bill)")
    b.set_defaults(func=run_bill)


def run(args) -> int:
    from saessak.errors import UserError
    from saessak.report.build import write_report

    if not Path(args.run).is_dir():
        raise UserError(f"--run {args.run}: run folder not found")
    command = getattr(args, "command_line", None) or "saessak " + shlex.join(sys.argv[1:])
    report = write_report(args.run, prices=args.prices, command=command)
    total = report["ledger"]["total"]
    print(f"report: {args.run}/report.md  total {total['wall_s']:.1f} s, {total['cost_krw']:.2f} KRW "
          f"(USD {total['cost_usd']:.4f}), {len(report['plots'])} plots")
    return 0


def run_plan(args) -> int:
    from saessak import recipes
    from saessak.report.plan import load_or_make

    budget = args.budget_min if args.budget_min is not None else float(recipes.get(args.preset).speedrun.get("budget_min", 0))
    Path(args.run).mkdir(parents=True, exist_ok=True)
    plan = load_or_make(args.run, args.preset, budget, force=args.force)
    if plan is None:
        print(f"plan: preset {args.preset} has no time budget (--budget-min 0): the recipe runs as it is")
    return 0


def run_bill(args) -> int:
    dirs = list(args.dirs) or ["runs"]
    if dirs[0] == "tag":
        return _tag(dirs[1:])
    from saessak.report.bill import build_bill, render_markdown, write_bill

    command = "saessak " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bill"] else None
    bill = build_bill(dirs, prices=args.prices, since=args.since, command=command)
    paths = write_bill(bill, args.out or Path(dirs[0]) / "bill")
    print(render_markdown(bill))
    for problem in bill["problems"]:
        print(f"saessak: warning: {problem}", file=sys.stderr)
    t = bill["total"]
    print(f"bill: {bill['runs']} run(s), {t['attempts']} attempt(s), total {t['cost_krw']:.2f} KRW (USD {t['cost_usd']:.4f}); "
          f"wrote {', '.join(map(str, paths))}")
    return 0


def _tag(rest: list[str]) -> int:
    from saessak.errors import UserError
    from saessak.runfolder import TAGS, RunFolder

    if len(rest) != 2:
        raise UserError(f"usage: saessak bill tag RUN TAG (TAG: {', '.join(TAGS)}); got {shlex.join(rest) or 'nothing'}"
                        " (a runs folder named 'tag' is ./tag)")
    run, tag = rest
    if not Path(run).is_dir():
        raise UserError(f"{run}: run folder not found")
    RunFolder(run).set_tag(tag)
    print(f"bill: {run} tagged {tag}")
    return 0
