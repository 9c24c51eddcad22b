"""`saessak report --run RUN [--prices FILE]`: write RUN/report.md, RUN/report.json and RUN/plots/*.png."""

from __future__ import annotations

import shlex
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write the run's report: cost ledger in KRW/USD, eval, plots",
                              description=__doc__)
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--prices", default=None, help="TOML price table overriding saessak/prices.toml (see docs/REPORT.md)")
    p.add_argument("--force", action="store_true", help="accepted for the speedrun; the report is always rewritten")
    p.add_argument("--update-results", metavar="FILE", default=None,
                   help="also rewrite the 'Latest speedrun' section of FILE (e.g. docs/RESULTS.md)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from saessak.errors import UserError
    from saessak.report.build import write_report

    if not Path(args.run).is_dir():
        raise UserError(f"--run {args.run}: run folder not found")
    command = getattr(args, "command_line", None) or "saessak " + shlex.join(sys.argv[1:])
    report = write_report(args.run, prices=args.prices, command=command)
    if args.update_results:
        from saessak.report.results_section import update_results_file

        update_results_file(args.update_results, report)
    total = report["ledger"]["total"]
    print(f"report: {args.run}/report.md  total {total['wall_s']:.1f} s, {total['cost_krw']:.2f} KRW "
          f"(USD {total['cost_usd']:.4f}), {len(report['plots'])} plots")
    return 0
