"""The RL stage end to end on a tiny model: metrics, curriculum, resume, bad input, torchrun."""

import json
import os
import subprocess
import sys

import pytest

from saessak.errors import UserError
from saessak.io import read_json, read_jsonl
from saessak.rl.curriculum import Curriculum
from saessak.runfolder import RunFolder
from tests.finetune_fixtures import ToyTasks, make_run

QUIET = dict(log=lambda *a: None)
FAST = dict(max_completion_length=12, log_completions=1, mask_truncated_completions=False)


def test_curriculum_raises_and_lowers_on_a_full_window():
    c = Curriculum(["a", "b"], start_level=2, max_level=3, raise_at=0.8, lower_at=0.1, window=3)
    for acc in (1.0, 0.9, 0.7):
        c.record("a", acc, step=1)
    assert c.level("a") == 3 and c.moves[-1]["from"] == 2
    for acc in (1.0, 1.0, 1.0):
        c.record("a", acc, step=2)
    assert c.level("a") == 3  # max_level caps it
    for acc in (0.0, 0.0):
        c.record("b", acc, step=3)
    assert c.level("b") == 2  # window not full yet
    c.record("b", 0.0, step=3)
    assert c.level("b") == 1
    restored = Curriculum(["a", "b"], 1, 3, 0.8, 0.1, 3)
    restored.load_state(json.loads(json.dumps(c.state())))
    assert restored.levels == c.levels and restored.moves == c.moves


def test_rl_stage_on_real_tasks_logs_every_metric(tmp_path):
    from saessak.rl.stage import run_rl

    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    summary = run_rl(str(run), max_steps=2, tasks=("josa", "arith"), **FAST, **QUIET)
    rf = RunFolder(run)
    recs = read_jsonl(rf.stage_dir("rl") / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2]
    for key in ("reward/correctness/mean", "reward/format/std", "reward/korean_consistency/mean",
                "reward/total/mean", "level/josa", "level/arith", "frac_reward_zero_std",
                "completion_length/mean", "completion_length/max", "clip_frac", "entropy",
                "rollout_tokens_per_s", "step_s", "truncated_frac"):
        assert key in recs[0], key
    assert "kl" not in recs[0]  # beta = 0: no reference model
    # Accuracy and mean level for each family drawn that step (the curriculum picks which).
    drawn = {k.split("/")[1] for r in recs for k in r if k.startswith("accuracy/")}
    assert drawn and drawn <= {"josa", "arith"}
    assert all(f"level_mean/{f}" in r for r in recs for f in drawn if f"accuracy/{f}" in r)
    samples = read_jsonl(rf.stage_dir("rl") / "samples.jsonl")
    assert samples and {"prompt", "completion", "reward", "correct"} <= set(samples[0])
    assert rf.is_done("rl") and (rf.final_checkpoint("rl") / "model.safetensors").exists()
    assert summary["steps"] == 2
    assert summary["curriculum"] == "learnability"
    assert sum(v["groups"] for v in summary["curriculum_state"].values()) >= 2 * 4  # every graded group counted
    ledger = read_jsonl(run / "ledger.jsonl")
    assert ledger[-1]["stage"] == "rl" and ledger[-1]["flops"] > 0 and ledger[-1]["rollout_tokens"] > 0


def test_rl_with_kl_and_several_iterations_reports_kl_and_clipping(tmp_path):
    from saessak.rl.stage import run_rl

    import torch

    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    threads = torch.get_num_threads()
    run_rl(str(run), max_steps=2, tasks_api=ToyTasks(), beta=0.05, num_iterations=2, learning_rate=5e-3,
           threads=1, **FAST, **QUIET)
    assert torch.get_num_threads() == threads  # the stage's thread setting does not leak to the caller
    assert read_json(RunFolder(run).done_path("rl"))["config"]["threads"] == 1
    recs = read_jsonl(RunFolder(run).stage_dir("rl") / "metrics.jsonl")
    assert all("kl" in r for r in recs)
    assert recs[-1]["kl"] > 0  # the policy moved away from the frozen reference
    assert any(r["clip_frac"] > 0 for r in recs)  # second iteration: ratios leave the clip range


def test_rl_resume_continues_from_the_checkpoint(tmp_path, monkeypatch):
    from saessak.training import lifecycle as training
    from saessak.rl.stage import run_rl

    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    rf = RunFolder(run)
    real = training.save_final
    monkeypatch.setattr(training, "save_final", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        run_rl(str(run), max_steps=3, tasks_api=ToyTasks(), ckpt_every=2, **FAST, **QUIET)
    first = {r["step"]: r["reward/total/mean"] for r in read_jsonl(rf.stage_dir("rl") / "metrics.jsonl")}
    monkeypatch.setattr(training, "save_final", real)
    run_rl(str(run), max_steps=3, tasks_api=ToyTasks(), ckpt_every=2, resume=True, **FAST, **QUIET)
    recs = read_jsonl(rf.stage_dir("rl") / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3]
    # the same step 3 as the uninterrupted run: same prompts, same seeds, same weights
    assert recs[2]["reward/total/mean"] == pytest.approx(first[3], abs=1e-6)
    assert rf.is_done("rl")


@pytest.mark.parametrize("args, message", [
    (["--num-generations", "1"], "at least 2"),
    (["--tasks", "josa,poetry"], "poetry"),
    (["--tasks", " , "], "names no family"),
    (["--threads", "0"], "at least 1"),
    (["--batch-size", "10", "--num-generations", "4"], "not divisible"),
    (["--loss-type", "grpo", "--reward-weights", "style=1"], "style"),
])
def test_rl_cli_bad_input_is_a_clear_error(tmp_path, capsys, args, message):
    from saessak.cli import main

    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    assert main(["rl", "--run", str(run), "--max-steps", "1"] + args) == 2
    assert message in capsys.readouterr().err
    assert not (run / "rl").exists()


def test_rl_needs_sft_and_a_matching_tokenizer(tmp_path, capsys):
    from saessak.cli import main

    run = make_run(tmp_path / "run", stages=("pretrain",))
    assert main(["rl", "--run", str(run)]) == 2
    assert "'sft' is not complete" in capsys.readouterr().err
    other = make_run(tmp_path / "other", stages=("pretrain", "sft"), model_vocab=300)
    assert main(["rl", "--run", str(other)]) == 2
    assert "tokenizer" in capsys.readouterr().err


@pytest.mark.slow
def test_rl_under_torchrun_two_processes(tmp_path):
    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "saessak", "rl",
           "--run-dir", str(run), "--max-steps", "2", "--tasks", "josa,numbers", "--prompts-per-step", "4",
           "--max-completion-length", "12"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    recs = read_jsonl(run / "rl" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2]
    assert recs[0]["groups_generated"] >= 4  # both ranks' groups are counted


def test_level_mix_draws_every_level_up_to_the_current_one():
    import saessak.tasks as tasks
    from saessak.rl.rollouts import draw_examples

    c = Curriculum(["josa", "calendar"], start_level=1, max_level=5, raise_at=0.8, lower_at=0.1, window=3)
    c.levels["josa"] = 3
    exs = draw_examples(tasks, c.plan(40, seed=7, offset=0, level_mix=True), seed=7)
    josa_levels = {e["level"] for e in exs if e["task"] == "josa"}
    assert josa_levels == {1, 2, 3}
    assert {e["level"] for e in exs if e["task"] == "calendar"} == {1}
    assert [e["task"] for e in exs[:4]] == ["josa", "calendar", "josa", "calendar"]
    fixed = draw_examples(tasks, Curriculum(["josa"], 3, 5, 0.8, 0.1, 3).plan(10, seed=7, offset=0), seed=7)
    assert {e["level"] for e in fixed} == {3}
    assert all(e["meta"]["split"] == "train" for e in exs)


def test_learnability_curriculum_sends_prompts_where_groups_disagree():
    from collections import Counter

    from saessak.rl.curriculum import LearnabilityCurriculum

    c = LearnabilityCurriculum(["a", "b"], start_level=1, max_level=3, raise_at=0.8, lower_at=0.05, window=16)
    # Unseen pairs are all tried first.
    assert set(c.plan(200, seed=0)) == {(f, lvl) for f in "ab" for lvl in (1, 2, 3)}
    for _ in range(16):
        c.record("a", 1.0, step=1, level=1)  # mastered
        c.record("a", 0.5, step=1, level=2)  # the frontier
        c.record("a", 0.0, step=1, level=3)  # beyond the model
        for lvl in (1, 2, 3):
            c.record("b", 0.0, step=1, level=lvl)  # a family it cannot do at any level
    counts = Counter(c.plan(2000, seed=1))
    assert counts[("a", 2)] > 0.8 * 2000
    assert all(counts[p] > 0 for p in c.pairs)  # the floor keeps every pair in view
    assert c.level("a") == 2 and c.level("b") == 1  # frontier: lowest level not yet mastered
    assert c.moves and c.moves[-1]["task"] == "a" and c.moves[-1]["to"] == 2
    restored = LearnabilityCurriculum(["a", "b"], 1, 3, 0.8, 0.05, 16)
    restored.load_state(json.loads(json.dumps(c.state())))
    assert restored.plan(50, seed=3) == c.plan(50, seed=3) and restored.levels == c.levels
    assert restored.summary() == c.summary() and c.summary()["a@2"] == {"groups": 16, "window_acc": 0.5}


def test_balanced_curriculum_gives_each_family_its_share_whatever_its_levels():
    from collections import Counter

    from saessak.rl.curriculum import BalancedCurriculum, LearnabilityCurriculum

    def trained(cls):
        c = cls(["a", "b"], start_level=1, max_level=3, raise_at=0.8, lower_at=0.05, window=16)
        for _ in range(16):
            for lvl in (1, 2, 3):
                c.record("a", 0.5, step=1, level=lvl)  # three learnable levels
            c.record("b", 1.0, step=1, level=1)
            c.record("b", 1.0, step=1, level=2)
            c.record("b", 0.5, step=1, level=3)  # one
        return c

    plain = Counter(f for f, _ in trained(LearnabilityCurriculum).plan(3000, seed=1))
    assert plain["a"] > 2.5 * plain["b"]  # the family with more learnable levels takes the prompts
    balanced = trained(BalancedCurriculum)
    plan = balanced.plan(3000, seed=1, offset=1)
    assert [f for f, _ in plan[:4]] == ["b", "a", "b", "a"]  # in turn, from the offset
    counts = Counter(plan)
    assert sum(v for (f, _), v in counts.items() if f == "a") == 1500
    assert counts[("b", 3)] > 0.9 * 1500  # within b, its learnable level
    assert min(counts[("a", lvl)] for lvl in (1, 2, 3)) > 400


def test_each_preset_fine_tunes_trains_and_is_judged_on_the_same_levels():
    from saessak import recipes
    from saessak.evals.config import EvalConfig
    from saessak.rl.config import GRPOConfig
    from saessak.sft.config import SFTConfig
    from saessak.tasks import LEVELS

    for name, recipe in recipes.RECIPES.items():
        levels = recipe.task_levels or LEVELS
        assert set(recipes.stage_config(SFTConfig, name, "sft").level_weights) == set(levels), name
        rl_cfg = recipes.stage_config(GRPOConfig, name, "rl")
        assert rl_cfg.max_level == max(levels), name
        ev = recipes.stage_config(EvalConfig, name, "eval")
        assert tuple(ev.levels or LEVELS) == tuple(levels), name
        # RL samples and eval scores answers of the same length.
        assert rl_cfg.max_completion_length == ev.max_tokens == recipe.answer_tokens, name
    assert recipes.get("cpu-tiny").task_levels == (1, 2, 3)


def test_every_recipe_builds_valid_stage_configs():
    from saessak import recipes
    from saessak.evals.config import EvalConfig
    from saessak.pretrain.config import PretrainConfig
    from saessak.rl.config import GRPOConfig
    from saessak.sft.config import SFTConfig

    for name in recipes.RECIPES:
        recipes.stage_config(PretrainConfig, name, "pretrain").validate()
        recipes.stage_config(SFTConfig, name, "sft").validate()
        recipes.stage_config(GRPOConfig, name, "rl").validate()
        recipes.stage_config(EvalConfig, name, "eval").validate()
    with pytest.raises(ValueError, match="has no field"):
        recipes.stage_config(SFTConfig, "micro", "sft", {"max_stepz": 3})
    with pytest.raises(UserError, match="unknown preset"):
        recipes.get("nano")


def test_rl_tasks_default_to_the_preset_and_all_means_every_family(tmp_path, monkeypatch):
    import saessak.rl.stage as rl
    import saessak.tasks as tasks
    from saessak import recipes
    from saessak.cli import main
    from saessak.rl.config import GRPOConfig

    assert set(recipes.stage_config(GRPOConfig, "cpu-tiny", "rl").tasks) <= set(tasks.FAMILIES)
    seen = []
    monkeypatch.setattr(rl, "run_rl", lambda run, **kw: seen.append(kw.get("tasks")))
    for flag, want in ([], None), (["--tasks", "all"], ()), (["--tasks", "josa, spacing"], ("josa", "spacing")):
        assert main(["rl", "--run", str(tmp_path)] + flag) == 0
        assert seen.pop() == want
    # () overrides a preset's list: every family
    cfg = recipes.stage_config(GRPOConfig, "cpu-tiny", "rl", {"tasks": ()})
    assert cfg.families(tasks) == list(tasks.FAMILIES)


# ----------------------------------------------------------------------------- time budget and dynamic sampling


def test_time_budget_stops_after_the_step_that_passes_it_and_leaves_a_usable_model(tmp_path):
    import torch

    from saessak.model.loading import load_stage
    from saessak.model.sampler import Sampler
    from saessak.rl.stage import run_rl
    from saessak.tokenizer.chat_format import prompt_ids

    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    rf = RunFolder(run)
    lines = []
    # A budget of 0 s is passed by the first step, whatever the machine's speed: the stage must stop there.
    summary = run_rl(str(run), max_steps=6, ckpt_every=2, time_budget_s=0.0, tasks_api=ToyTasks(), log=lines.append,
                     **FAST)
    assert summary["steps"] == 1 and summary["config"]["max_steps"] == 6
    assert summary["config"]["time_budget_s"] == 0.0 and summary["loop_s"] > 0.0
    assert any("time budget 0.0s reached after step 1" in m for m in lines), lines
    assert [r["step"] for r in read_jsonl(rf.stage_dir("rl") / "metrics.jsonl")] == [1]
    done = read_json(rf.done_path("rl"))
    assert done["steps"] == 1 and done["config"]["time_budget_s"] == 0.0
    assert not (rf.stage_dir("rl") / "ckpt").exists()
    rec = read_jsonl(run / "ledger.jsonl")[-1]
    assert rec["stage"] == "rl" and rec["status"] == "done" and rec["steps"] == 1
    # The final model is whole: it loads with the shared loader, differs from the SFT model it
    # started from (one update was applied) and generates.
    model, tok = load_stage(rf, "rl", "test")
    sft_model, _ = load_stage(rf, "sft", "test")
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), sft_model.state_dict().values()))
    out = Sampler(model, tok).sample([prompt_ids(tok, [{"role": "user", "content": "안녕하세요"}])], max_tokens=8,
                                     temperature=0.0)
    assert out[0].token_ids and isinstance(out[0].text, str)


class FlatThenLiveTasks(ToyTasks):
    """The first `flat` prompts graded earn the same reward on every completion (zero-variance
    groups); every later prompt's completions alternate 1, 0, 1, 0, so its group is informative."""

    FAMILIES = ("hangul",)

    def __init__(self, flat: int):
        self.flat = flat
        self.flat_ids: set[str] = set()
        self.order: list[str] = []  # prompt ids in the order they were first graded
        self.calls = 0

    def grade(self, example, response):
        if example["id"] not in self.order:
            self.order.append(example["id"])
            if len(self.flat_ids) < self.flat:
                self.flat_ids.add(example["id"])
        if example["id"] in self.flat_ids:
            v = 0.0
        else:
            self.calls += 1
            v = float(self.calls % 2)
        return {"correctness": v, "format": 1.0, "korean_consistency": v, "correct": v == 1.0,
                "parsed": response.strip()}


@pytest.mark.parametrize("flat, rounds, generated, kept", [
    (2, 1, 4 + 4, 4),  # 2 flat groups dropped; one refill round of 2 x 2 fresh prompts fills the batch
    (2, 0, 4, 2),  # micro's setting: no refill, the step trains on the 2 informative groups
    (10**9, 2, 4 + 8 + 8, 0),  # nothing informative: exactly 1 + 2 rounds are drawn, then the step goes on
])
def test_dynamic_sampling_replaces_zero_variance_groups_up_to_the_round_limit(tmp_path, monkeypatch, flat, rounds,
                                                                               generated, kept):
    import saessak.rl.stage as rl_stage

    batches = []
    real_collect = rl_stage.collect

    def spy(*a, **k):
        batches.append(real_collect(*a, **k))
        return batches[-1]

    monkeypatch.setattr(rl_stage, "collect", spy)
    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    tasks = FlatThenLiveTasks(flat)
    run_rl = rl_stage.run_rl
    run_rl(str(run), max_steps=1, tasks_api=tasks, tasks=("hangul",), prompts_per_step=4, num_generations=4,
           dynamic_sampling=True, max_resample_rounds=rounds, **FAST, **QUIET)
    (batch,) = batches
    ids = [g.example["id"] for g in batch.generated]
    assert len(ids) == generated and len(set(ids)) == generated  # every refill draws fresh prompts
    assert ids == tasks.order
    assert len(batch.kept) == kept
    assert all(not g.zero_std and g.example["id"] not in tasks.flat_ids for g in batch.kept)
    assert sum(g.zero_std for g in batch.generated) == min(flat, generated)
    # The kept groups are the first informative ones, in the order they were drawn.
    assert [g.example["id"] for g in batch.kept] == [i for i in ids if i not in tasks.flat_ids][:kept]
    rec = read_jsonl(RunFolder(run).stage_dir("rl") / "metrics.jsonl")[-1]
    assert rec["groups_generated"] == generated and rec["groups_trained"] == kept
    assert rec["frac_reward_zero_std"] == pytest.approx(min(flat, generated) / generated, abs=1e-4)


@pytest.mark.parametrize("stop", [True, False])
def test_rollouts_stop_where_evaluation_stops_reading(tmp_path, monkeypatch, stop):
    """Evaluation ends each completion at its first completed `정답:` line and grades that line; the
    rollouts must end at the same line (the engine's stop rule), or GRPO rewards and trains on text
    the eval never reads, such as a second answer line."""
    from saessak.model.sampler import Sampler
    from saessak.rl.stage import run_rl
    from saessak.tasks.base import ANSWER_LINE_STOP

    asked = []
    real_sample = Sampler.sample

    def spy(self, prompts, **k):
        asked.append(k.get("stop_at_line"))
        return real_sample(self, prompts, **k)

    monkeypatch.setattr(Sampler, "sample", spy)
    run = make_run(tmp_path / "run", stages=("pretrain", "sft"))
    run_rl(str(run), max_steps=1, tasks=("josa",), stop_at_answer=stop, **FAST, **QUIET)
    assert asked and set(asked) == {ANSWER_LINE_STOP if stop else None}
    assert read_json(RunFolder(run).done_path("rl"))["config"]["stop_at_answer"] is stop
