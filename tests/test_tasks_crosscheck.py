"""Graders checked against independent references; the agreement rates are asserted here.

Default sizes keep this file to a few seconds plus Kiwi's start-up; `--runslow` runs the large
versions (the numbers reported in docs/TASKS.md come from bench/tasks_crosscheck.py).
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saessak.tasks import calendar_task, crosscheck, josa, numbers

# ---------------------------------------------------------------- numbers: hand-checked readings

# (value, counter or None, system for counter-less items, expected reading), each checked by hand.
HAND_CHECKED = [
    (0, None, "sino", "영"),
    (1, None, "sino", "일"),
    (10, None, "sino", "십"),  # no 일 before 십
    (11, None, "sino", "십일"),
    (20, None, "sino", "이십"),
    (100, None, "sino", "백"),  # no 일 before 백
    (101, None, "sino", "백일"),
    (110, None, "sino", "백십"),
    (1000, None, "sino", "천"),  # no 일 before 천
    (1010, None, "sino", "천십"),
    (2024, None, "sino", "이천이십사"),
    (10000, None, "sino", "만"),  # no 일 before 만
    (10001, None, "sino", "만 일"),
    (11000, None, "sino", "만 천"),
    (32500, None, "sino", "삼만 이천오백"),
    (100000, None, "sino", "십만"),
    (1000000, None, "sino", "백만"),
    (10000000, None, "sino", "천만"),
    (100000000, None, "sino", "일억"),  # 억 keeps its 일
    (100010000, None, "sino", "일억 만"),
    (123456789, None, "sino", "일억 이천삼백사십오만 육천칠백팔십구"),
    (1000000000000, None, "sino", "일조"),
    (1, None, "native", "하나"),
    (20, None, "native", "스물"),
    (99, None, "native", "아흔아홉"),
    (1, "개", None, "한 개"),
    (2, "명", None, "두 명"),
    (3, "마리", None, "세 마리"),
    (4, "살", None, "네 살"),
    (20, "살", None, "스무 살"),  # 스물 -> 스무 before a counter
    (21, "살", None, "스물한 살"),
    (22, "개", None, "스물두 개"),
    (33, "명", None, "서른세 명"),
    (44, "마리", None, "마흔네 마리"),
    (5, "개", None, "다섯 개"),
    (10, "시", None, "열 시"),
    (12, "시", None, "열두 시"),
    (11, "권", None, "열한 권"),
    (30, "분", None, "삼십 분"),
    (15, "초", None, "십오 초"),
    (10000, "원", None, "만 원"),
    (15000, "원", None, "만 오천 원"),
    (2024, "년", None, "이천이십사 년"),
    (1, "월", None, "일월"),
    (6, "월", None, "유월"),  # 육월 -> 유월
    (10, "월", None, "시월"),  # 십월 -> 시월
    (11, "월", None, "십일월"),
    (3, "층", None, "삼 층"),
    (6, "개월", None, "육 개월"),
    (2, "인분", None, "이 인분"),
]


@pytest.mark.parametrize("value,counter,system,reading", HAND_CHECKED)
def test_numbers_hand_checked_table(value, counter, system, reading):
    assert numbers.read(value, counter, system) == reading


def test_hand_checked_table_covers_every_counter():
    covered = {c for _, c, _, _ in HAND_CHECKED if c}
    assert covered >= set(numbers.NATIVE_COUNTERS) - {"잔"} | set(numbers.SINO_COUNTERS)


@given(st.integers(min_value=0, max_value=numbers.MAX_SINO))
@settings(max_examples=400, deadline=None)
def test_sino_round_trip(n):
    text = numbers.sino(n)
    assert numbers.parse_sino(text) == n
    assert not text.startswith("일만") and "일천" not in text and "일백" not in text and "일십" not in text


@given(st.integers(min_value=1, max_value=99), st.booleans())
@settings(max_examples=200, deadline=None)
def test_native_round_trip(n, before_counter):
    assert numbers.parse_native(numbers.native(n, before_counter)) == n


@given(st.integers(min_value=1, max_value=10**12))
@settings(max_examples=200, deadline=None)
def test_to_digits_examples_are_graded_by_value(n):
    ex = {"task": "numbers", "answer": str(n), "prompt": "",
          "meta": {"value": n, "system": "sino", "counter": None, "direction": "to_digits"}}
    from saessak.tasks import grade

    assert grade(ex, f"정답: {n:,}")["correct"] and not grade(ex, f"정답: {n + 1}")["correct"]


def test_numbers_round_trip_rates():
    r = crosscheck.numbers_round_trip(limit=20_000, n_random=2_000)
    assert r["sino_agree"] == r["sino_checked"] == 22_000
    assert r["native_agree"] == r["native_checked"] == 198


# ---------------------------------------------------------------- josa

@pytest.mark.parametrize("word,pair,form", [
    ("사과", "을/를", "를"), ("책", "을/를", "을"), ("서울", "으로/로", "로"), ("연필", "으로/로", "로"),
    ("집", "으로/로", "으로"), ("3", "을/를", "을"), ("2", "을/를", "를"), ("1", "으로/로", "로"),
    ("10", "이/가", "이"), ("100", "은/는", "은"), ("1000", "과/와", "과"), ("10000", "이나/나", "이나"),
    ("0", "을/를", "을"), ("TV", "을/를", "를"), ("URL", "으로/로", "로"), ("KTX", "이/가", "가"),
    ("ATM", "은/는", "은"), ("민준", "아/야", "아"), ("철수", "아/야", "야"), ("물", "이랑/랑", "이랑"),
])
def test_josa_known_cases(word, pair, form):
    assert josa.particle(word, pair) == form


def test_josa_agrees_with_kiwi():
    r = crosscheck.josa_vs_kiwi(n_words=400, n_numbers=50, corpus_texts=_corpus())
    for source in ("kiwi_dictionary", "task_word_lists", "digits_and_acronyms", "corpus"):
        assert r[source]["checked"] > 100, source
        assert r[source]["rate"] == 1.0, (source, r["disagreements"])
    # Kiwi on raw digits ignores the reading; that is why digits go through `josa.reading`.
    assert r["kiwi_raw_digits_0_100_agree"] < 101


@pytest.mark.slow
def test_josa_agrees_with_kiwi_on_thousands_of_words():
    r = crosscheck.josa_vs_kiwi(n_words=20_000, n_numbers=2_000)
    assert r["kiwi_dictionary"]["checked"] == 160_000
    assert all(r[s]["rate"] == 1.0 for s in ("kiwi_dictionary", "task_word_lists", "digits_and_acronyms")), \
        r["disagreements"]


def _corpus():
    from tests.helpers import KOREAN_SAMPLE

    return KOREAN_SAMPLE * 3 + ["국민의 권리와 의무는 법률로 정한다. 대통령은 국가의 원수이며 외국에 대하여 국가를 대표한다.",
                                "서울특별시 종로구에 있는 경복궁은 조선 왕조의 법궁이었다. 관광객들이 궁궐과 박물관을 둘러보았다."]


# ---------------------------------------------------------------- calendar and arith

def test_calendar_agrees_with_datetime():
    r = crosscheck.calendar_vs_datetime(n=500)
    assert r["examples_agree"] == r["examples_checked"] == 500
    assert r["days_agree"] == r["days_checked"] > 70_000


@given(st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)), st.integers(-5000, 5000))
@settings(max_examples=300, deadline=None)
def test_calendar_functions_match_datetime_anywhere(d, shift):
    ymd = (d.year, d.month, d.day)
    assert calendar_task.to_ordinal(*ymd) == d.toordinal()
    assert calendar_task.weekday(*ymd) == d.weekday()
    try:
        want = d + dt.timedelta(days=shift)
    except OverflowError:
        return
    if want.year >= 1:
        assert calendar_task.add_days(ymd, shift) == (want.year, want.month, want.day)


def test_leap_years_and_age_rule():
    assert [calendar_task.days_in_month(y, 2) for y in (1900, 2000, 2023, 2024, 2100)] == [28, 29, 28, 29, 28]
    birth = (2000, 6, 28)
    assert calendar_task.age_on(birth, (2023, 6, 27)) == 22
    assert calendar_task.age_on(birth, (2023, 6, 28)) == 23


def test_arith_answers_match_their_expressions():
    r = crosscheck.arith_vs_expression(n=1000)
    assert r["agree"] == r["checked"] == 1000


def test_arith_evaluator_allows_only_arithmetic():
    from saessak.tasks.arith import evaluate

    assert evaluate("(800*4+1500*2)*(10-1)/10") == 5580
    for bad in ("__import__('os')", "2**10", "1.5*2", "x+1"):
        with pytest.raises(ValueError):
            evaluate(bad)


@pytest.mark.slow
def test_large_cross_checks():
    assert crosscheck.calendar_vs_datetime(n=20_000)["examples_agree"] == 20_000
    assert crosscheck.arith_vs_expression(n=20_000)["agree"] == 20_000
    r = crosscheck.numbers_round_trip(limit=1_000_000, n_random=100_000)
    assert r["sino_agree"] == r["sino_checked"]
