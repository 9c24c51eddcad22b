"""What a benchmark run leaves behind: its JSON line on stdout and, for a real (not smoke) run, a
record in bench/results/<bench>.json that scripts/docs_figures.py writes into docs/BENCHMARKS.md.

A record is the bench's result as printed, plus what a reader needs to weigh it: the date, the
command as typed, the commit (with "+dirty" when saessak/ differs from it), the machine (CPU model,
vendor, family, the cores this process may use, torch version) and the 1-minute load average at
the start and the end of the run (the machines here are often shared; a loaded run says so).
Figures in the docs are never typed by hand: the bench's own `render(result)` turns the record into
Markdown, so changing how a table looks does not need a new measurement, and a new measurement
cannot leave an old figure behind.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
RESULTS = REPO / "bench" / "results"
_LOAD_START = os.getloadavg()[0]  # the bench imports this module first thing: the load before the work
_T0 = time.time()


def add_record_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--record", metavar="PATH", default=None,
                    help="where the run's record goes (default: bench/results/<bench>.json for a full or "
                         "--quick run; a --smoke run records nothing unless this is given)")
    ap.add_argument("--no-record", action="store_true", help="print the JSON line only; write no record")


def machine() -> dict[str, Any]:
    from saessak.ledger import describe_device

    info = describe_device("cpu")
    info.pop("processes", None)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # benches that never touch torch
        pass
    return info


def command(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        argv[0] = str(script.relative_to(REPO))
    except ValueError:
        pass
    return ".venv/bin/python " + shlex.join(argv)


def emit(bench: str, result: dict[str, Any], args: argparse.Namespace) -> Path | None:
    """Print `result` as the last stdout line; write the record unless this is a smoke run (without an
    explicit --record) or --no-record was given. Returns the record's path, if one was written."""
    import json

    from saessak.io import write_json
    from saessak.ledger import git_commit

    print(json.dumps(result, ensure_ascii=False), flush=True)
    if getattr(args, "no_record", False):
        return None
    path = getattr(args, "record", None)
    if path is None and getattr(args, "smoke", False):
        return None
    path = Path(path) if path else RESULTS / f"{bench}.json"
    record = {
        "bench": bench,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command(),
        "commit": git_commit(),
        "wall_s": round(time.time() - _T0, 1),
        "machine": machine(),
        "load_avg_1m": {"start": round(_LOAD_START, 2), "end": round(os.getloadavg()[0], 2)},
        "result": result,
    }
    write_json(path, record)
    print(f"[bench] record written to {path} (scripts/docs_figures.py writes it into docs/BENCHMARKS.md)",
          file=sys.stderr)
    return path
