"""Reading numbers aloud in Korean, and the `numbers` task family.

Two systems: Sino-Korean (일, 이, 삼 ... 십, 백, 천, 만, 억, 조) and native Korean (하나 .. 아흔아홉).
Rules written here (num2words gets several of them wrong, so it is not used):
- Sino amounts drop a leading 일 before 십/백/천 and before 만 (10 -> 십, 10000 -> 만), but keep it
  before 억 and 조 (일억, 일조). Readings are spaced by 만-groups (한글 맞춤법 제44항).
- Months: 6월 -> 유월, 10월 -> 시월.
- Native numbers shorten before a counter: 하나/둘/셋/넷 -> 한/두/세/네, and 스물 -> 스무 (20 only).
- The counter picks the system: 개, 명, 마리, 살, 시, 권, 잔 count natively; 분, 초, 원, 년, 월, 층,
  개월, 인분 take Sino numbers.
"""

from __future__ import annotations

import random
import re

from saessak.tasks.base import Draft, normalize

TASK = "numbers"

SINO_DIGITS = "영일이삼사오육칠팔구"
SMALL_UNITS = ((1000, "천"), (100, "백"), (10, "십"))
BIG_UNITS = ("", "만", "억", "조", "경")
NATIVE_ONES = ("", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉")
NATIVE_TENS = ("", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔")
# Forms a native number takes right before a counter (관형사형).
COUNTER_FORMS = {"하나": "한", "둘": "두", "셋": "세", "넷": "네", "스물": "스무"}

NATIVE_COUNTERS = {"개": (1, 99), "명": (1, 99), "마리": (1, 99), "살": (1, 99), "시": (1, 12),
                   "권": (1, 99), "잔": (1, 20)}
SINO_COUNTERS = {"분": (1, 59), "초": (1, 59), "원": (10, 10**8), "년": (1, 2100), "월": (1, 12),
                 "층": (1, 99), "개월": (1, 36), "인분": (1, 10)}
MONTH_STEMS = {6: "유", 10: "시"}  # 육월 -> 유월, 십월 -> 시월
MAX_SINO = 10**20 - 1


def system_for(counter: str | None) -> str | None:
    if counter in NATIVE_COUNTERS:
        return "native"
    if counter in SINO_COUNTERS:
        return "sino"
    return None


def sino(n: int) -> str:
    """Sino-Korean reading of 0 <= n < 10**20, spaced by 만-groups: 32500 -> '삼만 이천오백'."""
    if not 0 <= n <= MAX_SINO:
        raise ValueError(f"sino reading needs 0 <= n < 10**20, got {n}")
    if n == 0:
        return "영"
    groups = []
    power = 0
    while n:
        n, group = divmod(n, 10000)
        if group:
            text = _sino_group(group)
            if power == 1 and group == 1:
                text = ""  # 10000 is 만, not 일만
            groups.append(text + BIG_UNITS[power])
        power += 1
    return " ".join(reversed(groups))


def _sino_group(g: int) -> str:
    out = []
    for value, name in SMALL_UNITS:
        d, g = divmod(g, value)
        if d:
            out.append(("" if d == 1 else SINO_DIGITS[d]) + name)
    if g:
        out.append(SINO_DIGITS[g])
    return "".join(out)


def native(n: int, before_counter: bool = False) -> str:
    """Native reading of 1..99; before a counter the last word shortens (세 개, 스무 살)."""
    if not 1 <= n <= 99:
        raise ValueError(f"native reading needs 1..99, got {n}")
    tens, ones = divmod(n, 10)
    last = NATIVE_ONES[ones] if ones else NATIVE_TENS[tens]
    head = NATIVE_TENS[tens] if ones else ""
    if before_counter:
        last = COUNTER_FORMS.get(last, last)
    return head + last


def read(value: int, counter: str | None = None, system: str | None = None) -> str:
    """The spoken reading of `value` with an optional counter; the counter decides the system."""
    chosen = system_for(counter) or system or "sino"
    if counter is None:
        return native(value) if chosen == "native" else sino(value)
    if counter == "월":
        return MONTH_STEMS.get(value, sino(value)) + "월"
    number = native(value, before_counter=True) if chosen == "native" else sino(value)
    return f"{number} {counter}"


# ---------------------------------------------------------------- parsing readings back to ints

_SMALL = {"십": 10, "백": 100, "천": 1000}
_BIG = {"만": 10**4, "억": 10**8, "조": 10**12, "경": 10**16}
_NATIVE_VALUES = {w: i for i, w in enumerate(NATIVE_ONES) if w}
_NATIVE_VALUES.update({w: 10 * i for i, w in enumerate(NATIVE_TENS) if w})
_NATIVE_VALUES.update({short: _NATIVE_VALUES[full] for full, short in COUNTER_FORMS.items()})


def parse_sino(text: str) -> int:
    """Inverse of `sino` (also accepts 일만, 일십 and missing spaces): '삼만 이천오백' -> 32500."""
    t = re.sub(r"\s+", "", text)
    if t == "영":
        return 0
    if not t or any(c not in SINO_DIGITS[1:] and c not in _SMALL and c not in _BIG for c in t):
        raise ValueError(f"not a Sino-Korean number: {text!r}")
    total = group = 0
    digit = None
    for c in t:
        if c in _SMALL:
            group += (digit if digit is not None else 1) * _SMALL[c]
            digit = None
        elif c in _BIG:
            group += digit or 0
            total += (group or 1) * _BIG[c]
            group, digit = 0, None
        else:
            if digit is not None:
                raise ValueError(f"two digits in a row in {text!r}")
            digit = SINO_DIGITS.index(c)
    return total + group + (digit or 0)


def parse_native(text: str) -> int:
    """Inverse of `native` (plain or counter form): '스물세' -> 23, '스무' -> 20."""
    t = re.sub(r"\s+", "", text)
    for tens_word, tens in sorted(((w, v) for w, v in _NATIVE_VALUES.items() if v >= 10 or w in ("스무",)),
                                  key=lambda p: -len(p[0])):
        if t.startswith(tens_word):
            rest = t[len(tens_word):]
            if not rest:
                return tens
            if tens_word != "스무" and rest in _NATIVE_VALUES and _NATIVE_VALUES[rest] < 10:
                return tens + _NATIVE_VALUES[rest]
    if t in _NATIVE_VALUES and _NATIVE_VALUES[t] < 10:
        return _NATIVE_VALUES[t]
    raise ValueError(f"not a native Korean number: {text!r}")


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
    from saessak.tasks.josa import attach, particle  # josa imports this module for readings

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

