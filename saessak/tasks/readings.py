"""Reading numbers aloud in Korean: the two systems, counters, and parsing readings back.

Two systems: Sino-Korean (일, 이, 삼 ... 십, 백, 천, 만, 억, 조) and native Korean (하나 .. 아흔아홉).
Rules written here (num2words gets several of them wrong, so it is not used):
- Sino amounts drop a leading 일 before 십/백/천 and before 만 (10 -> 십, 10000 -> 만), but keep it
  before 억 and 조 (일억, 일조). Readings are spaced by 만-groups (한글 맞춤법 제44항).
- Months: 6월 -> 유월, 10월 -> 시월.
- Native numbers shorten before a counter: 하나/둘/셋/넷 -> 한/두/세/네, and 스물 -> 스무 (20 only).
- The counter picks the system: 개, 명, 마리, 살, 시, 권, 잔 count natively; 분, 초, 원, 년, 월, 층,
  개월, 인분 take Sino numbers.

The `numbers` task family (numbers.py) asks for these readings; the `josa` family (josa.py) needs
them to know how a number ends when read aloud (3을, 2를).
"""

from __future__ import annotations

import re

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
