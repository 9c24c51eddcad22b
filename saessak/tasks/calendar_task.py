"""Date and weekday arithmetic in Korean (요일, N일 후, month lengths, leap years, 만 나이).

The date maths is written out here (proleptic Gregorian, day 1 = 0001-01-01, a Monday) rather
than taken from `datetime`, so that the tests can cross-check it against `datetime`.
Since 2023-06-28 Korean law counts age as 만 나이 (full years since birth); the age questions use it.
"""

from __future__ import annotations

import random
import re

from saessak.tasks.base import Draft, normalize, parse_number
from saessak.tasks.josa import attach

TASK = "calendar"

WEEKDAYS = ("월", "화", "수", "목", "금", "토", "일")  # Monday first, like datetime.weekday()
MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MAN_NAI_SINCE = (2023, 6, 28)


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year: int, month: int) -> int:
    return 29 if month == 2 and is_leap(year) else MONTH_DAYS[month - 1]


def to_ordinal(year: int, month: int, day: int) -> int:
    """Days since 0000-12-31: 0001-01-01 is 1."""
    if not 1 <= month <= 12 or not 1 <= day <= days_in_month(year, month):
        raise ValueError(f"no such date: {year}-{month}-{day}")
    y = year - 1
    before_year = 365 * y + y // 4 - y // 100 + y // 400
    before_month = sum(days_in_month(year, m) for m in range(1, month))
    return before_year + before_month + day


def from_ordinal(n: int) -> tuple[int, int, int]:
    year = max(1, n * 400 // 146097)
    while to_ordinal(year + 1, 1, 1) <= n:
        year += 1
    while to_ordinal(year, 1, 1) > n:
        year -= 1
    rest = n - to_ordinal(year, 1, 1) + 1
    month = 1
    while rest > days_in_month(year, month):
        rest -= days_in_month(year, month)
        month += 1
    return year, month, rest


def weekday(year: int, month: int, day: int) -> int:
    return (to_ordinal(year, month, day) - 1) % 7


def add_days(date: tuple[int, int, int], days: int) -> tuple[int, int, int]:
    return from_ordinal(to_ordinal(*date) + days)


def age_on(birth: tuple[int, int, int], on: tuple[int, int, int]) -> int:
    """만 나이: full years since birth (one more each time the birthday comes round)."""
    return on[0] - birth[0] - ((on[1], on[2]) < (birth[1], birth[2]))


def ko_date(date: tuple[int, int, int]) -> str:
    return f"{date[0]}년 {date[1]}월 {date[2]}일"


def ko_weekday(i: int) -> str:
    return WEEKDAYS[i] + "요일"


# ---------------------------------------------------------------- the task family

def _random_date(rng: random.Random, lo: int = 1990, hi: int = 2035) -> tuple[int, int, int]:
    year, month = rng.randint(lo, hi), rng.randint(1, 12)
    return year, month, rng.randint(1, days_in_month(year, month))


def _weekday_shift(rng, level):
    start = rng.randrange(7)
    days = rng.randint(1, 6) if level == 1 else rng.randint(7, 100)
    back = level >= 2 and rng.random() < 0.4
    end = (start - days) % 7 if back else (start + days) % 7
    word = "전" if back else "후"
    steps = [f"{attach(str(days), '을/를')} 7로 나눈 나머지는 {days % 7}입니다.",
             f"{ko_weekday(start)}에서 {days % 7}일 {'앞으로' if back else '뒤로'} 가면 {ko_weekday(end)}입니다."]
    prompt = f"오늘이 {ko_weekday(start)}이면 {days}일 {word}는 무슨 요일인가요?"
    meta = {"kind": "weekday_shift", "start_weekday": start, "days": -days if back else days}
    return prompt, ko_weekday(end), meta, steps


def _month_length(rng, level):
    year = rng.choice([rng.randint(1990, 2040), rng.choice([1900, 2000, 2100, 2200, 2400])]) if level >= 3 \
        else rng.randint(1990, 2040)
    month = 2 if level >= 3 or rng.random() < 0.3 else rng.randint(1, 12)
    n = days_in_month(year, month)
    steps = [f"{month}월은 {n}일까지 있습니다."]
    if month == 2:
        leap = is_leap(year)
        steps = [f"{year}년은 " + ("윤년이므로" if leap else "윤년이 아니므로") + f" 2월은 {n}일까지입니다."]
        if year % 100 == 0:
            steps.insert(0, "100으로 나누어떨어지는 해는 400으로도 나누어떨어져야 윤년입니다.")
    return (f"{year}년 {month}월은 며칠까지 있나요?", str(n),
            {"kind": "month_length", "year": year, "month": month}, steps)


def _date_shift(rng, level):
    start = _random_date(rng)
    days = rng.randint(1, 60) if level == 3 else rng.randint(30, 1000)
    end = add_days(start, days)
    steps = [f"{ko_date(start)}에서 {days}일을 더하면 {ko_date(end)}입니다."]
    return (f"{ko_date(start)}부터 {days}일 후는 몇 년 몇 월 며칠인가요?", ko_date(end),
            {"kind": "date_shift", "start": list(start), "days": days}, steps)


def _days_between(rng, level):
    a = _random_date(rng)
    b = add_days(a, rng.randint(1, 400))
    n = to_ordinal(*b) - to_ordinal(*a)
    return (f"{ko_date(a)}부터 {ko_date(b)}까지는 며칠 차이인가요?", str(n),
            {"kind": "days_between", "start": list(a), "end": list(b)},
            [f"두 날짜 사이의 날 수를 세면 {n}일입니다."])


def _age(rng, level):
    birth = _random_date(rng, 1950, 2015)
    while birth[1:] == (2, 29):
        birth = _random_date(rng, 1950, 2015)
    # Near-birthday reference dates are where a wrong rule shows.
    on_year = rng.randint(max(birth[0] + 1, MAN_NAI_SINCE[0]), 2030)
    if rng.random() < 0.5:
        on = add_days((on_year, birth[1], birth[2]), rng.choice([-1, 0, 1]))
    else:
        on = _random_date(rng, on_year, on_year)
    if on < MAN_NAI_SINCE:
        on = MAN_NAI_SINCE
    age = age_on(birth, on)
    passed = (on[1], on[2]) >= (birth[1], birth[2])
    steps = [f"{on[0]} - {birth[0]} = {on[0] - birth[0]}",
             "생일이 지났으므로 그대로 씁니다." if passed else "아직 생일 전이므로 1을 뺍니다."]
    return (f"{ko_date(birth)}에 태어난 사람은 {ko_date(on)}에 만 몇 살인가요?", str(age),
            {"kind": "age", "birth": list(birth), "on": list(on)}, steps)


def _weekday_of(rng, level):
    known = _random_date(rng)
    target = add_days(known, rng.randint(-1000, 1000))
    diff = to_ordinal(*target) - to_ordinal(*known)
    w0, w1 = weekday(*known), weekday(*target)
    steps = [f"두 날짜는 {abs(diff)}일 차이입니다.", f"{attach(str(abs(diff)), '을/를')} 7로 나눈 나머지는 {abs(diff) % 7}입니다.",
             f"{ko_weekday(w0)}에서 {'뒤로' if diff >= 0 else '앞으로'} {abs(diff) % 7}일이면 {ko_weekday(w1)}입니다."]
    return (f"{ko_date(known)}은 {ko_weekday(w0)}입니다. {ko_date(target)}은 무슨 요일인가요?",
            ko_weekday(w1), {"kind": "weekday_of", "known": list(known), "target": list(target)}, steps)


KINDS = {
    1: (_weekday_shift,),
    2: (_weekday_shift, _month_length),
    3: (_date_shift, _month_length),
    4: (_days_between, _age, _weekday_shift),
    5: (_weekday_of, _date_shift, _age),
}


def make(rng: random.Random, level: int) -> Draft:
    kind = rng.choice(KINDS[level])
    prompt, answer, meta, steps = kind(rng, level)
    meta["steps"] = steps
    key = {k: v for k, v in meta.items() if k != "steps"}
    return Draft(prompt, answer, meta, key=key)


_DATE = re.compile(r"(?<!\d)(\d{3,4})\s*(?:년|[-./])\s*(\d{1,2})\s*(?:월|[-./])\s*(\d{1,2})\s*일?")
_MONTH_DAY = re.compile(r"(?<!\d)(\d{1,2})\s*월\s*(\d{1,2})\s*일")
_WEEKDAY = re.compile(r"([월화수목금토일])(?:요일)?")


def parse_date(text: str, default_year: int | None = None) -> tuple[int, int, int] | None:
    t = normalize(text)
    m = _DATE.search(t)
    if m:
        return tuple(int(g) for g in m.groups())
    m = _MONTH_DAY.search(t)
    if m and default_year is not None:
        return (default_year, int(m.group(1)), int(m.group(2)))
    return None


def check(example: dict, answer: str) -> tuple[float, object]:
    meta, want = example["meta"], example["answer"]
    text = normalize(answer).strip()
    if want.endswith("요일"):
        m = _WEEKDAY.fullmatch(re.sub(r"(입니다|이에요|예요)$", "", text).strip())
        got = m.group(1) + "요일" if m else None
        return float(got == want), got
    if want.endswith("일") and "년" in want:
        want_date = parse_date(want)
        # The year may be left out when it is the start year (the question's own year).
        got = parse_date(text, default_year=meta["start"][0])
        return float(got == want_date), (list(got) if got else None)
    got = parse_number(text)
    if got is None:
        return 0.0, None
    return float(got == int(want)), int(got) if got.denominator == 1 else str(got)


def solution(example: dict) -> str:
    return "\n".join(example["meta"]["steps"] + [f"정답: {example['answer']}"])
