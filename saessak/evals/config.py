"""Task-eval settings: the defaults here, each preset's values in saessak/recipes.py (the levels it
trains on, its answer length, how many items), and any command-line option of the same name on top."""

from __future__ import annotations

from dataclasses import dataclass

from saessak.errors import UserError
from saessak.recipes import setting
from saessak.tasks.base import LEVELS, SPLITS

DEFAULT_SEED = 20240901  # the project's fixed eval seed: every stage is scored on the same items


def parse_levels(text: str) -> tuple[int, ...]:
    """`1-3`, `1,2,3`, `2`, or `all` (an empty tuple: every level, as the suite draws them)."""
    if text.strip().lower() == "all":
        return ()
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            levels = list(range(lo, hi + 1))
        else:
            levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--levels {text!r}: expected a range like 1-3, a list like 1,2,3, or all") from None
    if not levels or not all(lvl in LEVELS for lvl in levels):
        raise UserError(f"--levels {text!r}: levels run from {LEVELS[0]} to {LEVELS[-1]}")
    return tuple(levels)


def parse_families(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@dataclass
class EvalConfig:
    n: int = setting(200, "items per family, at most: each distinct question counts once, so a level with fewer "
                          "held-out questions than its share gives all it has")
    k: int = setting(4, "samples per item for pass@k (0: greedy only)")
    seed: int = setting(DEFAULT_SEED, "test-item seed (default: the project's fixed eval seed)")
    temperature: float = setting(0.8, "sampling temperature for pass@k")
    max_tokens: int = setting(128, "completion limit (default: the preset's answer length, as RL samples)")
    base_max_tokens: int = setting(64, "completion limit for the pretrained (base) model unless --max-tokens is "
                                       "given: it has not learnt the chat format and writes to the limit, so a "
                                       "long limit only costs time")
    dtype: str = setting("auto", "the engine's weights: auto (bf16 or fp32, whichever decodes faster here, "
                                 "measured), bf16 or fp32", choices=("auto", "bf16", "fp32"))
    levels: tuple[int, ...] | None = setting(None, "task levels, e.g. 1-3 or all (default: the levels the run's "
                                                   "preset trains on, docs/RL.md#levels); items are split evenly "
                                                   "over them", parse=parse_levels, metavar="LEVELS")
    tasks: tuple[str, ...] = setting((), "comma-separated families (default: all)", parse=parse_families,
                                     metavar="FAMILY,...")
    split: str = setting("val", "val: the held-out split for choosing settings (eval/results_val.json); final: "
                                "the sealed split the report reads (eval/results_final.json; the speedrun's "
                                "final eval; not for choosing anything); test: the older held-out split "
                                "(eval/results.json); train: items training draws from",
                         choices=SPLITS)

    def validate(self) -> None:
        if self.n < 1:
            raise UserError(f"--n {self.n}: must be at least 1")
        for name in ("max_tokens", "base_max_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.k < 0:
            raise UserError(f"--k {self.k}: must be >= 0 (0 skips pass@k)")
        if self.split not in SPLITS:
            raise UserError(f"--split {self.split!r}: must be one of {', '.join(SPLITS)}")
        if self.max_tokens < 1:
            raise UserError(f"--max-tokens {self.max_tokens}: must be at least 1")
