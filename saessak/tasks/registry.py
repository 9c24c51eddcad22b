"""The task families by name, and the calls other stages use: sample, grade, solution, prompt_messages."""

from __future__ import annotations

import importlib
from types import ModuleType

from saessak.errors import UserError
from saessak.tasks.base import LEVELS, SPLITS, generate, split_response
from saessak.tasks.rewards import REWARDS, Graded

# Ordered: the order `saessak tasks list` shows and mixtures iterate in.
FAMILIES = ("josa", "numbers", "arith", "calendar", "spacing")
_MODULES = {"josa": "josa", "numbers": "numbers", "arith": "arith", "calendar": "calendar_task",
            "spacing": "spacing"}
DESCRIPTIONS = {
    "josa": "조사 고르기: 받침에 따른 은/는, 이/가, 을/를, 과/와, 아/야, 이나/나, 이랑/랑, 으로/로",
    "numbers": "수 읽기: 한자어/고유어 수, 단위에 맞는 체계, 한글 <-> 숫자",
    "arith": "생활 단위(원, 개, 명, 시간, 분, km, 할) 문장제 산수",
    "calendar": "날짜·요일 계산, 달의 날수, 윤년, 만 나이",
    "spacing": "띄어쓰기 복원 (단어 경계 F1)",
}


def family(task: str) -> ModuleType:
    if task not in _MODULES:
        raise UserError(f"task {task!r}: unknown (known: {', '.join(FAMILIES)})")
    return importlib.import_module(f"saessak.tasks.{_MODULES[task]}")


def sample(task: str, split: str, n: int, seed: int, level: int | None = None, *, start: int = 0,
           corpus: str | None = None) -> list[dict]:
    """n examples of `task` from `split`; example i depends only on (task, split, seed, start + i).

    `corpus` (spacing only): a JSONL file of `{"text": ...}` lines to cut sentences from.
    """
    module = family(task)
    if split not in SPLITS:
        raise UserError(f"split {split!r}: must be one of {', '.join(SPLITS)}")
    if level is not None and level not in LEVELS:
        raise UserError(f"level {level}: levels are 1..5")
    if n < 0:
        raise UserError(f"n {n}: must be >= 0")
    if corpus is not None and task != "spacing":
        raise UserError(f"corpus: only the spacing task reads a corpus, not {task!r}")
    make = module.make if corpus is None else (lambda rng, lvl: module.make(rng, lvl, corpus=corpus, split=split))
    return [generate(task, make, split, seed, start + i, level).to_dict() for i in range(n)]


def grade(example: dict, response: str) -> dict:
    """Every registered reward for `response`, plus `correct` (full marks) and `parsed`."""
    module = family(example.get("task"))
    reasoning, answer_text = split_response(response)
    score, parsed = module.check(example, answer_text) if answer_text is not None else (0.0, None)
    graded = Graded(example, response, reasoning, answer_text, float(score), parsed)
    out = {name: float(fn(graded)) for name, fn in REWARDS.items()}
    out["correct"] = answer_text is not None and score >= 1.0
    out["parsed"] = parsed
    return out


def prompt_messages(example: dict) -> list[dict]:
    """The example's prompt as chat messages (a family gives a user string or a message list)."""
    prompt = example["prompt"]
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def solution(example: dict) -> str:
    """A short correct worked solution in Korean whose last line is `정답: <answer>`."""
    return family(example.get("task")).solution(example)
