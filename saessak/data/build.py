"""`build_corpus`: sources -> clean -> filter -> PII mask -> dedup -> split -> run folder `data/`.

The work runs as datatrove stages (saessak/data/pipeline.py) on a local, Slurm or Ray executor
(saessak/data/executors.py), in RUN/work/data/ (task files, datatrove's logs and completion
markers): a killed build, run again with the same command, skips the tasks that finished. PII is
masked before anything is written, through the door into training (data/ingest.py; `keep_pii` opts
out, loudly, and the card and done.json say so). The output folder is assembled from the task
shards under a temporary name and renamed into place whole, so a killed build leaves nothing that
looks complete; the work folder is removed once it is (datatrove's logs move into RUN/data/logs/).
The train/val files are JSONL or, with `output_format="parquet"`, Parquet (saessak/data/split.py
writes and reads both).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

from saessak.data.card import make_card, render_markdown, totals
from saessak.data.clean import CleanConfig
from saessak.data.dedup import MINHASH
from saessak.data.ingest import Door
from saessak.data.inputs import HFDataset, LocalInput
from saessak.data.source_report import SourceReport
from saessak.data.sources import DEFAULT_SOURCES, resolve_sources
from saessak.data.split import COLUMNS, FORMATS, SPLIT_METHOD, VAL_FRACTION, ParquetSplitWriter
from saessak.errors import UserError
from saessak.io import atomic_dir, file_sha256, read_json, read_json_or_none, write_json, write_text
from saessak.ledger import StageTimer

EXECUTORS = ("local", "slurm", "ray")
TASK_BYTES = 32 * 2**20  # default --tasks: one task per 32 MB of input (at least one per worker beyond that)


def _stderr(msg: str) -> None:
    print(f"[data] {msg}", file=sys.stderr, flush=True)


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def default_workers() -> int:
    from saessak.ledger import _cores

    return _cores() or 1


def default_tasks(units: list, workers: int) -> int:
    size = sum(n for _, _, n in units)
    want = math.ceil(size / TASK_BYTES)
    if want > 1:
        want = max(want, workers)
    return max(1, min(len(units), want))


def work_dir(out: Path) -> Path:
    """RUN/work/data: the resumable state of a build of RUN/data (outside RUN/data, which appears whole)."""
    return out.parent / "work" / out.name


def _merge_reports(srcs: list, work: Path) -> list[SourceReport]:
    """The per-task reports summed into one SourceReport per source (exact counts over all tasks)."""
    from collections import Counter

    from saessak.data.pipeline import read_reports

    reports = [s.report() for s in srcs]
    for task in read_reports(work, "read"):
        for k, part in task.items():
            r = reports[int(k)]
            if not r.origin and part["origin"]:
                r.origin, r.licence = part["origin"], part["licence"]
            elif part["licence"] and not r.licence:
                r.licence = part["licence"]
            r.files += part["files"]
            r.skipped += part["skipped_files"]
            for key in ("bytes_in", "documents_in", "characters_in"):
                setattr(r, key, getattr(r, key) + part[key])
            r.lines_dropped.update(part["lines_dropped"])
    candidates: Counter = Counter()
    for task in read_reports(work, "filter"):
        for k, c in task.items():
            reports[int(k)].lines_dropped.update(c["lines_dropped"])
            reports[int(k)].documents_dropped.update(c["documents_dropped"])
            candidates[int(k)] += c["candidates"].get("n", 0)
    unique: Counter = Counter()
    for task in read_reports(work, "unique"):
        unique.update({int(k): v for k, v in task.items()})
    for task in read_reports(work, "write"):
        for k, s in task["sources"].items():
            r = reports[int(k)]
            r.documents_out += s["documents_out"]
            r.characters_out += s["characters_out"]
            r.hangul_syllables_out += s["hangul_syllables_out"]
            r.pii_masked.update(s["pii"])
    for i, r in enumerate(reports):
        r.dedup_removed["exact"] = candidates[i] - unique[i]
        r.dedup_removed["near"] = unique[i] - r.documents_out
    return reports


def build_corpus(
    out_dir: str | os.PathLike,
    sources: list[str] | None = None,
    inputs: Iterable[str] = (),
    hf_dataset: str | None = None,
    text_field: str = "text",
    max_docs: int | None = None,
    seed: int = 0,
    force: bool = False,
    val_fraction: float = VAL_FRACTION,
    command: str | None = None,
    config: CleanConfig | None = None,
    log: Callable[[str], None] = _stderr,
    keep_pii: bool = False,
    workers: int | None = None,
    tasks: int | None = None,
    executor: str = "local",
    executor_options: dict[str, Any] | None = None,
    output_format: str = "jsonl",
) -> dict[str, Any]:
    """Build RUN/data (train/val .jsonl or .parquet, data_card.json/.md, done.json); returns done.json's summary.

    With no sources, inputs or dataset, the default sources are used. Otherwise exactly the named
    ones. An existing complete build is kept unless `force`. `keep_pii` writes personal data unmasked.
    `workers` (default: the machine's cores) run `tasks` (default: one per 32 MB of input) at a time
    on the local executor; `executor` "slurm" submits the stages as dependent job arrays and returns
    (run the same command again when they finish), "ray" runs them on a Ray cluster (the one this
    process is connected to, RAY_ADDRESS's, or a new one on this machine; `workers` then defaults to
    its CPUs). `executor_options` go to datatrove's executor as they are (partition, time,
    cpus_per_task, ...). `output_format` "parquet" writes train.parquet and val.parquet instead.
    """
    out = Path(out_dir)
    done_path = out / "done.json"
    if output_format not in FORMATS:
        raise UserError(f"--format {output_format}: must be one of {', '.join(FORMATS)}")
    if done_path.exists() and not force:
        done = read_json(done_path)
        built = next((f for f in FORMATS if (out / f"train.{f}").exists()), None)
        log(f"{out} is complete (done.json exists); skipping. Use --force to rebuild"
            + (f" (it holds {built}, not {output_format})." if built and built != output_format else "."))
        return done
    if max_docs is not None and max_docs < 1:
        raise UserError(f"--max-docs {max_docs}: must be at least 1")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction {val_fraction}: must be in [0, 1)")
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor}: must be one of {', '.join(EXECUTORS)}")
    for name, n in (("--workers", workers), ("--tasks", tasks)):
        if n is not None and n < 1:
            raise UserError(f"{name} {n}: must be at least 1")
    cfg = config or CleanConfig()
    inputs = list(inputs)
    if sources is None and not inputs and not hf_dataset:
        sources = list(DEFAULT_SOURCES)
    srcs: list = resolve_sources(sources or [])
    for path in inputs:
        src = LocalInput(path, text_field)
        src.files()  # a missing path is a user error now, before any work
        srcs.append(src)
    if hf_dataset:
        srcs.append(HFDataset(hf_dataset, text_field))
        srcs[-1]._open()  # a missing dataset or config is a user error now, not a failed task
    command = command or f"build_corpus({str(out)!r}, sources={sources!r}, inputs={inputs!r}, " \
                         f"hf_dataset={hf_dataset!r}, max_docs={max_docs!r}, seed={seed!r}" \
                         + (f", output_format={output_format!r})" if output_format != "jsonl" else ")")
    os.environ.setdefault("TQDM_DISABLE", "1")  # datatrove's progress bars; read when tqdm is first imported
    # A failed task's log shows the exception without the values of its variables (loguru prints them
    # by default: document text, unmasked). Read when loguru is first imported, in this process and in
    # the workers it starts.
    os.environ.setdefault("LOGURU_DIAGNOSE", "NO")

    # The attempt is in the ledger from here on; an error ends it as failed (saessak/ledger.py).
    with StageTimer(out.parent, "data") as timer, ExitStack() as cluster:
        from saessak.data import executors

        cpus = cluster.enter_context(executors.ray_cluster(log)) if executor == "ray" else None
        workers = workers or cpus or default_workers()
        door = Door(keep_pii=keep_pii, stage="data")  # warns once here with --keep-pii
        units = [(i, unit, size) for i, src in enumerate(srcs) for unit, size in src.units(max_docs)]
        tasks = tasks or default_tasks(units, workers)
        settings = {"clean": asdict(cfg), "minhash": MINHASH, "max_docs": max_docs, "seed": seed,
                    "text_field": text_field, "keep_pii": keep_pii}
        work = work_dir(out)
        plan = {"sources": [s.name for s in srcs], "units": hashlib.sha256(json.dumps(units).encode()).hexdigest(),
                "settings": settings, "val_fraction": val_fraction, "tasks": tasks}
        if work.exists() and (force or read_json_or_none(work / "plan.json") != plan):
            log(f"{work}: {'--force' if force else 'a different build was started here'}; starting over")
            shutil.rmtree(work)
        if not (work / "plan.json").exists():
            write_json(work / "plan.json", plan)
        else:
            log(f"{work}: resuming (finished tasks are skipped)")

        from saessak.data.pipeline import stages

        pipeline = stages(work, sources=srcs, units=units, tasks=tasks, max_docs=max_docs, cfg=cfg,
                          keep_pii=keep_pii, seed=seed, val_fraction=val_fraction)
        log(f"{len(units)} input units from {len(srcs)} source(s) -> {tasks} task(s), {executor} executor"
            + (f", {workers} worker(s)" if executor != "slurm" else ""))
        if not _run_stages(pipeline, executor, workers, work, executor_options or {}, log):
            return {"submitted": True, "work": str(work)}
        cluster.close()  # a Ray instance this build started stops here

        reports = _merge_reports(srcs, work)
        for r in reports:
            if keep_pii:
                r.pii_kept, r.pii_masked = r.pii_masked, type(r.pii_masked)()
            door.announce(r.name, r.pii_kept if keep_pii else r.pii_masked, log)
        source_json = [r.to_json() for r in reports]
        t = totals(source_json)
        if not t["documents_out"]:
            skips = [f"{s['path']}: {s['reason']}" for r in reports for s in r.skipped][:5]
            raise UserError(
                f"empty corpus after filtering: {t['documents_in']} documents read from "
                f"{', '.join(r.name for r in reports)}; dropped {dict(t['documents_dropped']) or 'none'}, "
                f"duplicates {t['dedup_removed']}, skipped {t['skipped_files']}"
                + (f" ({'; '.join(skips)})" if skips else "")
            )
        with atomic_dir(out) as tmp:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the corpus is meant to be read by other stages
            split_stats = _assemble(work, tmp, tasks, output_format)
            if (work / "logs").exists():
                shutil.copytree(work / "logs", tmp / "logs")  # datatrove's per-stage logs and stats
            split = {"method": SPLIT_METHOD, "seed": seed, "val_fraction": val_fraction, **split_stats}
            outputs = {f"{s}.{output_format}": _file_entry(tmp / f"{s}.{output_format}") for s in ("train", "val")}
            settings = {**settings, "format": output_format,
                        "engine": {"name": "datatrove", "executor": executor, "tasks": tasks,
                                   "workers": workers if executor != "slurm" else None}}
            card = make_card(command=command, settings=settings, sources=source_json, split=split, outputs=outputs)
            write_json(tmp / "data_card.json", card)
            write_text(tmp / "data_card.md", render_markdown(card))
            t = card["totals"]
            summary = {
                "format": ("jsonl: one {\"id\", \"source\", \"text\"} object per line" if output_format == "jsonl"
                           else f"parquet: string columns {', '.join(COLUMNS)}, one row per document"),
                "files": {s: f"{s}.{output_format}" for s in ("train", "val")},
                "train": split_stats["train"],
                "val": split_stats["val"],
                "sources": [r.name for r in reports],
                "pii_masked": t["pii_masked"],
                "keep_pii": keep_pii,
                "pii_kept": t["pii_kept"],
            }
            write_json(tmp / "done.json", summary)  # last: marks the folder complete
        shutil.rmtree(work, ignore_errors=True)
        if work.parent.exists() and not any(work.parent.iterdir()):
            work.parent.rmdir()
        timer.finish(
            documents=t["documents_out"], characters=t["characters_out"], bytes_in=t["bytes_in"],
            documents_in=t["documents_in"], hangul_syllables=t["hangul_syllables_out"], pii_masked=t["pii_masked"],
            sources=[r.name for r in reports], tasks=tasks, executor=executor,
        )
    log(f"wrote {out}: train {split_stats['train']['documents']} docs / {split_stats['train']['characters']:,} chars, "
        f"val {split_stats['val']['documents']} docs / {split_stats['val']['characters']:,} chars")
    return summary


def _run_stages(pipeline: list, executor: str, workers: int, work: Path, options: dict, log) -> bool:
    """Run (local, Ray) or submit (Slurm) the stages; True when every task of every stage is done."""
    from saessak.data.executors import failed_tasks, make_executor

    if executor == "slurm":
        if (work / "submitted.json").exists():
            left = {name: len(make_executor("local", p, n, 1, work / "logs" / name, {}, name).get_incomplete_ranks())
                    for name, p, n in pipeline}
            if not any(left.values()):
                return True
            raise UserError(f"{work}: Slurm jobs still running or failed ({sum(left.values())} tasks left: "
                            f"{', '.join(f'{k} {v}' for k, v in left.items() if v)}); run this command again when "
                            f"they finish, or delete {work / 'submitted.json'} to submit the unfinished tasks again")
        prev = None
        for name, p, n in pipeline:
            ex = make_executor("slurm", p, n, workers, work / "logs" / name, options, name)
            ex.depends = prev
            prev = ex
        prev.run()  # launches the whole chain of dependent job arrays
        write_json(work / "submitted.json", {"stages": [name for name, _, _ in pipeline]})
        log(f"submitted {len(pipeline)} dependent Slurm job arrays (scripts: {work / 'logs'}/*/launch_script.slurm); "
            "run the same command again when they finish to write the corpus")
        return False
    main_tasks = pipeline[0][2]
    from loguru import logger  # datatrove's logger: this process prints warnings; tasks log to WORK/logs

    logger.remove()
    # datatrove's Ray executor warns on every stage that a local logging folder must be shared by the
    # nodes; the docs say so once (the run folder must be on a file system every node sees).
    logger.add(sys.stderr, level="WARNING", filter=lambda r: not r["message"].startswith("Logging directory points"))
    for name, p, n in pipeline:
        # A one-task build is small: its 12 MinHash bucket tasks run in this process, not in a pool.
        ex = make_executor(executor, p, n, workers if main_tasks > 1 else 1, work / "logs" / name, options, name)
        left = ex.get_incomplete_ranks()
        if left:
            t0 = time.perf_counter()
            ex.run()
            log(f"stage {name}: {len(left)} of {n} task(s) in {time.perf_counter() - t0:.1f} s"
                + (f" ({n - len(left)} done before)" if len(left) < n else ""))
            failed = ex.get_incomplete_ranks()
            if failed:
                why = failed_tasks(work / "logs" / name, failed)
                raise UserError(f"stage {name}: {len(failed)} of {n} task(s) failed ({why}); logs in "
                                f"{work / 'logs' / name / 'logs'}; run the same command again to retry them "
                                "(finished tasks are kept)")
    return True


def _assemble(work: Path, tmp: Path, tasks: int, output_format: str = "jsonl") -> dict[str, dict[str, int]]:
    """train and val files (.jsonl, or .parquet) from the task shards, in task order. When no document
    scored into val, the lowest-scored one goes there (a tiny corpus still gets a validation set)."""
    from saessak.data.pipeline import read_reports, task_path

    reports = read_reports(work, "write")
    stats = {s: {"documents": 0, "characters": 0} for s in ("train", "val")}
    for r in reports:
        for s in r["sources"].values():
            stats["val"]["documents"] += s["val_documents"]
            stats["val"]["characters"] += s["val_characters"]
            stats["train"]["documents"] += s["documents_out"] - s["val_documents"]
            stats["train"]["characters"] += s["characters_out"] - s["val_characters"]
    moved = None  # (rank, line) of the train document that goes to val instead
    if stats["val"]["documents"] == 0 and stats["train"]["documents"] >= 2:
        score, rank, line, chars = min((r["best_train"][0], rank, r["best_train"][1], r["best_train"][2])
                                       for rank, r in enumerate(reports) if r["best_train"])
        moved = (rank, line)
        for key, delta in (("documents", 1), ("characters", chars)):
            stats["train"][key] -= delta
            stats["val"][key] += delta
    moved_line = None
    with _split_file(tmp / f"train.{output_format}") as train:
        for rank in range(tasks):
            with open(task_path(work, "out/train", rank), encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if moved == (rank, i):
                        moved_line = line
                    else:
                        train.write_line(line)
    with _split_file(tmp / f"val.{output_format}") as val:
        for rank in range(tasks):
            with open(task_path(work, "out/val", rank), encoding="utf-8") as f:
                for line in f:
                    val.write_line(line)
        if moved_line is not None:
            val.write_line(moved_line)
    return stats


class _JsonlSplitWriter:
    def __init__(self, path: Path):
        self.f = open(path, "w", encoding="utf-8")

    def write_line(self, line: str) -> None:
        self.f.write(line)

    def close(self) -> None:
        self.f.close()


@contextmanager
def _split_file(path: Path):
    """A writer of one split file in the format its suffix names (the task shards' lines go in as they are)."""
    w = ParquetSplitWriter(path) if path.suffix == ".parquet" else _JsonlSplitWriter(path)
    try:
        yield w
    finally:
        w.close()
