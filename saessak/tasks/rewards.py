"""Reward functions for RL, in a registry the RL stage combines with weights.

Each reward reads a `Graded` (the response split into reasoning and answer, plus the family's
verdict) and returns a float. Built in:
- `correctness`: the family's score in [0, 1] (partial credit only for spacing F1);
- `format`: 1 when a last `정답:` line exists and the family could parse it, else 0;
- `korean_consistency`: share of Hangul among the letters of the reasoning, in the spirit of
  DeepSeek-R1's language-consistency reward. Latin words that the prompt itself uses (TV, km)
  do not count against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from saessak.errors import UserError
from saessak.hangul import share as hangul_share


@dataclass
class Graded:
    example: dict
    response: str
    reasoning: str
    answer_text: str | None
    score: float  # the family's correctness score
    parsed: object  # the family's reading of the answer, None when unparseable


REWARDS: dict[str, Callable[[Graded], float]] = {}


def register_reward(name: str):
    """Decorator: add a reward function `(Graded) -> float` under `name`."""
    def add(fn):
        if name in REWARDS:
            raise ValueError(f"reward {name!r} registered twice")
        REWARDS[name] = fn
        return fn
    return add


@register_reward("correctness")
def correctness(g: Graded) -> float:
    return g.score if g.answer_text is not None else 0.0


@register_reward("format")
def answer_format(g: Graded) -> float:
    return 1.0 if g.answer_text is not None and g.parsed is not None else 0.0


_LATIN_WORD = re.compile(r"[A-Za-z]+")


@register_reward("korean_consistency")
def korean_consistency(g: Graded) -> float:
    allowed = set(_LATIN_WORD.findall(g.example.get("prompt", "")))
    reasoning = _LATIN_WORD.sub(lambda m: "" if m.group() in allowed else m.group(), g.reasoning)
    share = hangul_share(reasoning)
    if share is not None:
        return share
    if g.answer_text is not None:
        return 1.0  # a bare `정답:` line: the answer's script is the task's, not a language switch
    whole = hangul_share(g.response)
    return whole if whole is not None else 0.0


def combine_rewards(grades: dict, weights: dict) -> float:
    """Weighted sum of reward values; a weight for an unknown reward is a user mistake."""
    total = 0.0
    for name, weight in weights.items():
        if name not in REWARDS:
            raise UserError(f"reward weights: unknown reward {name!r} (known: {', '.join(REWARDS)})")
        if name not in grades:
            raise UserError(f"reward weights: {name!r} is not in the grades given")
        total += float(weight) * float(grades[name])
    return total
