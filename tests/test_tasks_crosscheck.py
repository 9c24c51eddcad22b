"""Graders checked against independent references; the agreement rates are asserted here.

Default sizes keep this file to a few seconds plus Kiwi's start-up; `--runslow` runs the large
versions (the numbers reported in docs/TASKS.md come from bench/tasks_crosscheck.py).
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saessak.tasks import calendar_task, crosscheck, josa, readings

# ---------------------------------------------------------------- numbers: hand-checked readings

HAND_CHECKED = crosscheck.NUMBER_READINGS


@pytest.mark.parametrize("value,counter,system,reading", HAND_CHECKED)
def test_numbers_hand_checked_table(value, counter, system, reading):
    assert readings.read(value, counter, system) == reading


def test_hand_checked_table_covers_every_counter():
    covered = {c for _, c, _, _ in HAND_CHECKED if c}
    assert covered >= set(readings.NATIVE_COUNTERS) - {"잔"} | set(readings.SINO_COUNTERS)


@given(st.integers(min_value=0, max_value=readings.MAX_SINO))
@settings(max_examples=400, deadline=None)
def test_sino_round_trip(n):
    text = readings.sino(n)
    assert readings.parse_sino(text) == n
    assert not text.startswith("일만") and "일천" not in text and "일백" not in text and "일십" not in text


@given(st.integers(min_value=1, max_value=99), st.booleans())
@settings(max_examples=200, deadline=None)
def test_native_round_trip(n, before_counter):
    assert readings.parse_native(readings.native(n, before_counter)) == n


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


def test_kiwi_cross_check_catches_a_broken_rule(monkeypatch):
    # Forget the ㄹ exception of 으로/로: Kiwi must disagree on ㄹ-final words (연필으로).
    monkeypatch.setattr(josa, "RIEUL_FINAL", -1)
    r = crosscheck.josa_vs_kiwi(n_words=400, n_numbers=50)
    assert r["kiwi_dictionary"]["rate"] < 1.0
    assert r["disagreements"] and all(d["pair"] == "으로/로" for d in r["disagreements"])


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
