"""What the ledger's heartbeat costs a stage: a micro pretrain with the heartbeat off, at its default
interval and at a very small one, side by side.

Every stage attempt rewrites its ledger record atomically every SAESSAK_HEARTBEAT_S seconds (default
30; saessak/ledger.py), so a kill loses at most one interval. This measures what that costs:

  - the same micro pretraining stage (same seed, same data, fresh run folder each time) run with
    the heartbeat off (SAESSAK_HEARTBEAT_S=0: start and end records only), at the default interval,
    and at a small interval that writes many beats (--fast-interval, default 0.01 s); the three are
    interleaved round by round so load from other processes hits them alike; medians reported;
  - the cost of one heartbeat write itself (building the record and the atomic write: temporary
    file, fsync, rename, directory fsync), timed directly over many writes, and what it comes to at
    the default interval: cost of one beat / interval.

Output keys (last stdout line, one JSON object):
  smoke, rounds, max_steps, default_interval_s, fast_interval_s;
  stage_s_off, stage_s_default, stage_s_fast: median stage wall seconds of each configuration;
  beats_default, beats_fast: median heartbeats written per stage;
  overhead_default_pct, overhead_fast_pct: median stage time against the heartbeat off, in %;
  noise_off_pct: spread of the off runs (what a difference must exceed to mean anything);
  loop_s_*, loop_overhead_*_pct, loop_noise_off_pct: the same for the training loop alone (the
  steps, from the stage's tokens / tokens per second), without the fixed costs around it;
  cpu_s_*, cpu_overhead_*_pct, cpu_noise_off_pct: the same for the CPU seconds the attempt recorded
  (all threads; far less disturbed by other processes than wall time on a shared machine);
  fast_beat_cpu_ms: the fast runs' extra CPU time per beat;
  min_overhead_default_pct, min_overhead_fast_pct, min_loop_overhead_default_pct,
  min_beat_cost_in_stage_ms: the same between the fastest stage of each configuration (other jobs
  on a shared machine only slow a stage down, so the minimums are the least disturbed);
  beat_cost_ms: one heartbeat write, timed directly; projected_overhead_default_pct: that over the
  default interval; fast_beat_cost_ms: the fast runs' extra loop time per beat (one beat's cost
  inside a running stage); projected_from_fast_pct: that over the default interval.

    .venv/bin/python bench/ledger_heartbeat.py [--rounds 5] [--max-steps 3000] [--fast-interval 0.01]
    .venv/bin/python bench/ledger_heartbeat.py --smoke    # every path, in seconds (tests)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)
from saessak import tasks  # noqa: E402
from saessak.io import append_jsonl  # noqa: E402
from saessak.ledger import DEFAULT_HEARTBEAT_S, HEARTBEAT_ENV, StageTimer, read_ledger  # noqa: E402
from saessak.runfolder import RunFolder  # noqa: E402


def template_run(root: Path, docs: int) -> Path:
    """A run folder with data and a tokenizer: the pretraining stage's inputs (task text, in seconds)."""
    from saessak.tokenizer import train_tokenizer

    texts = []
    for family in tasks.FAMILIES:
        for ex in tasks.sample(family, "train", docs, seed=0):
            texts.append(f"{ex['prompt']}\n{tasks.solution(ex)}")
    run = RunFolder(root)
    for i, text in enumerate(texts):
        append_jsonl(run.data / ("val.jsonl" if i % 20 == 0 else "train.jsonl"), {"id": str(i), "source": "tasks", "text": text})
    run.mark_done("data", {})
    train_tokenizer(texts, 2048).save(run.tokenizer_json)
    run.mark_done("tokenizer", {})
    return root


def one_stage(template: Path, work: Path, interval: float, max_steps: int) -> tuple[float, float, float, int]:
    """Wall seconds of one micro pretraining stage, of its training loop (the steps, without the
    fixed costs around them: shards, peak-FLOPs measurement, validation), the CPU seconds its
    attempt recorded (every thread of the process, the heartbeat's included), and its heartbeats."""
    from saessak.pretrain.stage import run_pretrain

    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(template, run)
    os.environ[HEARTBEAT_ENV] = repr(interval)
    t0 = time.perf_counter()
    done = run_pretrain(str(run), "micro", samples=False, quiet=True, max_steps=max_steps)
    wall = time.perf_counter() - t0
    [attempt] = read_ledger(run)
    return wall, done["tokens"] / done["train_tokens_per_s"], float(attempt["cpu_s"]), int(attempt["beats"])


def beat_cost_ms(work: Path, writes: int) -> float:
    """One heartbeat as the thread does it: build the record, write it atomically."""
    timer = StageTimer(work / "beats", "pretrain", heartbeat_s=0)
    timer.progress(tokens=123456, flops=1.5e12, steps=42)
    t0 = time.perf_counter()
    for _ in range(writes):
        timer._write(timer._snapshot("running"))
    cost = (time.perf_counter() - t0) / writes * 1000
    timer.finish()
    return cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of (off, default, fast) stages")
    ap.add_argument("--max-steps", type=int, default=3000,
                    help="steps of each micro pretraining stage (default: long enough for the default interval to beat)")
    ap.add_argument("--fast-interval", type=float, default=0.01, help="the small heartbeat interval, seconds")
    ap.add_argument("--smoke", action="store_true", help="one round of 2 steps: every path, in seconds (tests)")
    add_record_args(ap)
    args = ap.parse_args()
    rounds, max_steps, writes = (1, 2, 10) if args.smoke else (args.rounds, args.max_steps, 500)
    configs = {"off": 0.0, "default": DEFAULT_HEARTBEAT_S, "fast": args.fast_interval}
    before = os.environ.get(HEARTBEAT_ENV)
    with tempfile.TemporaryDirectory(prefix="saessak-heartbeat-") as tmp:
        work = Path(tmp)
        template = template_run(work / "template", docs=10 if args.smoke else 200)
        if not args.smoke:
            one_stage(template, work, 0.0, max_steps)  # warm-up: first-call costs land on no configuration
        walls: dict[str, list[float]] = {k: [] for k in configs}
        loops: dict[str, list[float]] = {k: [] for k in configs}
        cpus: dict[str, list[float]] = {k: [] for k in configs}
        beats: dict[str, list[int]] = {k: [] for k in configs}
        for r in range(rounds):
            order = list(configs) if r % 2 == 0 else list(reversed(configs))  # no configuration always first
            for name in order:
                wall, loop, cpu, n = one_stage(template, work, configs[name], max_steps)
                walls[name].append(wall)
                loops[name].append(loop)
                cpus[name].append(cpu)
                beats[name].append(n)
        cost = beat_cost_ms(work, writes)
    if before is None:
        os.environ.pop(HEARTBEAT_ENV, None)
    else:
        os.environ[HEARTBEAT_ENV] = before
    med = {k: statistics.median(v) for k, v in walls.items()}
    loop = {k: statistics.median(v) for k, v in loops.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    fast_beats = statistics.median(beats["fast"])
    # What one beat cost inside a running stage: the fast runs' extra loop time over their beats.
    fast_cost = 1000 * (loop["fast"] - loop["off"]) / fast_beats if fast_beats else None
    result = {
        "smoke": args.smoke,
        "rounds": rounds,
        "max_steps": max_steps,
        "default_interval_s": DEFAULT_HEARTBEAT_S,
        "fast_interval_s": args.fast_interval,
        "stage_s_off": round(med["off"], 3),
        "stage_s_default": round(med["default"], 3),
        "stage_s_fast": round(med["fast"], 3),
        "beats_default": statistics.median(beats["default"]),
        "beats_fast": fast_beats,
        "overhead_default_pct": round(100 * (med["default"] - med["off"]) / med["off"], 3),
        "overhead_fast_pct": round(100 * (med["fast"] - med["off"]) / med["off"], 3),
        "noise_off_pct": round(100 * (max(walls["off"]) - min(walls["off"])) / med["off"], 3),
        "loop_s_off": round(loop["off"], 3),
        "loop_s_default": round(loop["default"], 3),
        "loop_s_fast": round(loop["fast"], 3),
        "loop_overhead_default_pct": round(100 * (loop["default"] - loop["off"]) / loop["off"], 3),
        "loop_overhead_fast_pct": round(100 * (loop["fast"] - loop["off"]) / loop["off"], 3),
        "loop_noise_off_pct": round(100 * (max(loops["off"]) - min(loops["off"])) / loop["off"], 3),
        "cpu_s_off": round(cpu["off"], 3),
        "cpu_s_default": round(cpu["default"], 3),
        "cpu_s_fast": round(cpu["fast"], 3),
        "cpu_overhead_default_pct": round(100 * (cpu["default"] - cpu["off"]) / cpu["off"], 3),
        "cpu_overhead_fast_pct": round(100 * (cpu["fast"] - cpu["off"]) / cpu["off"], 3),
        "cpu_noise_off_pct": round(100 * (max(cpus["off"]) - min(cpus["off"])) / cpu["off"], 3),
        "fast_beat_cpu_ms": round(1000 * (cpu["fast"] - cpu["off"]) / fast_beats, 3) if fast_beats else None,
        # Other jobs on a shared machine only ever slow a stage down: the fastest of each is the
        # least disturbed, so the overheads between minimums are the figures to read there.
        "min_overhead_default_pct": round(100 * (min(walls["default"]) - min(walls["off"])) / min(walls["off"]), 3),
        "min_overhead_fast_pct": round(100 * (min(walls["fast"]) - min(walls["off"])) / min(walls["off"]), 3),
        "min_loop_overhead_default_pct": round(100 * (min(loops["default"]) - min(loops["off"])) / min(loops["off"]), 3),
        "min_beat_cost_in_stage_ms": round(1000 * (min(loops["fast"]) - min(loops["off"])) / fast_beats, 3)
        if fast_beats else None,
        "beat_cost_ms": round(cost, 4),
        "projected_overhead_default_pct": round(100 * cost / 1000 / DEFAULT_HEARTBEAT_S, 5),
        "fast_beat_cost_ms": round(fast_cost, 3) if fast_cost is not None else None,
        "projected_from_fast_pct": round(100 * fast_cost / 1000 / DEFAULT_HEARTBEAT_S, 5) if fast_cost is not None else None,
        "threads": __import__("torch").get_num_threads(),
    }
    emit("ledger_heartbeat", result, args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    def medians(label: str, kind: str, overhead: str) -> list[str]:
        """A median row: the off time, then each interval's time with its overhead over off."""
        return [label, f"{r[f'{kind}_s_off']:.2f} s",
                *(f"{r[f'{kind}_s_{c}']:.2f} s ({r[f'{overhead}overhead_{c}_pct']:+.1f} %)" for c in ("default", "fast"))]

    rows = [
        medians("stage wall time, median", "stage", ""),
        ["stage wall time, fastest", "", f"{r['min_overhead_default_pct']:+.1f} %", f"{r['min_overhead_fast_pct']:+.1f} %"],
        medians("training loop (steps only), median", "loop", "loop_"),
        medians("CPU seconds the attempt recorded, median", "cpu", "cpu_"),
        ["heartbeats per stage", "0", f"{r['beats_default']:g}", f"{r['beats_fast']:g}"],
    ]
    in_stage = [c for c in (r.get("min_beat_cost_in_stage_ms"), r.get("fast_beat_cost_ms")) if c is not None]
    return "\n".join([
        f"{r['rounds']} round(s) of {r['max_steps']:,}-step micro pretraining stages, {r['threads']} torch threads.", "",
        md_table(["figure", "heartbeat off", f"every {r['default_interval_s']:g} s (default)",
                  f"every {r['fast_interval_s']:g} s"], rows), "",
        f"- Noise between identical stages with the heartbeat off: {r['noise_off_pct']:.1f} % (wall), "
        f"{r['loop_noise_off_pct']:.1f} % (loop). A default-interval overhead smaller than that is not resolved.",
        f"- One beat written on its own: **{r['beat_cost_ms']:.2f} ms**"
        + (f"; inside a running stage (the fast runs' extra loop time over their beats, fastest and median): "
           f"{min(in_stage):.2f}-{max(in_stage):.2f} ms" if in_stage else "") + ".",
        f"- At one beat per {r['default_interval_s']:g} s that is **{r['projected_overhead_default_pct']:.4f} %** of stage "
        "time (from the beat written alone)" + (f", {r['projected_from_fast_pct']:.4f} % from the in-stage cost"
                                                if r.get("projected_from_fast_pct") is not None else "") + "."])


if __name__ == "__main__":
    main()
