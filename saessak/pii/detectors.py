"""Korean PII detectors: regex candidates, then the official structure and check-digit rules.

Hangul is a word character for `re`, so `\\b` does not separate "010-1234-5678" from a particle
attached to it ("010-1234-5678로"). Every number is bounded with digit look-arounds instead:
no digit (or "digit + separator") right before it, no digit (or "separator + digit") right after.

Dense text (tables, CSV rows, CC lists) puts identifiers a space or a comma apart, so nothing here
may depend on what lies before an identifier beyond its own context window:
- every match is searched for, also one that starts inside a candidate that failed its check
  ("010 1234 5678 4111 1111 1111 1111": a 4-4-4-4 run across the two is tried first);
- a context word ("계좌", "사업자", "법인", "ISBN") counts only between the end of the previous
  identifier (or placeholder) and the candidate: a label belongs to the identifier that follows it
  (and to a list of the same type after it, see _context);
- overlapping candidates are resolved to the selection that covers the most text, so a long
  false candidate across two neighbours cannot remove both (ties: fewer spans, stronger types).
The rules and their measured recall: docs/PII.md.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import itertools
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
# E-mail: found from each "@" outwards (the local part backwards, the domain forwards), never by a
# search over a window before the "@", whose first match may be the previous address.
_EMAIL_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_IPV4 = re.compile(r"[0-9](?<![0-9.][0-9])(?<![vV][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])")
# At least two colons, so ordinary hex-looking words ("face", "add") fail on their first letters.
# A leading ":" may be a label's ("IP:fe80::1"); _ipv6_span drops it when the rest is the address.
_IPV6 = re.compile(r"[0-9A-Fa-f:](?<![0-9A-Fa-f:][0-9A-Fa-f:])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{1,37}(?![0-9A-Fa-f:])")

# Context words, searched in a short window before a candidate (see _context).
# Bank names that are also everyday words (우리 "we", 하나 "one", 국민 "the people", 기업
# "company") count only as "X은행", which 은행 already covers.
_ACCOUNT_CONTEXT = re.compile(
    r"계좌|통장|입금|송금|이체|예금주|은행|뱅크|농협|신협|새마을금고|우체국|수협|신한|카카오|토스|씨티|SC제일|"
    r"(?<![A-Za-z])(?:account|bank|KB|IBK|NH)(?![a-z])", re.IGNORECASE
)
_BRN_CONTEXT = re.compile(r"사업자|등록 ?번호|(?<![A-Za-z])business registration", re.IGNORECASE)
_DL_CONTEXT = re.compile(r"면허")
_CORP_CONTEXT = re.compile(r"법인")
_PERSON_CONTEXT = re.compile(r"주민|외국인")
_PERSON_OR_CORP = re.compile(r"주민|외국인|법인")
# ASCII words only as whole words: "ean" is inside "Korean", "v." inside "serv.", "doi" in "doing",
# and "v." starts the address "v.kim@...". (No look-ahead for a digit: the window ends right before
# the candidate, so the candidate's own first digit is out of a look-ahead's sight.)
_NOT_PII_CONTEXT = re.compile(
    r"버전|바코드|(?<![A-Za-z])(?:(?:ISBN|ISSN|DOI|EAN|GTIN|version)(?![A-Za-z])|(?:ver|v)\.(?! ?[A-Za-z]))",
    re.IGNORECASE,
)
_YEAR_AFTER = re.compile(r" ?년")
_WINDOW = 24
# An amount, not an identifier: a unit right after the number, ending a word or followed by a
# particle ("1000000000원을", "3000만 원"). A word that only starts with a unit syllable is no unit:
# "회사명" (회), "개인" (개), "만료" (만), "조회" (조), "원본" (원).
_AMOUNT_AFTER = re.compile(
    r" ?(?:(?:만|억|천|조)+ ?(?:원|달러|엔)?|원|달러|엔|불|%|개|명|건|회|KRW|USD|won)"
    r"(?:(?![A-Za-z가-힣])|(?:을|를|이|가|은|는|에|과|와|도|씩|만|짜리|어치|정도|가량|까지|부터|으로|로|이나|이고|이며"
    r"|이다|입니다|에서)(?![가-힣]))",
    re.IGNORECASE,
)
_LIST_SEPARATOR = re.compile(r" ?[,;/|·] ?|[ \t\n]|\r\n")  # between the items of a list
# Placeholders left by masking; the longest is "[DRIVER_LICENSE]" (16 characters).
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(t.upper() for t in PII_TYPES) + r")\]")

_FULLWIDTH = re.compile("[\uff01-\uff5e]+")
# Length-preserving map of full-width ASCII (０-９, －, ＠, Ａ-Ｚ...) to ASCII, so offsets stay valid.
# (re.sub touches only the rare full-width characters; str.translate would rebuild every one.)
def _to_ascii(m: re.Match) -> str:
    return "".join(chr(ord(c) - 0xFEE0) for c in m.group())


_NON_DIGITS = re.compile(r"[^0-9]+")


def _digits_of(s: str) -> str:
    return _NON_DIGITS.sub("", s)


def _matches(pattern: re.Pattern, text: str):
    """Every match of `pattern`, also those starting inside an earlier match (finditer skips them).

    The digit look-behinds keep a new match from starting inside a digit run, so in practice only
    space-separated groups ("1234 5678 ...") give overlapping matches; the validators sort them out.
    """
    search = pattern.search
    m = search(text)
    while m is not None:
        yield m
        m = search(text, m.start() + 1)


# A candidate is (type, start, end, confidence, need, unless, veto): `need` (a context pattern) must
# occur in its context window, `unless` must not, and with `veto` neither may _NOT_PII_CONTEXT.
def _registration_numbers(text: str, out: list) -> None:
    """13-digit YYMMDD-NNNNNNN numbers: RRN, FRN or CRN, by date, gender digit, check digits and context.

    A number with a real birth date and a resident (1-4) or foreigner (5-8) gender digit is a
    person's, whatever the CRN check digit says, unless 법인 is named before it. A CRN's serial
    starts with 0, so "110111-0xxxxxx" reads as a birth in 1811: with gender digit 0 or 9 a
    hyphenated number passing the CRN check is a CRN unless 주민/외국인 is named. A bare 13-digit
    string whose first six digits are not a date is a CRN only when 법인 is named.
    """
    for m in _matches(_REG13, text):
        d = m.group(1) + m.group(2)
        s, e = m.span()
        hyphenated = e - s >= 14 and text[s + 6 : e - 7].strip() != ""
        crn = v.crn_ok(d)
        if crn:
            out.append(("crn", s, e, "high", _CORP_CONTEXT, None, True))
        if not hyphenated and v.isbn13_ok(d):  # ISBNs are not written 6-7
            continue
        if v.rrn_structure_ok(d):
            person, conf = "rrn", "high" if v.rrn_checksum_ok(d) else "medium"
        elif v.frn_structure_ok(d):
            person, conf = "frn", "high" if v.frn_checksum_ok(d) else "medium"
        else:
            if crn and hyphenated:
                out.append(("crn", s, e, "high", None, _CORP_CONTEXT, True))
            continue
        if crn and hyphenated and d[6] in "90":
            out.append((person, s, e, conf, _PERSON_CONTEXT, _CORP_CONTEXT, True))
            out.append(("crn", s, e, "high", None, _PERSON_OR_CORP, True))
        else:  # issued since October 2020: no check digit, the valid date carries it ("medium")
            out.append((person, s, e, conf, None, _CORP_CONTEXT if crn else None, True))
    for m in _REG_PARTIAL.finditer(text):
        d = m.group(1) + m.group(2) + "000000"  # the masked digits do not enter the date check
        if v.rrn_structure_ok(d):
            out.append(("rrn", m.start(), m.end(), "medium", None, None, False))
        elif v.frn_structure_ok(d):
            out.append(("frn", m.start(), m.end(), "medium", None, None, False))


def _brn(text: str, out: list) -> None:
    for m in _BRN_DASHED.finditer(text):
        if v.brn_ok(_digits_of(m.group())):
            out.append(("brn", m.start(), m.end(), "high", None, None, True))
    # bare 10 digits: also needs 사업자 / 등록번호 before it
    for m in _BRN_PLAIN.finditer(text):
        if v.brn_ok(m.group()) and not _AMOUNT_AFTER.match(text, m.end()):
            out.append(("brn", m.start(), m.end(), "high", _BRN_CONTEXT, None, False))


def _cards(text: str, out: list) -> None:
    for m in _matches(_CARD, text):
        if v.luhn_ok(_digits_of(m.group())):
            out.append(("card", m.start(), m.end(), "high", None, None, True))


def _passports(text: str, out: list) -> None:
    for m in _PASSPORT.finditer(text):
        # Current format (M123A4567) is distinctive; the old letter+8 digits is "medium".
        conf = "high" if len(m.group()) == 9 and m.group()[4].isalpha() else "medium"
        out.append(("passport", m.start(), m.end(), conf, None, None, False))


def _driver_licenses(text: str, out: list) -> None:
    for m in _DL_CODE.finditer(text):
        if m.group()[:2] in _DL_REGION_CODES:
            out.append(("driver_license", m.start(), m.end(), "high", None, None, False))
    for m in _DL_NAME.finditer(text):
        out.append(("driver_license", m.start(), m.end(), "high", None, None, False))
    for m in _DL_PLAIN.finditer(text):
        if m.group()[:2] in _DL_REGION_CODES and not _AMOUNT_AFTER.match(text, m.end()):
            out.append(("driver_license", m.start(), m.end(), "medium", _DL_CONTEXT, None, False))


def _phones(text: str, out: list) -> None:
    for m in _matches(_PHONE, text):
        t = m.group()
        # "1592-1598년" is a span of years, not a 15XX service number
        if t[0] == "1" and _YEAR_AFTER.match(text, m.end()):
            continue
        # "0[3-6][1-5]" over-approximates the landline areas; keep only real ones.
        if t[0] == "0" and t[1] in "3456" and not t.startswith("050") and t[:3] not in _LANDLINE_AREAS:
            continue
        if t.startswith("(0") and t[2] in "3456" and t[1:4] not in _LANDLINE_AREAS:
            continue
        out.append(("phone", m.start(), m.end(), "high", None, None, False))


def _accounts(text: str, out: list) -> None:
    for m in _ACCOUNT.finditer(text):
        t = m.group()
        if not 10 <= len(_digits_of(t)) <= 14:
            continue
        # "계좌로 1000000000원": an amount, not an account (amounts are not written with hyphens)
        if t.isdigit() and _AMOUNT_AFTER.match(text, m.end()):
            continue
        out.append(("account", m.start(), m.end(), "medium", _ACCOUNT_CONTEXT, None, True))


def _emails(text: str, out: list) -> None:
    # Only around each "@": scanning all ASCII words of a long text for a local part is the slowest
    # thing this module could do.
    local, domain = _EMAIL_LOCAL, _EMAIL_DOMAIN.match
    at = text.find("@")
    while at != -1:
        s, lo = at, max(0, at - 65)
        while s > lo and text[s - 1] in local:
            s -= 1
        if at - s <= 64:  # a longer run is no local part (RFC 5321 limit)
            while s < at and text[s] == ".":  # a local part never starts with a dot ("…kim@")
                s += 1
            m = domain(text, at + 1) if s < at else None
            if m is not None:
                out.append(("email", s, m.end(), "high", None, None, False))
        at = text.find("@", at + 1)


def _ipv6_span(text: str, s: int, e: int) -> tuple[int, int] | None:
    """The valid IPv6 address in text[s:e], allowing for a label colon before it ("IP:fe80::1")
    or a colon after it ("fe80::1: 접속")."""
    spans = [(s, e)]
    if text[s] == ":":  # "IP:fe80::1", "IP:::1"
        spans.append((s + 1, e))
    if text[e - 1] == ":":  # "fe80::1: 접속"
        spans += [(a, e - 1) for a, _ in spans]
    for a, b in spans:
        t = text[a:b]
        if (t.count(":") >= 7 or "::" in t) and t != "::":
            try:
                ipaddress.IPv6Address(t)
            except ValueError:
                continue
            return a, b
    return None


def _ips(text: str, out: list) -> None:
    for m in _IPV4.finditer(text):
        t = m.group()
        try:
            ipaddress.IPv4Address(t)  # each octet 0-255, no leading zeros
        except ValueError:
            continue
        if len(t) == 7:  # four one-digit parts ("7.4.1.2") is how versions look, not hosts
            continue
        out.append(("ip", m.start(), m.end(), "high", None, None, True))
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            span = _ipv6_span(text, *m.span())
            if span is not None:
                out.append(("ip", *span, "high", None, None, False))


_DETECTORS = (_registration_numbers, _brn, _cards, _passports, _driver_licenses, _phones, _accounts, _emails, _ips)


def _context(text: str, cands: list) -> list:
    """Candidates whose context rules hold, as (type, start, end, confidence, listed), by start.

    A candidate's context window is the `_WINDOW` characters before it, cut at the end of the
    previous accepted candidate and after the last placeholder ("[PHONE]"): the label of one
    identifier must not decide the type of the next, and masking must not change what is found.
    One exception keeps lists under one label ("계좌: 110-123-456789, 3333-01-1234567"): a
    candidate missing its label is still taken (`listed`) when only separators part it from an
    accepted one of its type; _resolve prefers any unlisted candidate for the same span.
    """
    cands.sort(key=lambda c: c[1])
    kept: list = []
    append, push, pop = kept.append, heapq.heappush, heapq.heappop
    open_ends: list[tuple[int, str]] = []  # heap: (end, type) of kept candidates not yet passed
    prev_end, prev_types = 0, set()
    for typ, s, e, conf, need, unless, veto in cands:
        listed = False
        if need is not None or unless is not None or veto:
            while open_ends and open_ends[0][0] <= s:  # (only here: most candidates need no context)
                end, t = pop(open_ends)
                if end > prev_end:
                    prev_end, prev_types = end, {t}
                elif end == prev_end:
                    prev_types.add(t)
            lo = max(s - _WINDOW, prev_end)
            if text.find("]", lo, s) != -1:
                for p in _PLACEHOLDER.finditer(text, max(lo - 16, 0), s):
                    lo = max(lo, p.end())
            if need is not None and need.search(text, lo, s) is None:
                if typ not in prev_types or s - prev_end > 3 or not _LIST_SEPARATOR.fullmatch(text, prev_end, s):
                    continue
                listed = True
            if unless is not None and unless.search(text, lo, s) is not None:
                continue
            if veto and _NOT_PII_CONTEXT.search(text, lo, s) is not None:
                continue
        append((typ, s, e, conf, listed))
        push(open_ends, (e, typ))
    return kept


def _resolve(cands: list) -> list:
    """Non-overlapping selection covering the most characters; ties: fewer spans, fewer listed
    (see _context), stronger types.

    Weighted interval scheduling over candidates sorted by end. Greedy "longest first" would let
    one false 4-4-4-4 run across a phone number and a card remove both.
    """
    if all(a[2] <= b[1] for a, b in itertools.pairwise(cands)):
        return cands  # the usual case (sorted by start): nothing overlaps
    order = sorted(cands, key=lambda c: c[2])
    ends = [c[2] for c in order]
    best = [(0, 0, 0, 0)]  # best[i]: score of the best selection among order[:i]
    prev = [0]  # prev[i]: how many of order[:i-1] end at or before order[i-1] starts; -1: not taken
    for i, (typ, s, e, _, listed) in enumerate(order):
        j = bisect.bisect_right(ends, s, 0, i)
        b = best[j]
        take = (b[0] + e - s, b[1] - 1, b[2] - listed, b[3] - _RANK[typ])
        better = take > best[i]
        best.append(take if better else best[i])
        prev.append(j if better else -1)
    taken = []
    i = len(order)
    while i > 0:
        if prev[i] == -1:
            i -= 1
        else:
            taken.append(order[i - 1])
            i = prev[i]
    taken.reverse()
    return taken


def find_pii(text: str) -> list[Entity]:
    """All PII entities in `text`, non-overlapping, ordered by start offset (character indices)."""
    scan = _FULLWIDTH.sub(_to_ascii, text)
    cands: list = []
    for detect in _DETECTORS:
        detect(scan, cands)
    if not cands:
        return []
    cands = _resolve(_context(scan, cands))
    return [Entity(t, s, e, text[s:e], conf) for t, s, e, conf, _ in cands]
