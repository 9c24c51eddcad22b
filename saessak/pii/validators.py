"""Check-digit and structure rules for Korean identifiers (pure functions on digit strings).

Each validator takes the identifier's digits only (separators already removed) and returns a bool.
They are written from the published rules:

- 주민등록번호 / 외국인등록번호 (RRN / FRN): YYMMDD + a gender/century digit + 6 digits. The
  7th digit fixes the century (9,0: 1800s; 1,2,5,6: 1900s; 3,4,7,8: 2000s), so the birth date can
  be checked exactly. Numbers issued before October 2020 end with a check digit over weights
  2..9,2..5 (RRN: (11 - s % 11) % 10; FRN: (13 - s % 11) % 10); newer numbers have a random last
  digit, so the check digit only raises confidence.
- 사업자등록번호 (BRN, 10 digits): weights 1,3,7,1,3,7,1,3,5 plus the tens of 9th digit * 5.
- 법인등록번호 (CRN, 13 digits): weights 1,2 alternating over 12 digits, check = (10 - s % 10) % 10.
- Payment cards: the Luhn mod-10 rule.
- ISBN-13: weights 1,3 alternating, total divisible by 10 (used to reject look-alikes).
"""

from __future__ import annotations

import datetime as _dt

_CENTURY_BY_DIGIT = {"9": 1800, "0": 1800, "1": 1900, "2": 1900, "5": 1900, "6": 1900,
                     "3": 2000, "4": 2000, "7": 2000, "8": 2000}
RRN_GENDER_DIGITS = frozenset("123490")
FRN_GENDER_DIGITS = frozenset("5678")


def _digits(value: str, n: int) -> list[int] | None:
    if len(value) != n or not value.isascii() or not value.isdigit():
        return None
    return [ord(c) - 48 for c in value]


def birth_date(digits13: str) -> _dt.date | None:
    """The birth date encoded in an RRN/FRN (first six digits + century digit), or None if invalid."""
    if len(digits13) < 7 or not digits13[:7].isascii() or not digits13[:7].isdigit():
        return None
    century = _CENTURY_BY_DIGIT.get(digits13[6])
    if century is None:
        return None
    try:
        return _dt.date(century + int(digits13[0:2]), int(digits13[2:4]), int(digits13[4:6]))
    except ValueError:
        return None


def is_yymmdd(six: str) -> bool:
    """True when six digits read as a date in some century (used to reject 13-digit look-alikes)."""
    if len(six) != 6 or not six.isdigit():
        return False
    yy, mm, dd = int(six[:2]), int(six[2:4]), int(six[4:6])
    # Feb 29 exists in 2000 and 1900+yy%4==0 (except 1900): any leap century will do.
    for century in (2000, 1900):
        try:
            _dt.date(century + yy, mm, dd)
            return True
        except ValueError:
            continue
    return False


_REG_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)


def _registration_sum(d: list[int]) -> int:
    return sum(w * x for w, x in zip(_REG_WEIGHTS, d))


def _born(value: str) -> bool:
    """A real birth date that is not in the future (2088-01-23 is a barcode, not a person)."""
    born = birth_date(value)
    return born is not None and born <= _dt.date.today()


def rrn_structure_ok(value: str) -> bool:
    """13 digits, a resident gender digit (1-4, 9, 0) and a real, past birth date."""
    return _digits(value, 13) is not None and value[6] in RRN_GENDER_DIGITS and _born(value)


def frn_structure_ok(value: str) -> bool:
    """13 digits, a foreigner gender digit (5-8) and a real, past birth date."""
    return _digits(value, 13) is not None and value[6] in FRN_GENDER_DIGITS and _born(value)


def rrn_check_digit(value: str) -> int:
    d = _digits(value, 13)
    if d is None:
        raise ValueError(f"RRN needs 13 digits: {value!r}")
    return (11 - _registration_sum(d) % 11) % 10


def frn_check_digit(value: str) -> int:
    d = _digits(value, 13)
    if d is None:
        raise ValueError(f"FRN needs 13 digits: {value!r}")
    return (13 - _registration_sum(d) % 11) % 10


def rrn_checksum_ok(value: str) -> bool:
    """The legacy (pre-October 2020) RRN check digit matches."""
    return _digits(value, 13) is not None and rrn_check_digit(value) == int(value[12])


def frn_checksum_ok(value: str) -> bool:
    return _digits(value, 13) is not None and frn_check_digit(value) == int(value[12])


_BRN_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)


def brn_check_digit(value: str) -> int:
    """Check digit of a 사업자등록번호 from its first nine digits (a 9- or 10-digit string)."""
    d = _digits(value[:9], 9)
    if d is None:
        raise ValueError(f"BRN needs 9 leading digits: {value!r}")
    s = sum(w * x for w, x in zip(_BRN_WEIGHTS, d)) + (d[8] * 5) // 10
    return (10 - s % 10) % 10


def brn_ok(value: str) -> bool:
    return _digits(value, 10) is not None and brn_check_digit(value) == int(value[9])


def crn_check_digit(value: str) -> int:
    """Check digit of a 법인등록번호 from its first twelve digits."""
    d = _digits(value[:12], 12)
    if d is None:
        raise ValueError(f"CRN needs 12 leading digits: {value!r}")
    s = sum(x * (1 if i % 2 == 0 else 2) for i, x in enumerate(d))
    return (10 - s % 10) % 10


def crn_ok(value: str) -> bool:
    return _digits(value, 13) is not None and crn_check_digit(value) == int(value[12])


def luhn_ok(value: str) -> bool:
    """Luhn mod-10: double every second digit from the right; the total must end in 0."""
    if not value or not value.isascii() or not value.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed(value)):
        x = ord(c) - 48
        if i % 2 == 1:
            x *= 2
            if x > 9:
                x -= 9
        total += x
    return total % 10 == 0


def luhn_check_digit(payload: str) -> int:
    """The digit that makes `payload + digit` pass Luhn."""
    for c in "0123456789":
        if luhn_ok(payload + c):
            return int(c)
    raise AssertionError("unreachable: one of ten digits always completes Luhn")


def isbn13_ok(value: str) -> bool:
    d = _digits(value, 13)
    if d is None or not value.startswith(("978", "979")):
        return False
    return sum(x * (1 if i % 2 == 0 else 3) for i, x in enumerate(d)) % 10 == 0
