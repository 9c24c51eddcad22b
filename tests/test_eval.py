"""Task evaluation: results.json shape, per-stage keys kept, skip/force, bad input."""

import pytest

from saessak.evals.results import read_results
from saessak.evals.task_eval import evaluate_model, run_eval_tasks
from saessak.runfolder import RunFolder
from tests.finetune_fixtures import ToyTasks, make_run

QUIET = dict(log=lambda *a: None)


def test_eval_writes_each_stage_under_its_own_key(tmp_path):
    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    rf = RunFolder(run)
    base = run_eval_tasks(str(run), "pretrain", n=3, k=2, tasks=["josa", "numbers"], max_tokens=8, **QUIET)
    assert set(base["tasks"]) == {"josa", "numbers"}
    assert all(0.0 <= v <= 1.0 for v in base["tasks"].values())
    assert set(base["pass_at_k"]) == {"josa", "numbers"} and base["k"] == 2 and base["n"] == 3
    assert base["samples"] and {"task", "prompt", "response", "correct"} <= set(base["samples"][0])
    run_eval_tasks(str(run), "sft", n=3, k=0, tasks=["josa"], max_tokens=8, **QUIET)
    results = read_results(rf, "val")  # the default split: val, for choosing settings
    assert set(results) == {"pretrain", "sft"} and results["pretrain"] == base
    assert results["sft"]["pass_at_k"] == {}
    # same settings again: skipped (file untouched); --force redoes it
    mtime = rf.eval_results("val").stat().st_mtime_ns
    run_eval_tasks(str(run), "sft", n=3, k=0, tasks=["josa"], max_tokens=8, **QUIET)
    assert rf.eval_results("val").stat().st_mtime_ns == mtime
    run_eval_tasks(str(run), "sft", n=3, k=0, tasks=["josa"], max_tokens=8, force=True, **QUIET)
    assert rf.eval_results("val").stat().st_mtime_ns != mtime
    # a redone stage (new weights) is evaluated again without --force
    from saessak.model.checkpoint import save_model
    from tests.helpers import tiny_model, tiny_tokenizer

    save_model(rf.final_checkpoint("sft"), tiny_model(tiny_tokenizer().vocab_size, seed=5), meta={"preset": "micro"})
    mtime = rf.eval_results("val").stat().st_mtime_ns
    run_eval_tasks(str(run), "sft", n=3, k=0, tasks=["josa"], max_tokens=8, **QUIET)
    assert rf.eval_results("val").stat().st_mtime_ns != mtime


class _Scripted:
    """Stands in for the engine: answers a fixed text per prompt, greedy or sampled."""

    def __init__(self, greedy, sampled):
        self.greedy, self.sampled, self.max_seq_len = greedy, sampled, 256

    def sample(self, prompts, *, max_tokens, temperature, seed=0, **_):
        from saessak.model.sampler import Sampled

        texts = self.greedy if temperature == 0 else self.sampled
        return [Sampled(p, [1], texts[i % len(texts)], "stop") for i, p in enumerate(prompts)]


def test_greedy_accuracy_and_pass_at_k_count_correct_items(monkeypatch):
    import saessak.evals.task_eval as task_eval
    from tests.helpers import tiny_tokenizer

    # greedy: item 0 right ("사과"), item 1 wrong; sampled (k=2 per item): one right sample each
    scripted = _Scripted(greedy=["사과", "apple"], sampled=["apple", "사과", "apple", "사과"])
    monkeypatch.setattr(task_eval, "Sampler", lambda *a, **k: scripted)
    out = evaluate_model(None, tiny_tokenizer(), ToyTasks(), ["hangul"], n=2, k=2, seed=0, max_tokens=4, dtype="fp32")
    assert out["tasks"]["hangul"] == 0.5
    assert out["pass_at_k"]["hangul"] == 1.0
    assert out["by_level"]["hangul"] == {"1": 0.5}


def test_eval_bad_input(tmp_path, capsys):
    from saessak.cli import main

    run = make_run(tmp_path / "run", stages=("pretrain",))
    assert main(["eval", "tasks", "--run", str(run), "--stage", "rl", "--n", "2"]) == 2
    assert "'rl' is not complete" in capsys.readouterr().err
    assert main(["eval", "tasks", "--run", str(run), "--stage", "pretrain", "--tasks", "josa,haiku"]) == 2
    assert "haiku" in capsys.readouterr().err
    assert main(["eval", "tasks", "--run", str(run), "--stage", "pretrain", "--levels", "0-7"]) == 2
    assert "--levels '0-7'" in capsys.readouterr().err
    assert main(["eval", "tasks", "--run", str(run), "--stage", "pretrain", "--levels", "two"]) == 2
    assert "--levels 'two'" in capsys.readouterr().err
    assert not (run / "eval" / "results.json").exists()
    assert not (run / "eval").exists() or not any((run / "eval").iterdir())
    with pytest.raises(SystemExit):
        main(["eval", "tasks", "--run", str(run), "--stage", "final"])


def test_levels_are_stratified_and_val_split_results_are_kept_apart(tmp_path):
    import saessak.tasks as tasks
    from saessak.evals.config import parse_levels
    from saessak.evals.task_eval import draw_items

    items = draw_items(tasks, "josa", "test", 7, seed=3, levels=[1, 2, 3])
    assert [it["level"] for it in items] == [1, 1, 1, 2, 2, 3, 3]
    assert all(it["meta"]["split"] == "test" for it in items)
    # Calendar level 1 has only a handful of distinct test questions (a weekday 1-6 days on): each
    # is counted once, and all of them are found, not the first few.
    small = draw_items(tasks, "calendar", "test", 200, seed=3, levels=[1])
    idents = {(it["prompt"], it["answer"]) for it in small}
    assert len(idents) == len(small) and 3 <= len(small) < 42
    space = {(it["prompt"], it["answer"]) for it in tasks.sample("calendar", "test", 3000, seed=99, level=1)}
    assert idents == space
    big = draw_items(tasks, "josa", "test", 60, seed=3, levels=[3])
    assert len({it["prompt"] for it in big}) == 60  # a large space still fills its quota
    assert parse_levels("1-3") == (1, 2, 3) and parse_levels("3,1") == (1, 3) and parse_levels("all") == ()

    run = make_run(tmp_path / "run", stages=("pretrain",))
    rf = RunFolder(run)
    out = run_eval_tasks(str(run), "pretrain", n=4, k=0, tasks=["josa"], max_tokens=4, levels="2", split="val", **QUIET)
    assert out["split"] == "val" and out["levels"] == [2] and set(out["by_level"]["josa"]) == {"2"}
    assert read_results(rf, "val")["pretrain"] == out
    assert (rf.stage_dir("eval") / "results_val.json").exists()
    assert not (rf.stage_dir("eval") / "results.json").exists()
    assert run_eval_tasks(str(run), "pretrain", n=4, k=0, tasks=["josa"], max_tokens=4, levels="2", **QUIET) == out
    # only an explicit --split final writes the sealed split's results, which the report reads
    assert not rf.eval_results("final").exists()
    final = run_eval_tasks(str(run), "pretrain", n=4, k=0, tasks=["josa"], max_tokens=4, split="final", **QUIET)
    assert final["split"] == "final" and final["levels"] == "all"  # micro preset: every level
    assert read_results(rf, "final")["pretrain"] == final and rf.eval_results("final").name == "results_final.json"
    from saessak.evals.results import reported_split, summary

    assert reported_split(rf) == "final" and summary(rf)["split"] == "final"



def test_paired_gain_needs_the_same_items():
    from saessak.evals.results import paired_gain

    before = {"correct": {"josa": "0011"}, "items_sha": {"josa": "a"}}
    after = {"correct": {"josa": "0111"}, "items_sha": {"josa": "a"}}
    gain, half = paired_gain(before, after, "josa")
    assert gain == 0.25 and half == pytest.approx(1.96 * 0.25)  # sd of (0,1,0,0) is 0.5, / sqrt(4)
    assert paired_gain(before, dict(after, items_sha={"josa": "b"}), "josa") is None  # other items
    assert paired_gain(before, {"tasks": {}}, "josa") is None  # an old result without outcomes
