"""Korean PII detectors: regex candidates, then the official structure and check-digit rules.

Hangul is a word character for `re`, so `\\b` does not separate "010-1234-5678" from a particle
attached to it ("010-1234-5678로"). Every number is bounded with digit look-arounds instead:
no digit (or "digit + separator") right before it, no digit (or "separator + digit") right after.

Candidates from all detectors are resolved to non-overlapping entities: the longer span wins
(an e-mail that contains a phone number stays an e-mail), ties go to the stronger type.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass

from saessak.pii import validators as v

# Type names, in tie-break order (stronger first). The CLI and the data card use these names.
PII_TYPES = ("rrn", "frn", "crn", "brn", "card", "driver_license", "passport", "phone", "account", "email", "ip")
_RANK = {t: i for i, t in enumerate(PII_TYPES)}


@dataclass(frozen=True)
class Entity:
    type: str
    start: int  # character offset into the text, inclusive
    end: int  # character offset, exclusive
    text: str
    # "high" when a check digit or an unambiguous format confirms it; "medium" when only the
    # structure does (post-2020 RRNs have no check digit, accounts rest on context).
    confidence: str = "high"

    def to_json(self) -> dict:
        return {"type": self.type, "start": self.start, "end": self.end, "text": self.text}


# Number boundaries (see module docstring). Each pattern starts with a plain character class and
# puts its left boundary check *after* the first character ("this digit is not preceded by a
# digit"): a leading look-behind would stop `re` from skipping ahead to candidate characters, which
# makes the scan several times slower on prose.
_LB = r"(?<![0-9][0-9])(?<![0-9][-.][0-9])"  # after the first digit: no digit / "digit-" before it
_R = r"(?![0-9]|[-.][0-9])"
_H = r"[-\u2010\u2011\u2012\u2013]"  # hyphen and its typographic look-alikes

_REG13 = re.compile(r"([0-9]" + _LB + r"[0-9]{5})(?: ?" + _H + r" ?| ?)([0-9]{7})" + _R)
# Partly masked as printed on forms ("900101-1******"): birth date and sex still identify.
_REG_PARTIAL = re.compile(r"([0-9]" + _LB + r"[0-9]{5}) ?" + _H + r" ?([0-9])[*xX●○]{6}")
_BRN_DASHED = re.compile(r"[0-9]" + _LB + r"[0-9]{2}" + _H + r"[0-9]{2}" + _H + r"[0-9]{5}" + _R)
_BRN_PLAIN = re.compile(r"[1-9]" + _LB + r"[0-9]{9}" + _R)
_CARD = re.compile(
    r"[0-9]" + _LB + r"[0-9]{3}(?:([- ]?)[0-9]{4}\1[0-9]{4}\1[0-9]{4}"  # 16 digits, 4-4-4-4
    r"|([- ]?)[0-9]{6}\2[0-9]{5})" + _R  # 15 digits, 4-6-5 (AMEX)
)
_PASSPORT = re.compile(r"[MSRODG](?<![0-9A-Za-z][MSRODG])(?:[0-9]{3}[A-Z][0-9]{4}|[0-9]{8})(?![0-9A-Za-z])")
_REGION_NAMES = "서울|부산|경기북부|경기|강원|충북|충남|전북|전남|경북|경남|제주|대구|인천|광주|대전|울산|세종"
_DL_CODE = re.compile(r"[12]" + _LB + r"[0-9]" + _H + r"[0-9]{2}" + _H + r"[0-9]{6}" + _H + r"[0-9]{2}" + _R)
_DL_NAME = re.compile(r"(?:" + _REGION_NAMES + r") ?[0-9]{2}" + _H + r"[0-9]{6}" + _H + r"[0-9]{2}" + _R)
_DL_PLAIN = re.compile(r"[12]" + _LB + r"[0-9]{11}" + _R)
_DL_REGION_CODES = frozenset(["11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24",
                              "25", "26", "28"])
_PHONE = re.compile(
    # mobile (010, legacy 011/016-019), internet phone 070, personal 050X, landlines
    r"0" + _LB + r"(?:1[016789]|70|50[2-8]|2|[3-6][1-5])([-. ]?)[0-9]{3,4}\1[0-9]{4}" + _R
    + r"|\((?:02|0[3-6][1-5]|01[016789]|070)\) ?[0-9]{3,4}[-. ][0-9]{4}" + _R
    + r"|1" + _LB + r"[568][0-9]{2}" + _H + r"[0-9]{4}" + _R  # service numbers 15XX/16XX/18XX need the hyphen
    + r"|\+82[-. ]?(?:\(0\)|0)?(?:1[016789]|70|50[2-8]|2|[3-6][1-5])[-. ]?[0-9]{3,4}[-. ]?[0-9]{4}" + _R
)
_LANDLINE_AREAS = frozenset({"031", "032", "033", "041", "042", "043", "044", "051", "052", "053", "054",
                             "055", "061", "062", "063", "064"})
_ACCOUNT = re.compile(r"[0-9]" + _LB + r"(?:[0-9]{1,5}(?:" + _H + r"[0-9]{2,7}){1,4}|[0-9]{9,13})" + _R)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_IPV4 = re.compile(r"[0-9](?<![0-9.][0-9])(?<![vV][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])")
# At least two colons, so ordinary hex-looking words ("face", "add") fail on their first letters.
_IPV6 = re.compile(r"[0-9A-Fa-f:](?<![0-9A-Fa-f:][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}:[0-9A-Fa-f:]{1,37}(?![0-9A-Fa-f:])")

# Context words, searched in a short window before a candidate.
# Bank names that are also everyday words (우리 "we", 하나 "one", 국민 "the people", 기업
# "company") count only as "X은행", which 은행 already covers.
_ACCOUNT_CONTEXT = re.compile(
    r"계좌|통장|입금|송금|이체|예금주|은행|뱅크|농협|신협|새마을금고|우체국|수협|신한|카카오|토스|씨티|SC제일|"
    r"(?<![A-Za-z])(?:account|bank|KB|IBK|NH)(?![a-z])", re.IGNORECASE
)
_BRN_CONTEXT = re.compile(r"사업자")
_DL_CONTEXT = re.compile(r"면허")
_CORP_CONTEXT = re.compile(r"법인")
_PERSON_CONTEXT = re.compile(r"주민|외국인")
# ASCII words only as whole words: "ean" is inside "Korean", "v." inside "serv.".
_NOT_PII_CONTEXT = re.compile(r"버전|바코드|(?<![A-Za-z])(?:ISBN|ISSN|DOI|EAN|GTIN|version|ver\.|v\.)", re.IGNORECASE)
_YEAR_AFTER = re.compile(r" ?년")
_WINDOW = 24
_AMOUNT_AFTER = re.compile(r" ?(?:원|만|억|천|조|달러|엔|불|%|개|명|건|회|KRW|USD|won)", re.IGNORECASE)

_FULLWIDTH = re.compile("[\uff01-\uff5e]+")
# Length-preserving map of full-width ASCII (０-９, －, ＠, Ａ-Ｚ...) to ASCII, so offsets stay valid.
# (re.sub touches only the rare full-width characters; str.translate would rebuild every one.)
def _to_ascii(m: re.Match) -> str:
    return "".join(chr(ord(c) - 0xFEE0) for c in m.group())


def _before(text: str, start: int, pattern: re.Pattern) -> bool:
    return pattern.search(text, max(0, start - _WINDOW), start) is not None


_NON_DIGITS = re.compile(r"[^0-9]+")


def _digits_of(s: str) -> str:
    return _NON_DIGITS.sub("", s)


def _registration_numbers(text: str, out: list) -> None:
    """13-digit YYMMDD-NNNNNNN numbers: RRN, FRN or CRN, by check digits, date and context.

    A bare 13-digit string whose first six digits are not a date is not PII unless 법인 is
    named nearby: a CRN is accepted on its check digit alone only in its hyphenated 6-7 form.
    """
    for m in _REG13.finditer(text):
        d = m.group(1) + m.group(2)
        s, e = m.span()
        if _before(text, s, _NOT_PII_CONTEXT) or v.isbn13_ok(d):
            continue
        corp, person = _before(text, s, _CORP_CONTEXT), _before(text, s, _PERSON_CONTEXT)
        hyphenated = e - s >= 14 and text[s + 6 : e - 7].strip() != ""
        rrn, frn = v.rrn_structure_ok(d), v.frn_structure_ok(d)
        crn = v.crn_ok(d) and not person and (corp or hyphenated)
        if crn and corp:
            out.append(("crn", s, e, "high"))
        elif rrn and v.rrn_checksum_ok(d):
            out.append(("rrn", s, e, "high"))
        elif frn and v.frn_checksum_ok(d):
            out.append(("frn", s, e, "high"))
        elif crn:
            out.append(("crn", s, e, "high"))
        elif rrn:  # issued since October 2020: no check digit, the valid date carries it
            out.append(("rrn", s, e, "medium"))
        elif frn:
            out.append(("frn", s, e, "medium"))
    for m in _REG_PARTIAL.finditer(text):
        d = m.group(1) + m.group(2) + "000000"  # the masked digits do not enter the date check
        if v.rrn_structure_ok(d):
            out.append(("rrn", m.start(), m.end(), "medium"))
        elif v.frn_structure_ok(d):
            out.append(("frn", m.start(), m.end(), "medium"))


def _brn(text: str, out: list) -> None:
    for m in _BRN_DASHED.finditer(text):
        if v.brn_ok(_digits_of(m.group())) and not _before(text, m.start(), _NOT_PII_CONTEXT):
            out.append(("brn", m.start(), m.end(), "high"))
    for m in _BRN_PLAIN.finditer(text):  # bare 10 digits: also needs 사업자 nearby
        if v.brn_ok(m.group()) and _before(text, m.start(), _BRN_CONTEXT) and not _AMOUNT_AFTER.match(text, m.end()):
            out.append(("brn", m.start(), m.end(), "high"))


def _cards(text: str, out: list) -> None:
    for m in _CARD.finditer(text):
        if v.luhn_ok(_digits_of(m.group())) and not _before(text, m.start(), _NOT_PII_CONTEXT):
            out.append(("card", m.start(), m.end(), "high"))


def _passports(text: str, out: list) -> None:
    for m in _PASSPORT.finditer(text):
        # Current format (M123A4567) is distinctive; the old letter+8 digits is "medium".
        out.append(("passport", m.start(), m.end(), "high" if len(m.group()) == 9 and m.group()[4].isalpha() else "medium"))


def _driver_licenses(text: str, out: list) -> None:
    for m in _DL_CODE.finditer(text):
        if m.group()[:2] in _DL_REGION_CODES:
            out.append(("driver_license", m.start(), m.end(), "high"))
    for m in _DL_NAME.finditer(text):
        out.append(("driver_license", m.start(), m.end(), "high"))
    for m in _DL_PLAIN.finditer(text):
        if (m.group()[:2] in _DL_REGION_CODES and _before(text, m.start(), _DL_CONTEXT)
                and not _AMOUNT_AFTER.match(text, m.end())):
            out.append(("driver_license", m.start(), m.end(), "medium"))


def _phones(text: str, out: list) -> None:
    for m in _PHONE.finditer(text):
        t = m.group()
        # "1592-1598년" is a span of years, not a 15XX service number
        if t[0] == "1" and _YEAR_AFTER.match(text, m.end()):
            continue
        # "0[3-6][1-5]" over-approximates the landline areas; keep only real ones.
        if t[0] == "0" and t[1] in "3456" and not t.startswith("050") and t[:3] not in _LANDLINE_AREAS:
            continue
        if t.startswith("(0") and t[2] in "3456" and t[1:4] not in _LANDLINE_AREAS:
            continue
        out.append(("phone", m.start(), m.end(), "high"))


def _accounts(text: str, out: list) -> None:
    for m in _ACCOUNT.finditer(text):
        n = len(_digits_of(m.group()))
        if _AMOUNT_AFTER.match(text, m.end()):  # "계좌로 1000000000원": an amount, not an account
            continue
        if 10 <= n <= 14 and _before(text, m.start(), _ACCOUNT_CONTEXT) and not _before(
            text, m.start(), _NOT_PII_CONTEXT
        ):
            out.append(("account", m.start(), m.end(), "medium"))


def _emails(text: str, out: list) -> None:
    # Search only around each "@": scanning all ASCII words of a long text for a local part is
    # the slowest thing this module could do. The look-behind still sees text before `pos`.
    at = text.find("@")
    while at != -1:
        m = _EMAIL.search(text, max(0, at - 65), at + 256)
        if m and m.start() <= at < m.end():
            out.append(("email", m.start(), m.end(), "high"))
            at = text.find("@", m.end())
        else:
            at = text.find("@", at + 1)


def _ips(text: str, out: list) -> None:
    for m in _IPV4.finditer(text):
        t = m.group()
        try:
            ipaddress.IPv4Address(t)  # each octet 0-255, no leading zeros
        except ValueError:
            continue
        if len(t) == 7:  # four one-digit parts ("7.4.1.2") is how versions look, not hosts
            continue
        if not _before(text, m.start(), _NOT_PII_CONTEXT):
            out.append(("ip", m.start(), m.end(), "high"))
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            t = m.group()
            if t.count(":") < 7 and "::" not in t:
                continue
            try:
                ipaddress.IPv6Address(t)
            except ValueError:
                continue
            if t != "::":
                out.append(("ip", m.start(), m.end(), "high"))


_DETECTORS = (_registration_numbers, _brn, _cards, _passports, _driver_licenses, _phones, _accounts, _emails, _ips)


def _resolve(cands: list) -> list:
    """Non-overlapping selection: longer spans first, then stronger types, then earlier."""
    cands.sort(key=lambda c: c[1])
    if all(a[2] <= b[1] for a, b in zip(cands, cands[1:])):
        return cands  # the usual case: nothing overlaps
    cands.sort(key=lambda c: (-(c[2] - c[1]), _RANK[c[0]], c[1]))
    starts: list[int] = []  # sorted starts of taken spans; taken spans never overlap
    ends: list[int] = []
    taken: list = []
    for c in cands:
        i = bisect.bisect_right(starts, c[1])
        if i > 0 and ends[i - 1] > c[1]:  # the span starting at or before c overlaps it
            continue
        if i < len(starts) and starts[i] < c[2]:  # the next span starts inside c
            continue
        starts.insert(i, c[1])
        ends.insert(i, c[2])
        taken.append(c)
    taken.sort(key=lambda c: c[1])
    return taken


def find_pii(text: str) -> list[Entity]:
    """All PII entities in `text`, non-overlapping, ordered by start offset (character indices)."""
    scan = _FULLWIDTH.sub(_to_ascii, text)
    cands: list = []
    for detect in _DETECTORS:
        detect(scan, cands)
    if len(cands) > 1:
        cands = _resolve(cands)
    return [Entity(t, s, e, text[s:e], conf) for t, s, e, conf in cands]
