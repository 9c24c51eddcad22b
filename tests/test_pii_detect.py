"""Korean PII detectors: per-type positives (particles attached, in sentences, with and without
separators) and hard negatives that must stay untouched."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saessak.pii import PLACEHOLDERS, find_pii, mask_pii
from saessak.pii import validators as v
from tests.pii_numbers import brn, card, crn, frn, luhn_fail, rrn, rrn_bad_check


def found(text):
    return [(e.type, e.text) for e in find_pii(text)]


def assert_only(text, pii_type, value):
    """`value` is found in `text` as exactly one entity of `pii_type`, with correct offsets."""
    ents = find_pii(text)
    assert [(e.type, e.text) for e in ents] == [(pii_type, value)], text
    e = ents[0]
    assert text[e.start : e.end] == value
    assert mask_pii(text)[0] == text.replace(value, PLACEHOLDERS[pii_type])


RRN = rrn("900101", "1")
RRN_2000S = rrn("050315", "4")


@pytest.mark.parametrize("template", [
    "{}",
    "주민번호는 {}이고 이름은 홍길동입니다.",
    "주민등록번호: {}",
    "({})",
    "번호 {}를 확인했습니다",
])
@pytest.mark.parametrize("value", [RRN, RRN.replace("-", ""), RRN_2000S, rrn("851231", "2", sep=" ")])
def test_rrn_positive(template, value):
    assert_only(template.format(value), "rrn", value)


def test_rrn_worked_example_with_particles():
    assert_only("주민번호는 900101-1234568이고", "rrn", "900101-1234568")
    assert_only("9001011234568로 조회", "rrn", "9001011234568")


def test_rrn_without_check_digit_still_masked_when_date_valid():
    # Numbers issued since October 2020 have no check digit: the valid date is what counts.
    value = rrn_bad_check("201105", "3")
    assert not v.rrn_checksum_ok(value.replace("-", ""))
    assert_only(f"신생아 주민등록번호 {value}입니다", "rrn", value)
    ent = find_pii(value)[0]
    assert ent.confidence == "medium" and find_pii(RRN)[0].confidence == "high"


@pytest.mark.parametrize("value", [
    "900230-1234567",  # 30 February
    "901301-1234567",  # month 13
    "010229-3234567",  # 2001 is not a leap year
    "900101-5234567",  # gender digit 5 is a foreigner's: an RRN must not match (FRN rules apply)
])
def test_rrn_invalid_date_or_digit_not_rrn(value):
    assert all(t != "rrn" for t, _ in found(f"번호 {value}"))


def test_rrn_spaced_hyphen_and_partly_masked_forms():
    spaced = RRN.replace("-", " - ")
    assert_only(f"주민등록번호: {spaced}", "rrn", spaced)
    assert_only("생년월일 900101-1******입니다", "rrn", "900101-1******")
    assert_only("외국인 850704-5xxxxxx로 등록", "frn", "850704-5xxxxxx")
    assert found("900230-1******") == []  # 30 February is no birth date


def test_rrn_leap_day_2000_valid():
    value = rrn("000229", "3")
    assert_only(value, "rrn", value)


@pytest.mark.parametrize("value", [frn("850704", "5"), frn("020101", "7", sep=""), frn("991231", "6")])
def test_frn_positive(value):
    assert_only(f"외국인등록번호는 {value}입니다", "frn", value)
    assert_only(value + "로", "frn", value)


@pytest.mark.parametrize("value", [brn("220816251"), brn("105872110")])
def test_brn_positive_hyphenated(value):
    assert_only(f"사업자등록번호 {value}로 세금계산서를 발행합니다.", "brn", value)
    assert_only(f"업체 번호는 {value}입니다", "brn", value)  # hyphenated form needs no context


def test_brn_plain_needs_context_and_check_digit():
    value = brn("220816251", sep="")
    assert_only(f"사업자번호 {value}입니다", "brn", value)
    assert found(f"번호 {value}입니다") == []  # 10 bare digits without 사업자: could be anything
    wrong = value[:-1] + str((int(value[-1]) + 1) % 10)
    assert found(f"사업자번호 {wrong[:3]}-{wrong[3:5]}-{wrong[5:]}") == []


def test_crn_positive():
    value = crn("110111000123")
    assert_only(f"법인등록번호: {value}", "crn", value)
    assert_only(f"법인 번호 {value.replace('-', '')}로 등기", "crn", value.replace("-", ""))
    # hyphenated 6-7 form with a valid check digit is a CRN even without context
    odd = crn("134511005678")  # first six digits are not a date
    assert_only(f"등록번호 {odd}", "crn", odd)


def test_crn_wrong_check_digit_not_masked():
    value = crn("134511005678")
    wrong = value[:-1] + str((int(value[-1]) + 1) % 10)
    assert found(f"법인등록번호 {wrong}") == []


@pytest.mark.parametrize("value", [
    card("411111111111111"),
    card("411111111111111", sep=" "),
    card("411111111111111", sep=""),
    card("540000000000000"),
    card("37828224631000", groups=(4, 6, 5)),  # AMEX, 15 digits
    card("37828224631000", groups=(15,)),
])
def test_card_positive(value):
    assert_only(f"카드번호 {value}로 결제했습니다", "card", value)
    assert_only(f"{value}", "card", value)


@pytest.mark.parametrize("value", ["M123A4567", "S987B6543", "M12345678", "R87654321"])
def test_passport_positive(value):
    assert_only(f"여권번호는 {value}입니다.", "passport", value)
    assert_only(f"여권: {value}", "passport", value)


@pytest.mark.parametrize("value", ["11-12-345678-90", "28-99-000001-15", "서울 12-345678-90", "경기12-345678-90"])
def test_driver_license_positive(value):
    assert_only(f"운전면허번호 {value}를 입력하세요", "driver_license", value)


def test_driver_license_plain_needs_context():
    assert_only("면허번호 111234567890입니다", "driver_license", "111234567890")
    assert found("번호 111234567890입니다") == []
    assert found("번호 10-12-345678-90입니다") == []  # 10 is no region code


@pytest.mark.parametrize("value", [
    "010-1234-5678", "01012345678", "010 1234 5678", "010.1234.5678",
    "011-123-4567", "016-1234-5678", "019-987-6543",
    "02-123-4567", "02-1234-5678", "0212345678", "031-123-4567", "064-712-3456", "(02) 123-4567",
    "070-1234-5678", "0505-123-4567",
    "1588-1234", "1644-5678", "1800-0000",
    "+82-10-1234-5678", "+82 10 1234 5678", "+821012345678", "+82-2-123-4567",
])
def test_phone_positive(value):
    assert_only(f"전화번호는 {value}입니다.", "phone", value)
    assert_only(f"{value}로 연락 주세요", "phone", value)


def test_phone_with_particle_worked_example():
    text = "문의: 010-1234-5678로 연락하거나 02-987-6543에 전화하세요"
    assert found(text) == [("phone", "010-1234-5678"), ("phone", "02-987-6543")]
    assert mask_pii(text) == ("문의: [PHONE]로 연락하거나 [PHONE]에 전화하세요", {"phone": 2})


@pytest.mark.parametrize("text,value", [
    ("국민은행 123456-01-234567로 입금해 주세요", "123456-01-234567"),
    ("계좌번호: 110-123-456789 (신한)", "110-123-456789"),
    ("입금 계좌 3333-01-1234567 카카오뱅크", "3333-01-1234567"),
    ("농협 3021234567891로 보내", "3021234567891"),
])
def test_account_positive_with_context(text, value):
    assert_only(text, "account", value)


def test_account_needs_context():
    assert found("번호 123456-01-234567입니다") == []
    assert found("코드 110-123-456789") == []
    # bank names that are everyday words do not count as context on their own
    assert found("우리 회사 주문번호 2024-01-123456") == []
    assert found("그중 하나는 1234-5678-90이다") == []
    assert found("국민 여러분 1234567890") == []
    assert_only("우리은행 1002-123-456789", "account", "1002-123-456789")


def test_english_context_words_are_whole_words():
    # "Korean" contains "ean" and "server." contains "v.": neither may veto a detection
    assert_only(f"Korean RRN {RRN}", "rrn", RRN)
    assert_only("the server. 192.168.10.20", "ip", "192.168.10.20")


@pytest.mark.parametrize("value", ["hong.gildong@example.co.kr", "user+tag@mail.example.com", "a_b-c@sub-domain.org"])
def test_email_positive(value):
    assert_only(f"메일은 {value}로 보내세요", "email", value)
    assert_only(f"<{value}>", "email", value)


@pytest.mark.parametrize("value", ["192.168.0.1", "10.0.0.255", "203.0.113.42", "2001:db8::1", "fe80::1ff:fe23:4567:890a"])
def test_ip_positive(value):
    assert_only(f"접속 IP {value}에서 로그인했습니다", "ip", value)


@pytest.mark.parametrize("text", [
    # dates
    "2024-01-15에 만났다", "2024.01.15", "2024/01/15", "20240115", "2024년 1월 15일", "1990-01-01 출생",
    # prices and amounts
    "가격은 12,000원입니다", "총 1,234,567원", "₩12000", "12000000원", "계좌로 1000000000원을 보냈다",
    # versions
    "버전 3.10.2", "v1.2.3.4", "LibreOffice 7.4.1.2", "version 1.2.3.4", "버전 10.0.19045.3803",
    # ISBNs
    "ISBN 978-89-12345-67-8", "ISBN 9788936433598", "9788936433598", "ISBN 89-7914-063-0",
    # times, ratios, sizes, plain numbers
    "12:30:45", "1920x1080", "3.14159", "제1조 ① 대한민국은 민주공화국이다.", "1,000명", "3,000,000,000",
    # an out-of-range IP
    "256.1.1.1", "1.2.3",
    # spans of years look like 15XX/16XX/18XX service numbers
    "임진왜란(1592-1598년)", "1600-1700년대", "1800-1900 년",
    # a future birth date is no RRN (Korean EAN-13 barcodes start with 880), nor is a barcode
    "8801234567890", "바코드 8801041012345",
])
def test_hard_negatives(text):
    assert found(text) == []


@pytest.mark.parametrize("payload", ["411111111111111", "123456789012345", "540000000000000"])
def test_luhn_failing_16_digits_not_card(payload):
    value = luhn_fail(payload)
    assert found(value) == [] and found(f"카드 {value[:4]}-{value[4:8]}-{value[8:12]}-{value[12:]}") == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_13_digits_not_a_date_are_not_masked(d):
    if v.is_yymmdd(d[:6]):
        return
    assert find_pii(f"번호 {d}입니다") == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=16, max_size=16))
def test_16_digits_failing_luhn_not_card(d):
    if v.luhn_ok(d):
        return
    assert all(e.type != "card" for e in find_pii(d))


def test_offsets_are_character_indices_and_particles_preserved():
    text = f"이름 홍길동, 전화 010-1234-5678로, 메일 hong@example.com으로, 주민 {RRN}이고, 서버 192.168.0.1에."
    ents = find_pii(text)
    assert [e.type for e in ents] == ["phone", "email", "rrn", "ip"]
    for e in ents:
        assert text[e.start : e.end] == e.text
    masked, counts = mask_pii(text)
    assert masked == "이름 홍길동, 전화 [PHONE]로, 메일 [EMAIL]으로, 주민 [RRN]이고, 서버 [IP]에."
    assert counts == {"phone": 1, "email": 1, "rrn": 1, "ip": 1}


def test_masking_is_idempotent():
    text = f"연락처 010-1234-5678, 카드 {card('411111111111111')}, 여권 M123A4567"
    once, _ = mask_pii(text)
    assert mask_pii(once) == (once, {})


def test_full_width_digits_detected_with_original_offsets():
    text = "전화 ０１０－１２３４－５６７８로"
    ents = find_pii(text)
    assert [(e.type, e.text) for e in ents] == [("phone", "０１０－１２３４－５６７８")]
    assert text[ents[0].start : ents[0].end] == ents[0].text


def test_longer_span_wins_over_contained_one():
    # the local part looks like a phone number; the whole e-mail is the entity
    assert found("01012345678@example.com") == [("email", "01012345678@example.com")]


def test_number_inside_longer_digit_run_not_matched():
    assert found("1234010-1234-5678") == []  # the 010 is inside a longer digit run
    assert found("010-1234-56789") == []  # one digit too many
    assert found("90101012345678901") == []
    assert found(f"1{RRN}") == [] and found(f"{RRN}1") == []


_date = st.dates(min_value=__import__("datetime").date(1900, 1, 1), max_value=__import__("datetime").date(2099, 12, 31))


@settings(max_examples=300, deadline=None)
@given(_date, st.sampled_from(["{:%Y-%m-%d}", "{:%Y.%m.%d}", "{:%Y%m%d}", "{:%Y/%m/%d}", "{:%Y년 %m월 %d일}",
                               "{:%Y-%m-%d %H:%M:%S}"]), st.sampled_from(["에", "부터", "까지", " 기준", ""]))
def test_dates_never_pii(d, fmt, particle):
    assert find_pii(f"회의는 {fmt.format(d)}{particle} 열립니다") == []


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["원", " 원", "원을", "달러", "명", "개"]))
def test_grouped_amounts_never_pii(n, unit):
    assert find_pii(f"금액은 {n:,}{unit} 입니다") == []
    assert find_pii(f"계좌로 {n}{unit} 보냈다") == []
    assert find_pii(f"사업자 매출 {n}{unit}, 면허 발급 {n}{unit}") == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=99), min_size=2, max_size=4))
def test_versions_never_pii(parts):
    version = ".".join(map(str, parts))
    assert find_pii(f"버전 {version}로 업데이트했습니다") == []
    assert find_pii(f"v{version} 릴리스") == []
