"""PII in dense text: identifiers of every type packed several to a line, a comma or a space apart,
in tables, CSV rows, lists, signatures and CC lists. Every one is found, with its type and exact
offsets, whatever precedes it; and what is found in two texts apart is found in them joined."""

import io
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saessak.cli import main
from saessak.pii import find_pii, mask_pii
from saessak.pii import validators as v
from tests.pii_numbers import (
    DENSE_TYPES,
    FILLER,
    LAYOUTS,
    SEPARATORS,
    DenseDocument,
    brn,
    card,
    crn,
    dense_document,
    random_pii,
    rrn,
    rrn_bad_check,
)


def spans(text):
    return [(e.type, e.start, e.end) for e in find_pii(text)]


def expected(doc: DenseDocument):
    return [(t, s, e) for t, s, e, _ in doc.truth]


def test_issue_13_second_address_is_masked(monkeypatch):
    text = "메일은 abcd12@naver.com로 보내 주세요.\n이메일: kim@korea.kr\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8"))
    buf = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf, encoding="utf-8"))
    assert main(["pii", "mask", "-"]) == 0
    assert buf.getvalue().decode() == "메일은 [EMAIL]로 보내 주세요.\n이메일: [EMAIL]\n"


def test_one_address_per_short_line():
    addresses = [f"user{i}@example.co.kr" for i in range(40)]
    text = "".join(f"- {a}\n" for a in addresses)
    assert [e.text for e in find_pii(text)] == addresses


@pytest.mark.parametrize("sep", [", ", ",", " ", ";", "; ", "\n", "\t", " | "])
def test_cc_list_every_address(sep):
    addresses = ["kim@korea.kr", "lee.j@naver.com", "park_9@mail.example.com", "v.choi@snu.ac.kr", "a+b@x.org"]
    text = "Cc: " + sep.join(addresses)
    ents = find_pii(text)
    assert [(e.type, e.text) for e in ents] == [("email", a) for a in addresses]
    assert all(text[e.start : e.end] == e.text for e in ents)


def test_email_long_domain_is_not_cut():
    # the old search stopped 256 characters after the "@" and cut the domain there
    domain = ".".join(["a" * 60] * 5) + ".com"
    text = f"메일 kim@{domain}로"
    assert spans(text) == [("email", 3, 3 + 4 + len(domain))]


def test_email_leading_dots_are_not_the_local_part():
    assert [e.text for e in find_pii("주소는...kim@korea.kr")] == ["kim@korea.kr"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dense_layouts_every_identifier_exact(layout):
    rng = random.Random(f"dense-{layout}")
    for _ in range(25):
        doc = dense_document(rng, layout)
        assert spans(doc.text) == expected(doc), doc.text


def test_every_pair_of_types_one_separator_apart():
    """Each type directly after each other type (and itself), for every separator."""
    rng = random.Random(13)
    for first in DENSE_TYPES:
        for second in DENSE_TYPES:
            for sep in SEPARATORS:
                doc = DenseDocument()
                doc.pii(rng, first)
                doc.add(sep)
                doc.pii(rng, second)
                assert spans(doc.text) == expected(doc), (first, second, doc.text)


def test_markdown_table_and_csv_examples():
    r1, r2 = rrn("900101", "1"), rrn_bad_check("051231", "4")
    table = (
        "| 이름 | 전화 | 메일 | 주민번호 |\n|---|---|---|---|\n"
        f"| 홍길동 | 010-1234-5678 | hong@example.com | {r1} |\n"
        f"| 김영희 | 02-987-6543 | kim@korea.kr | {r2} |\n"
    )
    assert [(e.type, e.text) for e in find_pii(table)] == [
        ("phone", "010-1234-5678"), ("email", "hong@example.com"), ("rrn", r1),
        ("phone", "02-987-6543"), ("email", "kim@korea.kr"), ("rrn", r2),
    ]
    b = brn("220816251", sep="")
    row = f"홍길동,사업자번호 {b},{card('411111111111111', sep=' ')},192.168.0.1,M123A4567,11-12-345678-90"
    assert [e.type for e in find_pii(row)] == ["brn", "card", "ip", "passport", "driver_license"]


def test_signature_block():
    text = "--\n홍길동 | 책임연구원\nT. 02-123-4567 | M. 010-9876-5432 | F. 031-765-4321\nE. hong@saessak.ai\n"
    assert [(e.type, e.text) for e in find_pii(text)] == [
        ("phone", "02-123-4567"), ("phone", "010-9876-5432"), ("phone", "031-765-4321"), ("email", "hong@saessak.ai"),
    ]


def test_card_after_space_separated_phone():
    # "1234 5678 4111 1111" is tried first and fails Luhn; the card starting inside it is still found
    c = card("411111111111111", sep=" ")
    text = f"010 1234 5678 {c}"
    assert spans(text) == [("phone", 0, 13), ("card", 14, 14 + len(c))]


def test_false_run_across_two_neighbours_does_not_remove_both():
    # a Luhn-valid 4-4-4-4 run across the phone and the card must not win over the two of them
    c = card("411111111111111", sep=" ")
    for tail in range(10000):
        phone = f"010 1234 {tail:04d}"
        bogus = f"1234 {tail:04d} {c[:9]}"
        if v.luhn_ok(bogus.replace(" ", "")):
            break
    text = f"{phone} {c}"
    assert spans(text) == [("phone", 0, 13), ("card", 14, 14 + len(c))]


def test_ipv6_after_a_label_colon():
    assert [e.text for e in find_pii("IP:2001:db8::1, 주소:fe80::1ff:fe23:4567:890a")] == [
        "2001:db8::1", "fe80::1ff:fe23:4567:890a"]
    assert [e.text for e in find_pii("IP:::1 접속, fe80::1: 차단")] == ["::1", "fe80::1"]


def test_context_word_inside_previous_identifier_does_not_count():
    c = card("411111111111111")
    # "v." (a version marker) begins this address; it must not veto the card after it
    assert [e.type for e in find_pii(f"v.kim@korea.kr {c}")] == ["email", "card"]
    # "KB" in an address is no bank name for the number after it
    assert [e.type for e in find_pii("kb@bank.co.kr 1234567890")] == ["email"]


def test_label_belongs_to_the_identifier_after_it():
    corp = crn("110111001234")
    person = _rrn_passing_crn_check("900101", "1")  # an RRN whose last digit fits the CRN rule too
    text = f"법인등록번호 {corp}, {person}"
    assert spans(text) == [("crn", 7, 21), ("rrn", 23, 37)]
    # a list after one label keeps it, and only a list (nothing but separators between)
    assert [e.type for e in find_pii("계좌: 110-123-456789, 3333-01-1234567 / 1002-123-456789")] == ["account"] * 3
    b1, b2 = brn("220816251", sep=""), brn("105872110", sep="")
    assert [e.text for e in find_pii(f"사업자등록번호: {b1}, {b2}")] == [b1, b2]
    assert [e.text for e in find_pii(f"사업자등록번호: {b1} 외 {b2}")] == [b1]
    # 면허 labels the first number only; the second has its own label
    assert [e.type for e in find_pii("면허 111234567890 계좌 110123456789")] == ["driver_license", "account"]


def test_masking_twice_changes_nothing_in_dense_text():
    rng = random.Random(7)
    for layout in LAYOUTS:
        for _ in range(5):
            once, _ = mask_pii(dense_document(rng, layout).text)
            assert mask_pii(once) == (once, {})
    # a placeholder is not a context word: "[ACCOUNT]" is no 'account' label
    assert find_pii("[ACCOUNT] 1234567890, [EMAIL] 110123456789") == []


# ---- 사업자등록번호 without hyphens, RRN vs CRN ----

BRN_PLAIN = brn("220816251", sep="")


@pytest.mark.parametrize("template", [
    "등록번호({})", "사업자등록번호:{}", "사업자등록번호: {}", "사업자번호 {}", "사업자 등록 번호 {}입니다",
    "등록번호 {}", "Business registration: {}", "사업자등록번호 {} 회사명 새싹랩",
])
def test_brn_without_hyphens_with_context(template):
    text = template.format(BRN_PLAIN)
    start = text.index(BRN_PLAIN)
    assert spans(text) == [("brn", start, start + 10)]


def test_brn_without_hyphens_negatives():
    wrong = BRN_PLAIN[:-1] + str((int(BRN_PLAIN[-1]) + 1) % 10)
    assert find_pii(f"사업자등록번호({wrong})") == []  # bad check digit
    assert find_pii(f"번호 {BRN_PLAIN}") == [] and find_pii(BRN_PLAIN) == []  # no context
    assert find_pii(f"사업자 매출 {BRN_PLAIN}원") == []  # an amount


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=10, max_size=10), st.sampled_from(["", "번호 ", "주문 ", "코드: "]))
def test_random_10_digits_are_brn_only_with_context_and_check_digit(d, prefix):
    assert all(e.type != "brn" for e in find_pii(f"{prefix}{d}"))
    with_context = find_pii(f"사업자등록번호 {d}")
    assert (any(e.type == "brn" for e in with_context)) == (v.brn_ok(d) and d[0] != "0")


def _rrn_passing_crn_check(yymmdd, gender, make=rrn):
    for serial in range(10000, 99999):
        value = make(yymmdd, gender, serial5=str(serial))
        if v.crn_ok(value.replace("-", "")):
            return value
    raise AssertionError("unreachable")


@pytest.mark.parametrize("make", [rrn, rrn_bad_check])  # with and without the legacy check digit
@pytest.mark.parametrize("yymmdd,gender", [("900101", "1"), ("851231", "2"), ("050315", "3"), ("120229", "4")])
def test_rrn_passing_crn_check_is_rrn(yymmdd, gender, make):
    value = _rrn_passing_crn_check(yymmdd, gender, make)
    assert spans(value) == [("rrn", 0, 14)]
    assert spans(f"연락처 010-1234-5678, {value}") == [("phone", 4, 17), ("rrn", 19, 33)]
    assert spans(f"등록번호 {value}") == [("rrn", 5, 19)]


def test_rrn_shaped_number_after_corp_label_is_crn():
    value = _rrn_passing_crn_check("900101", "1")
    assert spans(f"법인등록번호 {value}") == [("crn", 7, 21)]
    assert spans(f"법인등록번호: {value.replace('-', '')}") == [("crn", 8, 21)]
    assert spans(f"법인 주민 {value}") == [("crn", 6, 20)]  # 법인 decides, whatever else is named


def test_crn_serial_starting_with_0_reads_as_crn_not_an_1811_birth():
    value = crn("110111001234")  # 110111-0...: 1811-01-11 if read as an RRN
    assert v.rrn_structure_ok(value.replace("-", ""))
    assert spans(value) == [("crn", 0, 14)]
    assert spans(f"주민등록번호 {value}") == [("rrn", 7, 21)]


# ---- concatenation: what is found apart is found together ----

_piece = st.one_of(st.tuples(st.sampled_from(DENSE_TYPES), st.integers(0, 2**32 - 1)), st.sampled_from(FILLER))


def _build(pieces) -> DenseDocument:
    """Identifiers (type, seed) and filler words, each joined to the one before by its separator."""
    doc = DenseDocument()
    for k, (piece, sep) in enumerate(pieces):
        doc.add(sep if k else "")
        if isinstance(piece, str):
            doc.add(piece)
        else:
            doc.pii(random.Random(piece[1]), piece[0])
    return doc


_docs = st.lists(st.tuples(_piece, st.sampled_from((*SEPARATORS, "\n"))), max_size=5).map(_build)
_joins = st.sampled_from([" ", ", ", "\n", "\t", " | ", ";"])


@settings(max_examples=150, deadline=None)
@given(_docs, _docs, _joins)
def test_found_apart_is_found_together(a, b, sep):
    assert spans(a.text) == expected(a) and spans(b.text) == expected(b)
    got = set(spans(a.text + sep + b.text))
    shift = len(a.text) + len(sep)
    assert set(spans(a.text)) <= got
    assert {(t, s + shift, e + shift) for t, s, e in spans(b.text)} <= got


@settings(max_examples=150, deadline=None)
@given(_docs, _docs, _joins)
def test_nothing_found_survives_masking(a, b, sep):
    text = a.text + sep + b.text
    ents = find_pii(text)
    masked, counts = mask_pii(text)
    assert sum(counts.values()) == len(ents) and masked.count("[") == len(ents)
    for e in ents:
        assert e.text not in masked
    assert find_pii(masked) == []


def test_random_pii_covers_every_type():
    rng = random.Random(0)
    for t in DENSE_TYPES:
        label, value, suffix = random_pii(rng, t)
        text = label + value + suffix
        assert spans(text) == [(t, len(label), len(label) + len(value))]
    with pytest.raises(ValueError, match="unknown PII type"):
        random_pii(rng, "name")
