"""Valid Korean identifiers built with the official check-digit rules, for the PII tests."""

from saessak.pii import validators as v


def rrn(yymmdd: str, gender: str, serial5: str = "23456", sep: str = "-") -> str:
    """An RRN with a correct legacy check digit."""
    body = yymmdd + gender + serial5
    return f"{yymmdd}{sep}{gender}{serial5}{v.rrn_check_digit(body + '0')}"


def rrn_bad_check(yymmdd: str, gender: str, serial5: str = "23456", sep: str = "-") -> str:
    """An RRN-shaped number whose last digit is NOT the legacy check digit (post-2020 style)."""
    body = yymmdd + gender + serial5
    wrong = (v.rrn_check_digit(body + "0") + 1) % 10
    return f"{yymmdd}{sep}{gender}{serial5}{wrong}"


def frn(yymmdd: str, gender: str, serial5: str = "23456", sep: str = "-") -> str:
    body = yymmdd + gender + serial5
    return f"{yymmdd}{sep}{gender}{serial5}{v.frn_check_digit(body + '0')}"


def brn(first9: str, sep: str = "-") -> str:
    d = first9 + str(v.brn_check_digit(first9))
    return f"{d[:3]}{sep}{d[3:5]}{sep}{d[5:]}"


def crn(first12: str, sep: str = "-") -> str:
    d = first12 + str(v.crn_check_digit(first12))
    return f"{d[:6]}{sep}{d[6:]}"


def card(payload: str, groups=(4, 4, 4, 4), sep: str = "-") -> str:
    d = payload + str(v.luhn_check_digit(payload))
    parts, i = [], 0
    for g in groups:
        parts.append(d[i : i + g])
        i += g
    return sep.join(parts)


def luhn_fail(payload15: str) -> str:
    return payload15 + str((v.luhn_check_digit(payload15) + 1) % 10)
