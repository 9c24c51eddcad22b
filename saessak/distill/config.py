"""Distillation settings: defaults here, any command-line option of the same name on top
(`saessak distill --help` lists them). The teacher's URL, model and key are options of the command."""

from __future__ import annotations

from dataclasses import dataclass

from saessak.errors import UserError
from saessak.recipes import check_min, setting
from saessak.tasks.base import LEVELS

# What a task prompt is sent with, so that a teacher that never saw the suite ends in the line the
# graders read (`정답: ...`). Not part of the dataset: the student is trained on the bare prompt,
# as eval and RL ask it.
TEACHER_SYSTEM = ("한국어로 차근차근 풀이한 뒤, 마지막 줄에 '정답: <답>' 형식으로 답만 쓰세요. "
                  "Solve step by step in Korean, then write the final answer on its own last line as '정답: <answer>'.")


def parse_families(text: str) -> tuple[str, ...]:
    """`josa,spacing` -> ("josa", "spacing"); `all` -> () (every family); `none` -> ("none",)."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise UserError(f"--tasks {text!r}: names no family (give e.g. josa,spacing, all or none)")
    return () if names == ("all",) else names


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise UserError(f"--levels {text!r}: expected comma-separated levels, e.g. 1,2,3") from None
    bad = [lvl for lvl in levels if lvl not in LEVELS]
    if not levels or bad:
        raise UserError(f"--levels {text!r}: levels run from {LEVELS[0]} to {LEVELS[-1]}")
    return levels


@dataclass
class DistillConfig:
    tasks: tuple = setting((), "task families to distil, comma-separated; all, or none for --prompts only",
                           parse=parse_families, metavar="FAMILY,...|all|none")
    levels: tuple = setting((1, 2, 3), "task levels to distil", parse=parse_levels, metavar="LEVEL,...")
    items_per_level: int = setting(20, "train-split items per family and level")
    samples: int = setting(4, "samples asked per prompt (one request each, so every server gives them)")
    temperature: float = setting(0.7, "the teacher's sampling temperature")
    top_p: float = setting(1.0, "the teacher's nucleus sampling")
    max_tokens: int = setting(1024, "the longest reply asked for, in the teacher's tokens")
    teacher_system: str = setting(TEACHER_SYSTEM, "system message sent before each task prompt (not kept in the "
                                  "dataset); '' sends none", metavar="TEXT")
    seed: int = setting(0, "seed of the task items and of each request's `seed`")
    concurrency: int = setting(4, "prompts in flight at once")
    max_retries: int = setting(6, "retries of one request (429, 5xx, timeouts, dropped connections)")
    backoff_s: float = setting(1.0, "first retry delay; doubled each retry (with jitter), unless Retry-After says")
    max_backoff_s: float = setting(60.0, "the longest delay between retries")
    timeout_s: float = setting(300.0, "seconds one request may take")

    # Settings that change what is asked: a rerun with other values would mix two datasets.
    IDENTITY = ("tasks", "levels", "items_per_level", "samples", "temperature", "top_p", "max_tokens",
                "teacher_system", "seed")

    def validate(self) -> None:
        check_min(self, ("samples", "max_tokens", "concurrency"), 1, "must be at least 1")
        check_min(self, ("items_per_level", "max_retries"), 0, "must be >= 0")
        if not 0 <= self.temperature <= 2:
            raise UserError(f"--temperature {self.temperature}: must be between 0 and 2")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p {self.top_p}: must be in (0, 1]")
        check_min(self, ("backoff_s", "max_backoff_s", "timeout_s"), 0, "must be > 0", strict=True)

    def identity(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in
                ((k, getattr(self, k)) for k in self.IDENTITY)}
