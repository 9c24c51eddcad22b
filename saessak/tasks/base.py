"""What every task family shares: the example shape, deterministic generation, the split rule,
and lenient parsing of the model's last `정답:` line.

Determinism: example `index` of (task, split, seed) is drawn from a `random.Random` seeded by a
hash of those four values, so any example can be regenerated alone, in any order.

Splits: a hash of an example's *structured inputs* (the `key` a family returns: the semantic
content, not the wording) decides its split, so two splits can never share a question, however the
phrasing varies. A generator draws candidates until one lands in the requested split.

    hash % 1000 in [0, 200)    test   held out; seen by development before the `final` split existed
                   [200, 300)  val    held out, for choosing settings
                   [300, 400)  final  sealed: read only by the speedrun's final eval and the report
                   [400, 1000) train
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

SPLITS = ("train", "val", "test", "final")
LEVELS = (1, 2, 3, 4, 5)
TEST_SHARE = 0.2  # share of the structured-input space reserved for `test`
# The next tenth is `val`: held out from training like `test`, for choosing settings. Carved from
# what was `train`, so `test` is unchanged.
VAL_SHARE = 0.1
# The tenth after that is `final`, the sealed split: results on `test` informed earlier choices
# (SFT length, curriculum, eval protocol: docs/RESULTS.md), so `test` no longer gives a clean
# held-out estimate. `final` is carved from what was `train` (train, val and test keep no input in
# common with it) and is read only by the speedrun's final eval and the report.
FINAL_SHARE = 0.1
MAX_DRAWS = 2000  # a family whose input space at some level is this small is a bug


@dataclass
class Draft:
    """What a family's generator returns for one candidate, before the split is checked."""

    prompt: str
    answer: str
    meta: dict[str, Any]
    key: Any  # JSON-able structured inputs that decide the split


@dataclass
class Example:
    id: str
    task: str
    level: int
    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "task": self.task, "level": self.level, "prompt": self.prompt,
                "answer": self.answer, "meta": self.meta}


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of JSON-able parts that is the same on every machine and Python run."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:8], "big")


def split_of(task: str, key: Any) -> str:
    """The split a structured input belongs to (a pure function of task and key)."""
    h = stable_hash("split", task, key) % 1000
    for split, end in (("test", TEST_SHARE), ("val", TEST_SHARE + VAL_SHARE),
                       ("final", TEST_SHARE + VAL_SHARE + FINAL_SHARE)):
        if h < round(end * 1000):
            return split
    return "train"


def rng_for(task: str, split: str, seed: int, index: int, level: int | None = None) -> random.Random:
    # A fixed level joins the seed so that levels do not share their random streams.
    return random.Random(stable_hash("draw", task, split, seed, index, level))


def generate(task: str, make, split: str, seed: int, index: int, level: int | None) -> Example:
    """Draw candidates from `make(rng, level)` until one belongs to `split`."""
    rng = rng_for(task, split, seed, index, level)
    lvl = level if level is not None else rng.choice(LEVELS)
    for _ in range(MAX_DRAWS):
        draft = make(rng, lvl)
        if split_of(task, draft.key) == split:
            meta = dict(draft.meta)
            meta["split"] = split
            return Example(id=f"{task}-{split}-s{seed}-{index}", task=task, level=lvl,
                           prompt=draft.prompt, answer=draft.answer, meta=meta)
    raise RuntimeError(f"{task} level {lvl}: no {split} example in {MAX_DRAWS} draws")


# ---------------------------------------------------------------- answer parsing

_ANSWER_LINE = re.compile(r"정\s*답\s*[:：]\s*(.*)$")
# A completed line with an answer: evaluation stops generating there (the engine's `stop_at_line`).
ANSWER_LINE_STOP = r"정\s*답\s*[:：]\s*\S"
_FULLWIDTH = {ord(c): ord(c) - 0xFEE0 for c in "０１２３４５６７８９／，．：－"}
_TRAILING = " \t.。!！?？'\"`“”‘’*"


def normalize(text: str) -> str:
    """NFC plus the narrow width fixes a grader needs (full-width digits and signs only)."""
    return unicodedata.normalize("NFC", text).translate(_FULLWIDTH)


def split_response(response: str) -> tuple[str, str | None]:
    """(reasoning, answer text) from a response; the answer is the last `정답:` line's content.

    Returns answer None when no `정답:` line with content exists.
    """
    lines = normalize(response or "").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        m = _ANSWER_LINE.search(lines[i].strip().strip("*# "))
        if m:
            answer = m.group(1).strip().strip(_TRAILING).strip()
            reasoning = "\n".join(lines[:i] + [lines[i][: lines[i].find("정")]])
            return reasoning.strip(), (answer or None)
    return normalize(response or "").strip(), None


_NUMBER = re.compile(r"(?<![\d.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d,])")
_FRACTION = re.compile(r"(-?\d+)\s*/\s*(\d+)")
_KO_FRACTION = re.compile(r"(\d+)\s*분\s*의\s*(\d+)")
_MIXED = re.compile(r"(\d+)\s*(?:와|과|\s)\s*(\d+)\s*/\s*(\d+)")


def parse_number(text: str) -> Fraction | None:
    """The one number an answer states: 12, 1,000, -3, 2.5, 7/3, 2 1/3, 3분의 2 -> Fraction.

    Trailing units (원, 개, km...) are ignored; an answer stating two different numbers is None.
    """
    t = normalize(text).strip()
    m = _MIXED.fullmatch(_strip_unit(t))
    if m:
        whole, num, den = (int(g) for g in m.groups())
        return None if den == 0 else whole + Fraction(num, den)
    m = _KO_FRACTION.search(t)
    if m:
        den, num = int(m.group(1)), int(m.group(2))
        return None if den == 0 else Fraction(num, den)
    m = _FRACTION.search(t)
    if m:
        num, den = int(m.group(1)), int(m.group(2))
        rest = (t[: m.start()] + t[m.end():])
        if den == 0 or re.search(r"\d", rest):
            return None
        return Fraction(num, den)
    found = _NUMBER.findall(t)
    values = {Fraction(s.replace(",", "")) for s in found}
    if len(values) != 1:
        return None
    return values.pop()


def _strip_unit(t: str) -> str:
    return re.sub(r"\s*[^\d\s/]+$", "", t)


def format_number(value: Fraction | int) -> str:
    """Canonical answer text: an integer, else a reduced fraction `p/q`."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


