"""Valid Korean identifiers built with the official check-digit rules, for the PII tests and bench/pii_recall.py."""

import datetime
import ipaddress

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


# ---- Random valid identifiers and dense documents (tests/test_pii_dense.py, bench/pii_recall.py) ----
#
# random_pii(rng, type) gives (prefix, value, suffix): `value` is the identifier; `prefix` is the label
# the rules require before it (계좌 for accounts, 사업자 for bare business numbers, 면허, 법인) or a
# decorative one, and may be empty; `suffix` is a closing bracket or a particle, or empty.

DENSE_TYPES = ("rrn", "frn", "crn", "brn", "card", "driver_license", "passport", "phone", "account", "email", "ip")
_LANDLINES = ("031", "032", "033", "041", "042", "043", "044", "051", "052", "053", "054", "055",
              "061", "062", "063", "064")
_DL_CODES = ("11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "28")
_REGIONS = ("서울", "부산", "경기", "경기북부", "강원", "충북", "충남", "전북", "전남", "경북", "경남", "제주", "대구",
            "인천", "광주", "대전", "울산", "세종")
# Registry office (4 digits) + company type (2): real CRNs start like this; 110111 even reads as 1811-01-11.
_CRN_HEADS = ("110111", "130111", "134511", "160111", "110115", "124611", "284411", "194211", "200111")
_DOMAINS = ("naver.com", "korea.kr", "gmail.com", "example.co.kr", "mail.example.com", "sub-domain.org",
            "daum.net", "snu.ac.kr", "kakao.com")
_PARTICLES = ("", "", "", "로", "이고", "입니다", "에게", ".")


def _num(rng, n: int, first: str = "0123456789") -> str:
    return rng.choice(first) + "".join(rng.choice("0123456789") for _ in range(n - 1))


def _birth(rng, centuries: dict) -> tuple[str, str]:
    """(YYMMDD, gender digit) of a real past birth date; `centuries` maps 1900/2000 to gender digits."""
    century = rng.choice(sorted(centuries))
    year = rng.randint(1935, 1999) if century == 1900 else rng.randint(2000, 2019)
    day = datetime.date(year, 1, 1) + datetime.timedelta(days=rng.randrange(365))
    return day.strftime("%y%m%d"), rng.choice(centuries[century])


def _suffix(rng) -> str:
    return rng.choice(_PARTICLES)


def random_pii(rng, pii_type: str) -> tuple[str, str, str]:
    """One valid identifier of `pii_type` in a random accepted format, with its label and particle."""
    r = rng.random()
    if pii_type in ("rrn", "frn"):
        if pii_type == "rrn":
            yymmdd, g = _birth(rng, {1900: "12", 2000: "34"})
            make = rrn if r < 0.7 else rrn_bad_check  # post-2020 numbers have no check digit
            labels = ("", "", "주민등록번호 ", "주민번호: ", "RRN ")
        else:
            yymmdd, g = _birth(rng, {1900: "56", 2000: "78"})
            make = frn
            labels = ("", "", "외국인등록번호 ", "외국인번호: ")
        value = make(yymmdd, g, _num(rng, 5), sep=rng.choice(["-", "-", "", " "]))
        return rng.choice(labels), value, _suffix(rng)
    if pii_type == "crn":
        if r < 0.5:  # hyphenated: the check digit is enough
            return rng.choice(["", "법인등록번호 "]), crn(rng.choice(_CRN_HEADS) + "0" + _num(rng, 5)), ""
        value = crn(_num(rng, 6, "123456789") + _num(rng, 6), sep=rng.choice(["-", ""]))
        return rng.choice(["법인등록번호 ", "법인번호: ", "법인 "]), value, _suffix(rng)
    if pii_type == "brn":
        if r < 0.5:
            return rng.choice(["", "사업자등록번호 ", "사업자: "]), brn(_num(rng, 9, "123456789")), ""
        value = brn(_num(rng, 9, "123456789"), sep="")
        prefix = rng.choice(["사업자등록번호 ", "사업자번호: ", "등록번호(", "사업자 등록번호 ", "Business registration: "])
        return prefix, value, ")" if prefix.endswith("(") else _suffix(rng)
    if pii_type == "card":
        sep = rng.choice(["-", " ", ""])
        if r < 0.8:
            value = card((rng.choice(["4", "51", "52", "55"]) + _num(rng, 14))[:15], sep=sep)
        else:  # AMEX, 4-6-5
            value = card("37" + _num(rng, 12), groups=(4, 6, 5), sep=sep)
        return rng.choice(["", "카드 ", "카드번호: "]), value, _suffix(rng)
    if pii_type == "passport":
        letter = rng.choice("MSRODG")
        if r < 0.7:  # current format, M123A4567
            value = letter + _num(rng, 3) + rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + _num(rng, 4)
        else:  # older letter + 8 digits
            value = letter + _num(rng, 8)
        return rng.choice(["", "여권번호 ", "여권: ", "Passport No. "]), value, _suffix(rng)
    if pii_type == "driver_license":
        tail = f"{_num(rng, 2)}-{_num(rng, 6)}-{_num(rng, 2)}"
        if r < 0.4:
            value = f"{rng.choice(_DL_CODES)}-{tail}"
        elif r < 0.7:
            value = rng.choice(_REGIONS) + rng.choice([" ", ""]) + tail
        else:  # bare 12 digits: needs 면허 before it
            return rng.choice(["운전면허번호 ", "면허번호: ", "운전면허 "]), rng.choice(_DL_CODES) + _num(rng, 10), ""
        return rng.choice(["", "운전면허 ", "면허: "]), value, _suffix(rng)
    if pii_type == "phone":
        sep = rng.choice(["-", "-", ".", " ", ""])
        value = rng.choice([
            f"010{sep}{_num(rng, 4)}{sep}{_num(rng, 4)}",
            f"01{rng.choice('16789')}{sep}{_num(rng, 3, '123456789')}{sep}{_num(rng, 4)}",
            f"02{sep}{_num(rng, rng.choice([3, 4]), '123456789')}{sep}{_num(rng, 4)}",
            f"{rng.choice(_LANDLINES)}{sep}{_num(rng, 3, '123456789')}{sep}{_num(rng, 4)}",
            f"070{sep}{_num(rng, 4)}{sep}{_num(rng, 4)}",
            f"050{rng.randint(2, 8)}-{_num(rng, 3)}-{_num(rng, 4)}",
            f"(02) {_num(rng, 3, '123456789')}-{_num(rng, 4)}",
            f"1{rng.choice('568')}{_num(rng, 2)}-{_num(rng, 4)}",
            rng.choice(["+82-10-{}-{}", "+82 10 {} {}", "+8210{}{}"]).format(_num(rng, 4), _num(rng, 4)),
        ])
        return rng.choice(["", "", "전화 ", "T. ", "M. ", "휴대폰: ", "Tel "]), value, _suffix(rng)
    if pii_type == "account":
        a, b = _num(rng, 3, "123456789"), _num(rng, 4, "123456789")
        value = rng.choice([
            f"{a}-{_num(rng, 3)}-{_num(rng, 6)}", f"{b}-{_num(rng, 3)}-{_num(rng, 6)}",
            f"{b}-{_num(rng, 2)}-{_num(rng, 7)}", f"{a}{_num(rng, 3)}-{_num(rng, 2)}-{_num(rng, 6)}",
            a + _num(rng, rng.choice([7, 8, 9, 11])),  # bare 10, 11, 12 or 14 digits
        ])
        prefix = rng.choice(["계좌 ", "계좌번호: ", "신한은행 ", "국민은행 계좌 ", "농협 ", "입금 계좌 ", "카카오뱅크 ",
                             "우체국 ", "IBK ", "KB국민 ", "토스뱅크 ", "예금주 홍길동, 계좌 "])
        return prefix, value, _suffix(rng)
    if pii_type == "email":
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        local = rng.choice([name, name + str(rng.randint(1, 99)), f"{name}.{name[:3]}", f"{name}_{rng.randint(1, 9)}",
                            f"v.{name}", f"{name}+tag", f"{name}-{name[:2]}", _num(rng, 11, "0")])
        value = f"{local}@{rng.choice(_DOMAINS)}"
        prefix = rng.choice(["", "", "E. ", "메일 ", "이메일: ", "mailto:", "<"])
        return prefix, value, ">" if prefix == "<" else _suffix(rng)
    if pii_type == "ip":
        if r < 0.6:
            value = f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        else:
            words = [rng.getrandbits(16) for _ in range(8)]
            if rng.random() < 0.6:  # a run of zero groups, written "::"
                i, n = rng.randrange(7), rng.randint(2, 4)
                words[i : i + n] = [0] * len(words[i : i + n])
            value = str(ipaddress.IPv6Address(sum(w << (16 * (7 - k)) for k, w in enumerate(words))))
        return rng.choice(["", "IP ", "IP:", "접속 IP ", "서버 ", "host="]), value, _suffix(rng)
    raise ValueError(f"unknown PII type: {pii_type!r}")


# Words between identifiers. None is a context word; some start with a unit syllable (만약, 회사, 개인,
# 원본) that must not turn the number before them into an amount.
FILLER = ("홍길동", "김영희", "담당자", "안녕하세요", "확인 부탁드립니다", "회의록", "참고", "감사합니다", "내일 오전",
          "자료 첨부", "hello", "team", "note", "FYI", "3층", "10시", "만약", "회사", "개인", "원본", "메모")
SEPARATORS = (", ", ",", " ", "; ", ";", "\t", " | ", " / ")
LAYOUTS = ("line", "csv", "markdown", "bullets", "signature", "cc", "sentences", "list")
# One label, then several numbers that need it ("계좌: 110-123-456789, 3333-01-1234567").
_LIST_LABELS = {"account": "계좌번호: ", "brn": "사업자등록번호: ", "driver_license": "운전면허번호 "}


class DenseDocument:
    """Text assembled piece by piece, with the type and exact span of every identifier put in."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.truth: list[tuple[str, int, int, str]] = []  # (type, start, end, text)
        self.size = 0

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)

    def pii(self, rng, pii_type: str, prefix: str | None = None, particle: bool = True) -> None:
        """One identifier; `prefix` replaces the random label (only for types that need none)."""
        label, value, suffix = random_pii(rng, pii_type)
        if prefix is not None:
            label = prefix
        if not particle:
            suffix = ")" if label.endswith("(") else ""
        self.add(label)
        self.truth.append((pii_type, self.size, self.size + len(value), value))
        self.add(value)
        self.add(suffix)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def dense_document(rng, layout: str, types=DENSE_TYPES) -> DenseDocument:
    """A short document packed with identifiers in one of LAYOUTS (see docs/PII.md)."""
    doc = DenseDocument()
    pick = lambda: rng.choice(types)
    if layout == "line":  # several per line, one separator per line, adjacent lines
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.3:
                doc.add(rng.choice(FILLER) + " ")
            sep = rng.choice(SEPARATORS)
            for k in range(rng.randint(2, 5)):
                if k:
                    doc.add(sep)
                doc.pii(rng, pick())
            if rng.random() < 0.3:
                doc.add(" " + rng.choice(FILLER))
            doc.add("\n")
    elif layout in ("csv", "markdown"):
        columns = [pick() for _ in range(rng.randint(2, 4))]
        edge, sep = ("| ", " | ") if layout == "markdown" else ("", ",")
        doc.add(edge + sep.join(["이름", *columns]) + edge[::-1].rstrip() + "\n")
        if layout == "markdown":
            doc.add("|" + "---|" * (len(columns) + 1) + "\n")
        for _ in range(rng.randint(2, 5)):
            doc.add(edge + rng.choice(FILLER[:3]))
            for t in columns:
                doc.add(sep)
                quoted = layout == "csv" and rng.random() < 0.2
                doc.add('"' if quoted else "")
                doc.pii(rng, t, particle=False)
                doc.add('"' if quoted else "")
            doc.add(edge[::-1].rstrip() + "\n")
    elif layout == "bullets":
        for _ in range(rng.randint(3, 7)):
            doc.add(rng.choice(["- ", "* ", "• ", "  - "]))
            doc.pii(rng, pick())
            if rng.random() < 0.4:
                doc.add(rng.choice([", ", " "]))
                doc.pii(rng, pick())
            doc.add("\n")
    elif layout == "signature":
        doc.add(f"--\n{rng.choice(FILLER[:2])} | 책임연구원\n새싹랩 AI팀\n")
        for k, mark in enumerate(rng.sample(["T. ", "M. ", "F. ", "Tel ", "HP "], 3)):
            doc.add(" | " if k else "")
            doc.pii(rng, "phone", prefix=mark, particle=False)
        doc.add("\nE. ")
        doc.pii(rng, "email", prefix="", particle=False)
        doc.add("\n")
    elif layout == "cc":
        for head, sep in (("From: ", ""), ("To: ", ", "), ("Cc: ", "; "), ("Bcc: ", ",")):
            doc.add(head)
            for k in range(1 if not sep else rng.randint(2, 5)):
                doc.add(sep if k else "")
                bracket = rng.random() < 0.3
                doc.pii(rng, "email", prefix="<" if bracket else "", particle=False)
                doc.add(">" if bracket else "")
            doc.add("\n")
    elif layout == "sentences":
        for _ in range(rng.randint(3, 6)):
            doc.add(rng.choice(["담당자 ", "참고로 ", "그리고 ", "또 ", ""]))
            doc.pii(rng, pick())
            doc.add(rng.choice([" ", ", ", ". ", "\n"]))
    elif layout == "list":
        for _ in range(rng.randint(1, 3)):
            t = rng.choice(sorted(_LIST_LABELS))
            doc.add(_LIST_LABELS[t])
            sep = rng.choice([", ", ",", " / ", " ", "; "])
            for k in range(rng.randint(2, 4)):
                doc.add(sep if k else "")
                value = {"account": lambda: random_pii(rng, "account")[1],
                         "brn": lambda: brn(_num(rng, 9, "123456789"), sep=""),
                         "driver_license": lambda: rng.choice(_DL_CODES) + _num(rng, 10)}[t]()
                doc.truth.append((t, doc.size, doc.size + len(value), value))
                doc.add(value)
            doc.add("\n")
    else:
        raise ValueError(f"unknown layout: {layout!r} (one of {', '.join(LAYOUTS)})")
    return doc


def dense_set(seed: int, per_layout: int) -> list[DenseDocument]:
    """`per_layout` documents of every layout, the same for the same seed."""
    import random

    rng = random.Random(seed)
    return [dense_document(rng, layout) for layout in LAYOUTS for _ in range(per_layout)]
