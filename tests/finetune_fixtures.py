"""Run folders with a tiny tokenizer and model for the SFT, RL and eval tests, plus a toy task API.

The toy task family is checkable by a program like the real suite's, but dense enough that a
randomly initialised model earns varied rewards from its first step, so RL's effect is visible
in a few steps.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import tiny_model, tiny_tokenizer


def make_run(root: Path, stages=("pretrain",), preset: str = "micro", seed: int = 0, model_vocab: int | None = None,
             **model_overrides) -> Path:
    from saessak.model.checkpoint import save_model
    from saessak.runfolder import RunFolder

    tok = tiny_tokenizer()
    rf = RunFolder(root)
    tok.save(rf.tokenizer_json)
    rf.mark_done("tokenizer", {"vocab_size": tok.vocab_size})
    model = tiny_model(model_vocab or tok.vocab_size, seed=seed, **model_overrides)
    for stage in stages:
        save_model(rf.final_checkpoint(stage), model, meta={"preset": preset, "stage": stage})
        rf.mark_done(stage, {"steps": 0})
    return root


class ToyTasks:
    """Task-suite API with one or two families: reply in Hangul; the answer is a fixed word.

    correctness = share of Hangul among the reply's letters (partial credit, dense signal);
    correct = the reply contains the answer word or is all Hangul.
    """

    FAMILIES = ["hangul", "echo"]
    REWARDS = {"correctness": None, "format": None, "korean_consistency": None}

    def sample(self, task, split, n, seed, level=None, start=0):
        if task not in self.FAMILIES:
            raise KeyError(task)
        out = []
        for i in range(start, start + n):
            lvl = level or 1
            out.append({"id": f"{task}-{split}-{seed}-{i}", "task": task, "level": lvl,
                        "prompt": f"한국어로 대답하세요. 문제 {seed % 97 + i}", "answer": "사과", "meta": {}})
        return out

    def grade(self, example, response):
        letters = [c for c in response if c.isalpha()]
        share = (sum(1 for c in letters if "가" <= c <= "힣") / len(letters)) if letters else 0.0
        correct = example["answer"] in response or share == 1.0
        return {"correctness": share, "format": 1.0 if response.strip() else 0.0,
                "korean_consistency": share, "correct": correct, "parsed": response.strip()}

    def solution(self, example):
        return f"사과는 과일입니다.\n정답: {example['answer']}"

    @staticmethod
    def combine_rewards(grades, weights):
        from saessak.tasks import combine_rewards

        return combine_rewards(grades, weights)
