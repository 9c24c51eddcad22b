"""The `numbers` task family: write a number the way it is read aloud, or read a reading back.

The reading rules are in readings.py; this module draws questions, grades answers and writes
worked solutions.
"""

from __future__ import annotations

import random
import re

from saessak.tasks.base import Draft, normalize
from saessak.tasks.josa import attach, particle
from saessak.tasks.readings import MONTH_STEMS, NATIVE_COUNTERS, SINO_COUNTERS, native, read, sino, system_for

TASK = "numbers"


# ---------------------------------------------------------------- the task family

LEVEL_RANGES = {1: (1, 99), 2: (100, 9999), 3: (10**4, 10**6), 4: (10**6, 10**9), 5: (10**9, 10**13)}
WON_RANGES = {1: (10, 990), 2: (100, 99_999), 3: (10**4, 10**7), 4: (10**6, 10**9), 5: (10**8, 10**12)}


def make(rng: random.Random, level: int) -> Draft:
    counter = _pick_counter(rng, level)
    if counter is None:
        system = "native" if level <= 2 and rng.random() < 0.3 else "sino"
        lo, hi = ((1, 10) if level == 1 else (1, 99)) if system == "native" else LEVEL_RANGES[level]
        value = _round_value(rng, rng.randint(lo, hi), level)
    else:
        system = system_for(counter)
        lo, hi = (NATIVE_COUNTERS | SINO_COUNTERS)[counter]
        if level == 1:
            hi = min(hi, 10)  # 하나..열: level 1 is for a tiny model
        if counter == "원":
            lo, hi = WON_RANGES[level]
        value = _round_value(rng, rng.randint(lo, hi), level) if counter == "원" else rng.randint(lo, hi)
    direction = "to_digits" if level >= 3 and rng.random() < 0.5 else "to_hangul"
    reading = read(value, counter, system)
    written = f"{value}{counter or ''}"
    if direction == "to_hangul":
        hint = "" if counter else (" (고유어로)" if system == "native" else " (한자어로)")
        prompt = f"한글로 읽으세요{hint}: {written}"
        answer = reading
    else:
        prompt = f"아라비아 숫자로 쓰세요: {reading}"
        answer = str(value)
    meta = {"value": value, "system": system, "counter": counter, "direction": direction,
            "reading": reading}
    # Direction is left out of the split key: "3개 -> 세 개" in train would give away "세 개 -> 3" in test.
    return Draft(prompt, answer, meta, key=[value, system, counter])


def _pick_counter(rng: random.Random, level: int) -> str | None:
    if level == 1:
        return rng.choice([None, None, "개", "명", "마리"])
    draw = rng.random()
    if level >= 4:
        # Hard levels are about big numbers: bare, or as amounts of money.
        return None if draw < 0.5 else "원" if draw < 0.85 else rng.choice(sorted(NATIVE_COUNTERS) + sorted(SINO_COUNTERS))
    if draw < 0.3:
        return None
    return rng.choice(sorted(NATIVE_COUNTERS) + sorted(SINO_COUNTERS))


def _round_value(rng: random.Random, value: int, level: int) -> int:
    # Big amounts are usually round (32,500원, not 32,517원); keep some unround at high levels.
    if value >= 10**4 and rng.random() < 0.7:
        keep = rng.randint(2, 4)
        scale = 10 ** max(0, len(str(value)) - keep)
        value = max(scale, value // scale * scale)
    return value


def check(example: dict, answer: str) -> tuple[float, object]:
    meta = example["meta"]
    if meta["direction"] == "to_digits":
        digits = re.sub(r"[\s,]", "", normalize(answer))
        if meta.get("counter") and digits.endswith(meta["counter"]):
            digits = digits[: -len(meta["counter"])]
        if not re.fullmatch(r"\d+", digits):
            return 0.0, None
        got = int(digits)
        return float(got == meta["value"]), got
    got = re.sub(r"\s+", "", normalize(answer))
    want = re.sub(r"\s+", "", example["answer"])
    # The counter may be left out ("세" for 3개): the shortened number alone still shows the rule.
    counter = meta.get("counter")
    accepted = {want}
    if counter and counter != "월" and want.endswith(counter):
        accepted.add(want[: -len(counter)])
    return float(got in accepted), got


def solution(example: dict) -> str:
    meta = example["meta"]
    value, counter, system = meta["value"], meta.get("counter"), meta["system"]
    steps = []
    if meta["direction"] == "to_digits":
        steps.append(f"'{meta['reading']}'{particle(meta['reading'], '을/를')} 자리별로 더하면 {value}입니다.")
    if counter:
        kind = "고유어" if system == "native" else "한자어"
        steps.append(f"'{counter}'{particle(counter, '은/는')} {kind} 수와 함께 씁니다.")
    if system == "native":
        full = native(value)
        short = native(value, before_counter=bool(counter))
        if counter and short != full:
            steps.append(f"{attach(str(value), '은/는')} '{full}'이고, 단위 앞에서는 '{short}'{particle(short, '으로/로')} 줄입니다.")
        else:
            steps.append(f"{attach(str(value), '은/는')} '{full}'입니다.")
    elif counter == "월" and value in MONTH_STEMS:
        steps.append(f"{value}월은 받침을 떼어 '{MONTH_STEMS[value]}월'로 읽습니다.")
    else:
        steps.append(f"{attach(str(value), '은/는')} '{sino(value)}'{particle(sino(value), '으로/로')} 읽습니다.")
        if value >= 10 and str(value)[0] == "1" and value < 10**8:
            steps.append("맨 앞의 '일'은 십·백·천·만 앞에서 읽지 않습니다.")
    return "\n".join(steps + [f"정답: {example['answer']}"])

