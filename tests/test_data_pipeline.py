"""`data build` on datatrove: many tasks and workers give the same corpus, a SIGKILLed build resumes
from its finished tasks, the Slurm executor's job scripts (run here by hand as Slurm would), bad
input in the streamed formats."""

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
    if not _has_ray():
        assert main(base + ["--executor", "ray"]) == 2
        assert "'ray' package is not installed" in capsys.readouterr().err


def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True
