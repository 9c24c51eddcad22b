"""Cross-checks of the graders against independent references, as agreement rates.

- josa: our particle choice vs kiwipiepy's `Kiwi.join` on nouns from Kiwi's own dictionary (and
  from a corpus when given). Kiwi reads digits and Latin letters as if vowel-final (it writes
  '3를'), so for those we give Kiwi the spoken reading (삼, 에이티엠) and compare the particle.
- numbers: readings -> digits round trip over a range (the hand-checked table is in the tests).
- calendar: every generated answer recomputed with `datetime`.
- arith: every generated answer recomputed by evaluating the recorded expression.

Used by tests (small sizes) and `bench/tasks_crosscheck.py` (the numbers in docs/TASKS.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from fractions import Fraction

from saessak.hangul import is_syllable

# (value, counter or None, system for counter-less items, expected reading), each checked by hand.
NUMBER_READINGS = [
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


# pair -> (base form, Kiwi tag) for Kiwi.join
KIWI_PARTICLES = {
    "은/는": ("은", "JX"), "이/가": ("이", "JKS"), "을/를": ("을", "JKO"), "과/와": ("과", "JKB"),
    "아/야": ("아", "JKV"), "이나/나": ("이나", "JX"), "이랑/랑": ("이랑", "JKB"), "으로/로": ("으로", "JKB"),
}


@functools.lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()  # loads its bundled model (a few seconds); no download


def kiwi_nouns(kiwi) -> list[str]:
    """Hangul-only common nouns (NNG) in Kiwi's built-in dictionary, sorted and unique."""
    words, i = set(), 0
    while True:
        try:
            m = kiwi.morpheme(i)
        except Exception:  # past the last id Kiwi raises; the id space has no other end marker
            break
        i += 1
        if m.tag == "NNG" and all(map(is_syllable, m.form)):
            words.add(m.form)
    return sorted(words)


def corpus_nouns(kiwi, texts) -> list[str]:
    words = set()
    for text in texts:
        for tok in kiwi.tokenize(text):
            if tok.tag in ("NNG", "NNP") and all(map(is_syllable, tok.form)):
                words.add(tok.form)
    return sorted(words)


def josa_vs_kiwi(n_words: int = 2000, seed: int = 0, corpus_texts=None, n_numbers: int = 300) -> dict:
    """Agreement of `josa.particle` with Kiwi.join, per word source, over all eight pairs."""
    from saessak.tasks import josa

    kiwi = _kiwi()
    rng = random.Random(seed)
    nouns = kiwi_nouns(kiwi)
    sources = {"kiwi_dictionary": rng.sample(nouns, min(n_words, len(nouns))),
               "task_word_lists": sorted(set(josa.COMMON_WORDS + josa.RIEUL_WORDS + josa.RARE_WORDS + josa.NAMES))}
    if corpus_texts:
        sources["corpus"] = corpus_nouns(kiwi, corpus_texts)[:n_words]
    numbers = sorted({*range(0, 101), *(rng.randint(101, 10**9) for _ in range(n_numbers)),
                      *(10 ** k for k in range(2, 13))})
    spoken = {str(n): josa.reading(str(n)) for n in numbers}
    spoken.update({a: josa.reading(a) for a in josa.ACRONYMS})

    report, disagreements = {}, []
    for source, words in list(sources.items()) + [("digits_and_acronyms", sorted(spoken))]:
        agree = total = 0
        for word in words:
            said = spoken.get(word, word) if source == "digits_and_acronyms" else word
            for pair, (base, tag) in KIWI_PARTICLES.items():
                joined = kiwi.join([(said, "NNG"), (base, tag)])
                theirs = joined[len(said):] if joined.startswith(said) else None
                ours = josa.particle(word, pair)
                total += 1
                if theirs == ours:
                    agree += 1
                elif len(disagreements) < 20:
                    disagreements.append({"word": word, "pair": pair, "ours": ours, "kiwi": joined})
        report[source] = {"checked": total, "agree": agree, "rate": agree / total if total else 1.0}
    # What Kiwi does with raw digits, for the record (it ignores the spoken reading).
    raw_digit_agree = sum(kiwi.join([(str(n), "SN"), ("을", "JKO")])[len(str(n)):] == josa.particle(str(n), "을/를")
                          for n in range(0, 101))
    report["kiwi_raw_digits_0_100_agree"] = raw_digit_agree
    report["disagreements"] = disagreements
    return report


def numbers_round_trip(limit: int = 100_000, n_random: int = 20_000, seed: int = 0) -> dict:
    from saessak.tasks import readings

    rng = random.Random(seed)
    values = list(range(limit)) + [rng.randint(0, readings.MAX_SINO) for _ in range(n_random)]
    sino_ok = sum(readings.parse_sino(readings.sino(v)) == v for v in values)
    native_ok = sum(readings.parse_native(readings.native(v, c)) == v for v in range(1, 100) for c in (False, True))
    return {"sino_checked": len(values), "sino_agree": sino_ok, "native_checked": 198, "native_agree": native_ok}


def numbers_table() -> dict:
    from saessak.tasks import readings

    ok = sum(readings.read(v, c, s) == want for v, c, s, want in NUMBER_READINGS)
    return {"checked": len(NUMBER_READINGS), "agree": ok}


def numbers_vs_num2words(limit: int = 20_000, n_random: int = 5_000, seed: int = 0) -> dict | None:
    """Our Sino readings vs num2words (spaces ignored), and how much of the table it can express.

    None when num2words is not installed (it is not a dependency).
    """
    try:
        from num2words import num2words
    except ImportError:
        return None
    from saessak.tasks import readings

    rng = random.Random(seed)
    values = list(range(limit)) + [rng.randint(0, 10**16) for _ in range(n_random)]
    agree = sum(num2words(v, lang="ko").replace(" ", "") == readings.sino(v).replace(" ", "") for v in values)
    # num2words has one reading per number: no native system, no counter forms, no 유월/시월.
    table_agree = sum(num2words(v, lang="ko").replace(" ", "") == want.replace(" ", "")
                      for v, c, s, want in NUMBER_READINGS)
    return {"sino_checked": len(values), "sino_agree": agree, "table_checked": len(NUMBER_READINGS),
            "table_agree": table_agree}


def _date(parts) -> dt.date:
    return dt.date(*parts)


def calendar_reference(example: dict) -> str:
    """The answer to a calendar example computed with `datetime` alone."""
    meta = example["meta"]
    kind = meta["kind"]
    names = "월화수목금토일"
    if kind == "weekday_shift":
        return names[(meta["start_weekday"] + meta["days"]) % 7] + "요일"
    if kind == "month_length":
        y, m = meta["year"], meta["month"]
        first_next = dt.date(y + (m == 12), m % 12 + 1, 1)
        return str((first_next - dt.date(y, m, 1)).days)
    if kind == "date_shift":
        d = _date(meta["start"]) + dt.timedelta(days=meta["days"])
        return f"{d.year}년 {d.month}월 {d.day}일"
    if kind == "days_between":
        return str((_date(meta["end"]) - _date(meta["start"])).days)
    if kind == "age":
        birth, on = _date(meta["birth"]), _date(meta["on"])
        return str(on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day)))
    if kind == "weekday_of":
        return names[_date(meta["target"]).weekday()] + "요일"
    raise ValueError(f"unknown calendar kind {kind!r}")


def calendar_vs_datetime(n: int = 2000, seed: int = 0) -> dict:
    from saessak.tasks import calendar_task
    from saessak.tasks.registry import sample

    agree = total = 0
    for level in range(1, 6):
        for split in ("train", "test"):
            for ex in sample("calendar", split, n // 10, seed, level):
                total += 1
                agree += calendar_reference(ex) == ex["answer"]
    # The date functions themselves, day by day over 1899..2101 (covers 1900 and 2100).
    start = dt.date(1899, 1, 1)
    days_ok = days = 0
    for offset in range(0, (dt.date(2101, 12, 31) - start).days):
        d = start + dt.timedelta(days=offset)
        ours = calendar_task.to_ordinal(d.year, d.month, d.day)
        days += 1
        days_ok += (ours == d.toordinal() and calendar_task.from_ordinal(ours) == (d.year, d.month, d.day)
                    and calendar_task.weekday(d.year, d.month, d.day) == d.weekday())
    return {"examples_checked": total, "examples_agree": agree, "days_checked": days, "days_agree": days_ok}


def arith_vs_expression(n: int = 2000, seed: int = 0) -> dict:
    from saessak.tasks import arith
    from saessak.tasks.registry import sample

    agree = total = 0
    for level in range(1, 6):
        for split in ("train", "test"):
            for ex in sample("arith", split, n // 10, seed, level):
                total += 1
                agree += arith.evaluate(ex["meta"]["expr"]) == Fraction(ex["answer"])
    return {"checked": total, "agree": agree}
