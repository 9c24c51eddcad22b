"""Check-digit validators: known values and hypothesis properties."""

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from saessak.pii import validators as v

digits = lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)


def test_known_values():
    assert v.rrn_checksum_ok("9001011234568")  # worked example: sum 124, 11 - 124 % 11 = 8
    assert not v.rrn_checksum_ok("9001011234567")
    assert v.luhn_ok("4111111111111111") and v.luhn_ok("378282246310005")
    assert not v.luhn_ok("4111111111111112")
    assert v.brn_check_digit("123456789") == (10 - (1 + 6 + 21 + 4 + 15 + 42 + 7 + 24 + 45 + 4) % 10) % 10
    assert v.isbn13_ok("9788936433598") and not v.isbn13_ok("9788936433599")


def test_birth_date_and_century():
    assert v.birth_date("9001011") == dt.date(1990, 1, 1)
    assert v.birth_date("0501013") == dt.date(2005, 1, 1)
    assert v.birth_date("8501019") == dt.date(1885, 1, 1)
    assert v.birth_date("0002293") == dt.date(2000, 2, 29)
    assert v.birth_date("0102293") is None  # 2001 is not a leap year
    assert v.birth_date("9013011") is None  # month 13


@given(digits(12))
def test_rrn_exactly_one_check_digit_passes(body):
    passing = [c for c in "0123456789" if v.rrn_checksum_ok(body + c)]
    assert passing == [str(v.rrn_check_digit(body + "0"))]


@given(digits(12))
def test_frn_check_differs_from_rrn_by_two(body):
    assert v.frn_check_digit(body + "0") == (v.rrn_check_digit(body + "0") + 2) % 10


@given(digits(9))
def test_brn_exactly_one_check_digit_passes(body):
    assert sum(v.brn_ok(body + c) for c in "0123456789") == 1


@given(digits(12))
def test_crn_exactly_one_check_digit_passes(body):
    assert sum(v.crn_ok(body + c) for c in "0123456789") == 1


@given(st.text(alphabet="0123456789", min_size=1, max_size=18))
def test_luhn_one_completion_and_single_digit_errors_detected(payload):
    full = payload + str(v.luhn_check_digit(payload))
    assert v.luhn_ok(full)
    # Luhn catches every single-digit substitution
    for i in range(len(full)):
        for c in "0123456789":
            if c != full[i]:
                assert not v.luhn_ok(full[:i] + c + full[i + 1 :])


@given(digits(13))
@settings(max_examples=300)
def test_structure_agrees_with_datetime(d):
    century = {"9": 1800, "0": 1800, "1": 1900, "2": 1900, "5": 1900, "6": 1900,
               "3": 2000, "4": 2000, "7": 2000, "8": 2000}[d[6]]
    try:
        valid = dt.date(century + int(d[:2]), int(d[2:4]), int(d[4:6])) <= dt.date.today()
    except ValueError:
        valid = False
    assert v.rrn_structure_ok(d) == (valid and d[6] in "123490")
    assert v.frn_structure_ok(d) == (valid and d[6] in "5678")


def test_non_digit_input_rejected():
    assert not v.luhn_ok("") and not v.luhn_ok("4111-1111")
    assert not v.brn_ok("12345678９0") and not v.crn_ok("12345") and not v.rrn_structure_ok("abc")
