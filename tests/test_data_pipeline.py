"""`data build` on datatrove: many tasks and workers give the same corpus, a SIGKILLed build resumes
from its finished tasks, the Slurm executor's job scripts (run here by hand as Slurm would), the Ray
executor on a local Ray instance (slow), Parquet output read by the later stages, bad input in the
streamed formats."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saessak.cli import main
from saessak.data import build_corpus
from saessak.io import read_jsonl
from tests.test_data_build import korean_doc

REPO = Path(__file__).resolve().parent.parent


def make_corpus(d: Path, files: int = 6, per_file: int = 40, seed: int = 0) -> Path:
    """JSONL files of Korean documents; every 5th is a copy of an earlier one with one word changed,
    every 7th an exact copy (whitespace doubled)."""
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    for f in range(files):
        lines = []
        for i in range(per_file):
            n = f * per_file + i
            if made and n % 5 == 0:
                text = rng.choice(made).replace("좋아합니다", "좋아해요", 1) + " 끝."
            elif made and n % 7 == 0:
                text = rng.choice(made).replace(" ", "  ")
            else:
                text = korean_doc(seed * 100_000 + n, sentences=25)
                made.append(text)
            lines.append(json.dumps({"text": text}, ensure_ascii=False))
        (d / f"part-{f:02d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def card_counts(out: Path) -> dict:
    card = json.loads((out / "data_card.json").read_text(encoding="utf-8"))
    return {k: card["totals"][k] for k in ("documents_in", "documents_out", "characters_out", "dedup_removed",
                                            "documents_dropped", "lines_dropped", "pii_masked")}


def test_tasks_and_workers_do_not_change_the_corpus(tmp_path):
    d = make_corpus(tmp_path / "in", files=3, per_file=30)
    outs = {}
    for name, tasks, workers in (("one", 1, 1), ("three_seq", 3, 1), ("three_pool", 3, 2)):
        outs[name] = tmp_path / name / "data"
        build_corpus(outs[name], inputs=[str(d)], tasks=tasks, workers=workers, log=lambda m: None)
    counts = card_counts(outs["one"])
    assert counts["dedup_removed"]["exact"] > 0 and counts["dedup_removed"]["near"] > 0
    assert card_counts(outs["three_seq"]) == card_counts(outs["three_pool"])
    # another task count: the same documents pass and go (which copy of a near-duplicate pair
    # survives is datatrove's cluster choice, so the characters may differ by that edit)
    other = card_counts(outs["three_seq"])
    assert {k: v for k, v in other.items() if k != "characters_out"} == \
        {k: v for k, v in counts.items() if k != "characters_out"}
    for split in ("train.jsonl", "val.jsonl"):  # same tasks: byte-identical whatever the worker count
        assert (outs["three_seq"] / split).read_bytes() == (outs["three_pool"] / split).read_bytes()
    card = json.loads((outs["three_pool"] / "data_card.json").read_text())
    assert card["settings"]["engine"] == {"name": "datatrove", "executor": "local", "tasks": 3, "workers": 2}
    assert len(card["sources"][0]["files"]) == 3  # per-task reports merged


def _build_cmd(out: Path, d: Path) -> list[str]:
    return [sys.executable, "-m", "saessak", "data", "build", "--out", str(out), "--input", str(d),
            "--tasks", "6", "--workers", "1"]


@pytest.mark.slow  # three builds in subprocesses: ~15 s on an idle 2-core machine
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(tmp_path):
    d = make_corpus(tmp_path / "in", files=6, per_file=60)
    ref = tmp_path / "ref" / "data"
    build_corpus(ref, inputs=[str(d)], tasks=6, workers=1, log=lambda m: None)

    out = tmp_path / "run" / "data"
    work = tmp_path / "run" / "work" / "data"
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(_build_cmd(out, d), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = work / "logs" / "filter" / "completions" / "00001"  # read done, filter under way
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the build finished or failed before the kill point"
    assert not out.exists()  # nothing that looks complete
    filter_done = len(list((work / "logs" / "filter" / "completions").iterdir()))
    read_done = sorted(p.name for p in (work / "logs" / "read" / "completions").iterdir())
    assert read_done == [f"{r:05d}" for r in range(6)] and 2 <= filter_done

    r = subprocess.run(_build_cmd(out, d), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stderr
    assert "stage read" not in r.stderr  # every read task had finished: none ran again
    if filter_done < 6:  # the finished filter tasks were skipped, the others ran
        assert f"stage filter: {6 - filter_done} of 6 task(s)" in r.stderr and f"({filter_done} done before)" in r.stderr
    for split in ("train.jsonl", "val.jsonl"):
        assert (out / split).read_bytes() == (ref / split).read_bytes()
    assert card_counts(out) == card_counts(ref)
    assert not work.exists()


FAKE_SBATCH = """#!/bin/sh
echo "$@" >> "{log}"
n=$(wc -l < "{log}")
echo "Submitted batch job $((100 + n))"
"""


def _fake_slurm(tmp_path, monkeypatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "sbatch_calls.txt"
    for name, body in (("sbatch", FAKE_SBATCH.format(log=calls)), ("scontrol", "#!/bin/sh\necho localhost\n")):
        (bindir / name).write_text(body)
        (bindir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return calls


def _slurm_args(out: Path, d: Path) -> list[str]:
    return ["data", "build", "--out", str(out), "--input", str(d), "--tasks", "2", "--executor", "slurm",
            "--executor-option", "partition=cpu-small", "--executor-option", "time=01:00:00",
            "--executor-option", "cpus_per_task=2"]


def test_slurm_executor_writes_the_sbatch_scripts(tmp_path, monkeypatch, capsys):
    d = make_corpus(tmp_path / "in", files=2, per_file=10)
    calls = _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "run" / "data"
    args = _slurm_args(out, d)
    assert main(args) == 0
    assert "Slurm jobs submitted" in capsys.readouterr().out
    assert not out.exists()
    logs = tmp_path / "run" / "work" / "data" / "logs"
    script = (logs / "read" / "launch_script.slurm").read_text()
    for line in ("#SBATCH --partition=cpu-small", "#SBATCH --time=01:00:00", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --array=0-1", "#SBATCH --job-name=saessak-data-read"):
        assert line in script, (line, script)
    assert f"source {Path(sys.prefix) / 'bin' / 'activate'}" in script
    assert f"launch_pickled_pipeline {logs / 'read' / 'executor.pik'}" in script
    buckets = (logs / "buckets" / "launch_script.slurm").read_text()
    assert "#SBATCH --array=0-11" in buckets  # one task per MinHash bucket
    submitted = calls.read_text().splitlines()
    # 8 stages, each with its merge-stats job; every stage after the first waits for the one before
    assert len(submitted) == 16 and sum("--dependency=afterok:" in c for c in submitted) >= 7
    # Before the jobs ran: a clear message, nothing submitted twice
    assert main(args) == 2
    assert "Slurm jobs still running" in capsys.readouterr().err
    assert len(calls.read_text().splitlines()) == 16


@pytest.mark.slow  # ~35 job tasks, each a fresh Python process
def test_slurm_jobs_run_as_slurm_would_then_the_corpus_is_written(tmp_path, monkeypatch, capsys):
    d = make_corpus(tmp_path / "in", files=2, per_file=10)
    _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "run" / "data"
    args = _slurm_args(out, d)
    assert main(args) == 0
    logs = tmp_path / "run" / "work" / "data" / "logs"
    for stage in ("read", "boiler", "filter", "exact", "unique", "buckets", "cluster", "write"):
        ranks = json.loads((logs / stage / "ranks_to_run.json").read_text())
        for task_id in range(len(ranks)):
            env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task_id), SLURM_NODELIST="localhost", TQDM_DISABLE="1")
            r = subprocess.run([str(Path(sys.prefix) / "bin" / "launch_pickled_pipeline"),
                                str(logs / stage / "executor.pik")], env=env, capture_output=True, text=True,
                               timeout=120, cwd=REPO)
            assert r.returncode == 0, r.stderr[-2000:]
    assert main(args) == 0  # the same command now writes the corpus, equal to a local build
    ref = tmp_path / "ref" / "data"
    build_corpus(ref, inputs=[str(d)], tasks=2, workers=1, log=lambda m: None)
    assert (out / "train.jsonl").read_bytes() == (ref / "train.jsonl").read_bytes()
    assert card_counts(out) == card_counts(ref)


# ----------------------------------------------------------------------------- Ray

RAY_SKIP = "the Ray executor's tests need ray (pip install 'saessak[scale]'; scripts/setup.sh installs it)"
STAGES = ("read", "boiler", "filter", "exact", "unique", "buckets", "cluster", "write")
# datatrove 0.10's Ray executor passes placement_group= to .options(), which Ray 2.60 deprecates
RAY_DEPRECATION = "ignore:placement_group:DeprecationWarning"


@pytest.mark.slow  # starts and stops its own Ray instance in a subprocess: ~40 s on an idle 2-core machine
def test_ray_cli_starts_and_stops_a_ray_instance_of_its_own(tmp_path):
    pytest.importorskip("ray", reason=RAY_SKIP)
    d = make_corpus(tmp_path / "in", files=2, per_file=15)
    ref = tmp_path / "ref" / "data"
    build_corpus(ref, inputs=[str(d)], tasks=1, workers=1, log=lambda m: None)
    out = tmp_path / "run" / "data"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-m", "saessak", "data", "build", "--out", str(out), "--input", str(d),
                        "--tasks", "1", "--executor", "ray", "--executor-option", "mem_per_cpu_gb=0.5"],
                       cwd=REPO, env={**env, "TOKENIZERS_PARALLELISM": "false"}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[data] Ray cluster: " in r.stderr and "ray executor" in r.stderr
    assert "Traceback" not in r.stderr
    for split in ("train.jsonl", "val.jsonl"):
        assert (out / split).read_bytes() == (ref / split).read_bytes()
    card = json.loads((out / "data_card.json").read_text())
    assert card["settings"]["engine"]["executor"] == "ray"
    assert card["command"].endswith("--executor ray --executor-option mem_per_cpu_gb=0.5")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance in this process (2 CPUs, no dashboard): `data build` uses it as it is."""
    ray = pytest.importorskip("ray", reason=RAY_SKIP)
    os.environ.setdefault("LOGURU_DIAGNOSE", "NO")  # as build_corpus sets it, before the workers start
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _ray_args(out: Path, d: Path) -> list[str]:
    return ["data", "build", "--out", str(out), "--input", str(d), "--tasks", "2", "--executor", "ray",
            "--executor-option", "mem_per_cpu_gb=0.5"]


@pytest.mark.filterwarnings(RAY_DEPRECATION)
@pytest.mark.slow  # ~38 Ray actors, each a fresh worker process: ~40 s on an idle 2-core machine
def test_ray_executor_gives_the_local_executors_corpus(local_ray, tmp_path, capsys):
    import tempfile

    d = make_corpus(tmp_path / "in", files=3, per_file=30)
    ref = tmp_path / "ref" / "data"
    build_corpus(ref, inputs=[str(d)], tasks=2, workers=1, log=lambda m: None)
    # datatrove's own Ray task logs to $TMPDIR/ray_logs and copies the file; ours logs in the run folder
    tmp_log = Path(tempfile.gettempdir()) / "ray_logs" / "logs" / "task_00000.log"
    before = tmp_log.stat().st_mtime_ns if tmp_log.exists() else None
    out = tmp_path / "run" / "data"
    capsys.readouterr()
    assert main(_ray_args(out, d)) == 0
    err = capsys.readouterr().err
    assert "[data] Ray cluster: 2 CPU(s) on 1 node(s)" in err and "2 task(s), ray executor, 2 worker(s)" in err
    assert "Logging directory points" not in err and "Traceback" not in err
    for split in ("train.jsonl", "val.jsonl"):
        assert (out / split).read_bytes() == (ref / split).read_bytes()
    assert card_counts(out) == card_counts(ref)
    card = json.loads((out / "data_card.json").read_text())
    assert card["settings"]["engine"] == {"name": "datatrove", "executor": "ray", "tasks": 2, "workers": 2}
    for stage in STAGES:  # every task's completion marker and log, in the run folder
        done = sorted(p.name for p in (out / "logs" / stage / "completions").iterdir())
        assert done and done == sorted(p.name.removeprefix("task_").removesuffix(".log")
                                       for p in (out / "logs" / stage / "logs").iterdir()), stage
    assert "Launching pipeline for rank=1" in (out / "logs" / "write" / "logs" / "task_00001.log").read_text()
    assert (tmp_log.stat().st_mtime_ns if tmp_log.exists() else None) == before
    assert not (tmp_path / "run" / "work").exists() and local_ray.is_initialized()  # the instance stays up


@pytest.mark.filterwarnings(RAY_DEPRECATION)
@pytest.mark.slow  # two builds on the local Ray instance: ~50 s on an idle 2-core machine
def test_ray_build_with_a_failed_task_says_which_and_resumes(local_ray, tmp_path, monkeypatch, capsys):
    import saessak.data.pipeline as pipeline_mod
    from datatrove.pipeline.base import PipelineStep

    d = make_corpus(tmp_path / "in", files=2, per_file=20)
    real = pipeline_mod.stages
    flag = tmp_path / "fail-write-task-1"
    flag.touch()

    def failing(work, **kw):
        class Boom(PipelineStep):  # defined here: Ray ships it to the workers by value
            name = "boom"

            def run(self, data, rank: int = 0, world_size: int = 1):
                if rank == 1 and flag.exists():
                    raise RuntimeError("injected failure in write task 1")
                yield from data

        return [(n, p[:-1] + [Boom(), p[-1]] if n == "write" else p, t) for n, p, t in real(work, **kw)]

    # the same pipeline both times (datatrove merges the stats of all tasks), failing while the flag is there
    monkeypatch.setattr(pipeline_mod, "stages", failing)
    out = tmp_path / "run" / "data"
    work = tmp_path / "run" / "work" / "data"
    assert main(_ray_args(out, d)) == 2
    err = capsys.readouterr().err
    assert "stage write: 1 of 2 task(s) failed (task 1: RuntimeError: injected failure in write task 1)" in err
    assert "run the same command again to retry them" in err and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in (work / "logs" / "write" / "completions").iterdir()) == ["00000"]

    flag.unlink()
    assert main(_ray_args(out, d)) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "stage write: 1 of 2 task(s)" in err and "(1 done before)" in err
    assert not any(f"stage {s}:" in err for s in STAGES[:-1])  # only the failed task ran again
    ref = tmp_path / "ref" / "data"
    build_corpus(ref, inputs=[str(d)], tasks=2, workers=1, log=lambda m: None)
    for split in ("train.jsonl", "val.jsonl"):
        assert (out / split).read_bytes() == (ref / split).read_bytes()
    assert card_counts(out) == card_counts(ref)


def test_streamed_formats_and_bad_lines_are_counted(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    with gzip.open(d / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(3):
            f.write(json.dumps({"text": korean_doc(40 + i)}, ensure_ascii=False) + "\n")
    good = json.dumps({"text": korean_doc(50)}, ensure_ascii=False).encode("utf-8")
    (d / "b.jsonl").write_bytes(good + b"\n" + b'{"text": "\xff\xfe bad"}\n' + b"\n")
    (d / "c.jsonl.gz").write_bytes(gzip.compress(good + b"\n")[:-12])  # truncated: the CRC never comes
    (d / "empty.jsonl").write_bytes(b"")
    out = tmp_path / "run" / "data"
    build_corpus(out, inputs=[str(d)], log=lambda m: None)
    (src,) = json.loads((out / "data_card.json").read_text())["sources"]
    reasons = {s["path"]: s["reason"] for s in src["skipped_files"]}
    assert reasons["b.jsonl"] == "1 line(s) not valid UTF-8"
    assert reasons["c.jsonl.gz"].startswith("unreadable: ")
    assert reasons["empty.jsonl"] == "empty file"
    assert src["documents_out"] >= 4  # a.jsonl.gz's three, b.jsonl's good line (c's line may come before the error)
    by_path = {f["path"]: f for f in src["files"]}
    assert by_path["b.jsonl"]["bytes"] == (d / "b.jsonl").stat().st_size


def test_bad_executor_options_are_clear_errors(tmp_path, capsys):
    d = make_corpus(tmp_path / "in", files=1, per_file=3)
    base = ["data", "build", "--out", str(tmp_path / "r" / "data"), "--input", str(d)]
    with pytest.raises(SystemExit):
        main(base + ["--executor-option", "novalue"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--workers", "0"])
    with pytest.raises(SystemExit):
        main(base + ["--format", "csv"])
    capsys.readouterr()
    # an option the executor does not take: named, before anything is submitted
    assert main(base + ["--executor", "slurm", "--executor-option", "partitionn=cpu"]) == 2
    err = capsys.readouterr().err
    assert "--executor-option partitionn: not an option of datatrove's SlurmPipelineExecutor" in err
    assert "Traceback" not in err


def test_ray_not_installed_is_a_clear_error(tmp_path, capsys, monkeypatch):
    d = make_corpus(tmp_path / "in", files=1, per_file=3)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    assert main(["data", "build", "--out", str(tmp_path / "r" / "data"), "--input", str(d), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--executor ray: the 'ray' package is not installed (pip install 'saessak[scale]')" in err
    assert "Traceback" not in err and not (tmp_path / "r" / "data").exists()


# ----------------------------------------------------------------------------- Parquet output


def _parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def two_formats(tmp_path_factory):
    """The same input built as JSONL and as Parquet (2 tasks, so the shards are joined)."""
    root = tmp_path_factory.mktemp("formats")
    d = make_corpus(root / "in", files=3, per_file=40)
    runs = {}
    for fmt in ("jsonl", "parquet"):
        runs[fmt] = root / fmt
        args = ["data", "build", "--out", str(runs[fmt] / "data"), "--input", str(d), "--tasks", "2", "--workers", "1"]
        assert main(args + (["--format", "parquet"] if fmt == "parquet" else [])) == 0
    return runs


def test_parquet_build_equals_the_jsonl_build(two_formats):
    import pyarrow.parquet as pq

    js, pa_ = two_formats["jsonl"] / "data", two_formats["parquet"] / "data"
    assert sorted(p.name for p in pa_.iterdir()) == ["data_card.json", "data_card.md", "done.json", "logs",
                                                     "train.parquet", "val.parquet"]
    for split in ("train", "val"):
        rows = _parquet_rows(pa_ / f"{split}.parquet")
        assert rows == read_jsonl(js / f"{split}.jsonl")  # document for document, in order, every field
        assert rows and all(set(r) == {"id", "source", "text"} for r in rows)
    schema = pq.read_schema(pa_ / "train.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [("id", "string"), ("source", "string"), ("text", "string")]
    card, jcard = (json.loads((p / "data_card.json").read_text()) for p in (pa_, js))
    assert card["settings"]["format"] == "parquet" and jcard["settings"]["format"] == "jsonl"
    assert set(card["outputs"]) == {"train.parquet", "val.parquet"}
    import hashlib

    for name, entry in card["outputs"].items():
        assert entry["sha256"] == hashlib.sha256((pa_ / name).read_bytes()).hexdigest()
    assert card["totals"] == jcard["totals"] and card["split"] == jcard["split"]
    assert card["command"].endswith("--workers 1 --tasks 2 --format parquet")
    assert "- Format: parquet (string columns id, source, text)" in (pa_ / "data_card.md").read_text()
    done = json.loads((pa_ / "done.json").read_text())
    assert done["files"] == {"train": "train.parquet", "val": "val.parquet"} and done["format"].startswith("parquet")


def test_rebuild_in_the_other_format_needs_force(two_formats, capsys):
    out = two_formats["parquet"] / "data"
    card = (out / "data_card.json").read_bytes()
    assert main(["data", "build", "--out", str(out), "--input", "unused", "--format", "jsonl"]) == 0
    assert "skipping. Use --force to rebuild (it holds parquet, not jsonl)." in capsys.readouterr().err
    assert (out / "data_card.json").read_bytes() == card and not (out / "train.jsonl").exists()


def test_tokenizer_and_pretraining_read_a_parquet_data_folder(two_formats, tmp_path):
    import shutil

    import numpy as np

    from saessak.data.split import require_split
    from saessak.pretrain import shards
    from saessak.tokenizer import Tokenizer

    runs = {}
    for fmt, src in two_formats.items():
        runs[fmt] = tmp_path / fmt
        shutil.copytree(src / "data", runs[fmt] / "data")
        assert main(["tokenizer", "train", "--run", str(runs[fmt]), "--vocab-size", "400"]) == 0
    # the same documents in the same order: the same tokenizer, the same val statistics
    tok_j, tok_p = (runs[f] / "tokenizer" / "tokenizer.json" for f in ("jsonl", "parquet"))
    assert tok_p.read_bytes() == tok_j.read_bytes()
    stats = [json.loads((runs[f] / "tokenizer" / "stats.json").read_text()) for f in ("jsonl", "parquet")]
    assert stats[0] == stats[1] and stats[1]["per_source"]
    # token shards (what pretraining trains on): the same token stream from either format
    tok = Tokenizer.load(tok_p)
    streams = {}
    for fmt, run in runs.items():
        splits = {s: require_split(run, s, "pretrain") for s in ("train", "val")}
        assert splits["train"].suffix == f".{fmt}"
        meta = shards.build_shards(run / "shards", tok, "sha", splits, seed=5, workers=1)
        streams[fmt] = {s: np.concatenate([np.asarray(m) for m in shards.open_split(run / "shards", meta, s)]).tolist()
                        for s in ("train", "val")}
    assert streams["parquet"] == streams["jsonl"]
    # the spacing task's sentences cut from a run's corpus (`saessak tasks sample spacing --corpus FILE`)
    from saessak.tasks.registry import sample

    cut = {fmt: sample("spacing", "train", 6, 0, level=1, corpus=str(run / "data" / f"train.{fmt}"))
           for fmt, run in runs.items()}
    assert cut["parquet"] == cut["jsonl"] and all(e["meta"]["source"] == "corpus" for e in cut["parquet"])
    # and the stage itself: a few steps of the micro preset on the Parquet run
    assert main(["pretrain", "--run", str(runs["parquet"]), "--preset", "micro", "--no-samples", "--quiet",
                 "--max-steps", "2"]) == 0
    assert (runs["parquet"] / "pretrain" / "done.json").exists()


def test_parquet_split_is_read_in_row_group_ranges(tmp_path):
    from saessak.data.split import ParquetSplitWriter, range_texts, split_ranges

    docs = [{"id": f"s:{i}", "source": "s", "text": korean_doc(i, sentences=4)} for i in range(300)]
    path = tmp_path / "train.parquet"
    w = ParquetSplitWriter(path, row_group_chars=1000)
    for d in docs:
        w.write_line(json.dumps(d, ensure_ascii=False) + "\n")
    w.close()
    import pyarrow.parquet as pq

    groups = pq.ParquetFile(path).num_row_groups
    assert groups >= 20
    ranges = split_ranges(path, range_bytes=3 * pq.ParquetFile(path).metadata.row_group(0).total_byte_size)
    assert 5 <= len(ranges) < groups and ranges[0][0] == 0 and ranges[-1][1] == groups
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, nothing read twice
    assert [t for a, b in ranges for t in range_texts(path, a, b)] == [d["text"] for d in docs]


def _corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid - 200 : mid + 200] = bytes(400)  # a data page zeroed; the footer is intact
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "corrupt_page", "no_text_column", "both_formats"])
def test_a_broken_parquet_split_is_a_clear_error(two_formats, tmp_path, capsys, damage):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    shutil.copytree(two_formats["parquet"] / "data", run / "data")
    train = run / "data" / "train.parquet"
    if damage == "truncated":
        train.write_bytes(train.read_bytes()[: train.stat().st_size // 2])  # as a copy cut short would be
        want = f"{train}: not a readable Parquet file ("
    elif damage == "corrupt_page":
        # a larger file, so the damage falls in the text pages, not the footer
        rows = _parquet_rows(train) * 20
        pq.write_table(pa.table({k: [r[k] for r in rows] for k in ("id", "source", "text")}), train,
                       row_group_size=len(rows) // 4, compression="zstd")
        _corrupt_middle(train)
        want = f"{train}: unreadable after row "
    elif damage == "no_text_column":
        pq.write_table(pa.table({"id": ["a"], "body": [korean_doc(1)]}), train)
        want = f"{train}: no column 'text' (columns: id, body)"
    else:
        shutil.copy(two_formats["jsonl"] / "data" / "train.jsonl", run / "data" / "train.jsonl")
        want = "both train.jsonl and train.parquet"
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "400"]) == 2
    err = capsys.readouterr().err
    assert "saessak: error:" in err and want in err and "Traceback" not in err, err
    assert not (run / "tokenizer" / "done.json").exists()
