"""Wall-clock time of the whole speedrun, per stage, on this machine.

    .venv/bin/python bench/speedrun_time.py [--preset cpu-tiny] [--cold-cache] [--run DIR]
    .venv/bin/python bench/speedrun_time.py --quick          # the micro preset (about two minutes)
    .venv/bin/python bench/speedrun_time.py --smoke --run RUN  # RUN a finished micro run: every stage is
                                                               # skipped, so only the accounting runs (seconds)

`--cold-cache` points SAESSAK_CACHE at an empty folder, so the data stage downloads its Debian
packages and wheel again (the "packages not cached" figure); without it the cache is used as is.
The target (issue 17): cpu-tiny in at most 20 minutes on 2 cores, corpus build included; the
speedrun sizes SFT and RL to fit that budget (saessak/report/plan.py).
Last stdout line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_S = {"cpu-tiny": 1200.0, "micro": 240.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--quick", action="store_true", help="micro preset (CI scale)")
    ap.add_argument("--smoke", action="store_true", help="micro preset; with --run of a finished run, seconds (tests)")
    ap.add_argument("--cold-cache", action="store_true", help="empty download cache: data stage fetches packages")
    ap.add_argument("--run", default=None, help="run folder (default: a fresh temporary one)")
    args = ap.parse_args()
    preset = "micro" if args.quick or args.smoke else args.preset
    if args.cold_cache:
        os.environ["SAESSAK_CACHE"] = tempfile.mkdtemp(prefix="saessak-cold-cache-")
    run = args.run or os.path.join(tempfile.mkdtemp(prefix="saessak-speedrun-"), preset)

    from saessak.ledger import ledger_costs, load_prices
    from saessak.ledger import read_ledger
    from saessak.speedrun import speedrun, time_table

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = speedrun(run, preset)
    total = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    print(time_table(result))
    ledger = ledger_costs(read_ledger(run), load_prices())
    target = TARGET_S.get(preset)
    figures = {
        "preset": preset,
        "smoke": args.smoke,
        "ok": result.ok,
        "cold_cache": args.cold_cache,
        "total_wall_s": round(total, 1),
        "target_s": target,
        "within_target": (total <= target) if target else None,
        "stages_wall_s": {s.name: round(s.wall_s, 1) for s in result.steps},
        "ledger_cpu_s": round(ledger["total"]["cpu_s"], 1),
        "cost_krw": round(ledger["total"]["cost_krw"], 3),
        "cost_usd": round(ledger["total"]["cost_usd"], 5),
        "load_avg_1m_start": round(load0, 2),
        "load_avg_1m_end": round(load1, 2),
        "cpu_count": os.cpu_count(),
        "run": run,
    }
    print(json.dumps(figures, ensure_ascii=False))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
