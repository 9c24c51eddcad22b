"""Cleaning, filters, HTML prose extraction, licence parsing, dedup and split."""

from collections import Counter

from saessak.data.clean import (CleanConfig, document_drop_reason, filter_lines, frequent_lines, hangul_share,
                                normalize, split_long)
from saessak.data.dedup import char_shingles, exact_content
from saessak.data.htmltext import html_paragraphs
from saessak.data.licence import licence_from_copyright
from saessak.data.split import assign_splits

CFG = CleanConfig()


def test_normalize_nfc_keeps_compatibility_jamo_and_full_width():
    decomposed = "\u1112\u1161\u11ab\u1100\u1173\u11af"  # 한글 as conjoining jamo (NFD)
    assert normalize(decomposed) == "한글"
    assert normalize("ㅋㅋㅋ 웃겨요") == "ㅋㅋㅋ 웃겨요"  # NFKC would turn these into conjoining jamo
    assert normalize("ＡＢＣ１２３") == "ＡＢＣ１２３"  # NFKC would make this ASCII


def test_normalize_controls_and_whitespace():
    text = "가\x00나\u200b다\ufeff\r\n  라\t\u3000마  \u00a0바 \r사"
    assert normalize(text) == "가나다\n라 마 바\n사"


def test_hangul_share():
    assert hangul_share("한국어 text") == 3 / 7
    assert hangul_share("12345 !!") == 0.0
    assert hangul_share("ㅋㅋ") == 1.0


def test_filter_lines_counts_reasons():
    dropped = Counter()
    text = "첫 문장입니다.\n-\n첫 문장입니다.\n\n\n공통 꼬리말\n이전\n둘째 문장입니다."
    out = filter_lines(text, {"공통 꼬리말"}, CFG, dropped)
    assert out == "첫 문장입니다.\n\n둘째 문장입니다."
    assert dropped == Counter(too_short_line=1, repeated_line=1, boilerplate_line=2)


def test_frequent_lines_need_many_documents():
    docs = [f"문서 {i} 본문입니다.\n이 도움말은 자유 소프트웨어입니다." for i in range(10)]
    assert frequent_lines(docs, CFG) == {"이 도움말은 자유 소프트웨어입니다."}
    assert frequent_lines(docs[:4], CFG) == set()  # fewer than boilerplate_min_docs


def test_document_drop_reasons():
    assert document_drop_reason("", CFG) == "empty"
    assert document_drop_reason("짧은 글", CFG) == "too_short"
    assert document_drop_reason("This paragraph is written almost entirely in English, 한 글.", CFG) == "low_hangul"
    assert document_drop_reason("충분히 긴 한국어 문서입니다. 여러 문장이 들어 있어서 길이 조건을 넘깁니다.", CFG) is None


def test_split_long_cuts_at_lines_and_loses_nothing():
    lines = [f"{i}번째 줄입니다" for i in range(100)]
    pieces = split_long("\n".join(lines), 100)
    assert all(len(p) <= 100 for p in pieces) and len(pieces) > 5
    assert "\n".join(pieces).split("\n") == lines
    assert split_long("가" * 250, 100) == ["가" * 100, "가" * 100, "가" * 50]


def test_html_paragraphs_skip_chrome_and_hidden_variants():
    html = """<html><head><title>제목</title><script>var x = "스크립트";</script></head><body>
    <header><p>머리말 메뉴</p></header><nav>탐색</nav>
    <div class="navheader"><table><tr><td>이전</td></tr></table><div>안쪽</div></div>
    <aside class="leftside"><div>색인</div></aside>
    <div id="DisplayArea"><h1>찾기 도구 모음</h1>
      <p>단축키 <span class="switchinline"><span hidden="true" id="MACx" class="MAC">Command</span><span hidden="true"
      id="defaultx">Ctrl</span></span> + F 를 누릅니다.</p>
      <p>둘째&nbsp;문단&amp;끝<br>다음 줄</p><img src="a.png"><ul><li>항목 하나</li><li>항목 둘</li></ul>
    </div><footer><p>꼬리말</p></footer></body></html>"""
    assert html_paragraphs(html) == ["찾기 도구 모음", "단축키 Ctrl + F 를 누릅니다.", "둘째 문단&끝", "다음 줄",
                                     "항목 하나", "항목 둘"]


def test_licence_from_copyright():
    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: X\n\n"
            "Files: debian/*\nCopyright: 2020 A\nLicense: GPL-3+\n\nFiles: *\nCopyright: 2000 B\nLicense: MPL-2.0\n"
            " text\n")
    assert licence_from_copyright(dep5) == "MPL-2.0"
    assert licence_from_copyright("It is licensed under the terms of the GNU GPL, version 2.") == "GPL-2.0"
    assert licence_from_copyright("Permission is granted to make and distribute verbatim copies of this").startswith(
        "LicenseRef-verbatim")
    assert licence_from_copyright("no idea").startswith("unknown")


def test_exact_key_ignores_whitespace_only():
    from datatrove.data import Document

    def key(text):
        return exact_content(Document(text=text, id="x"))

    assert key("가 나\n다") == key("가  나 다 ")
    assert key("가 나 다") != key("가 나 라")


def _para(seed: int) -> str:
    words = ["리브레오피스", "문서", "저장", "서식", "표", "셀", "그림", "글꼴", "단락", "페이지", "인쇄", "메뉴"]
    return " ".join(words[(seed * 7 + i * 5) % len(words)] + ("를" if i % 3 else "은") for i in range(60))


def _signature(text: str, seed: int = 0):
    import numpy as np

    from saessak.data.pipeline import CharTokenizer, KoreanMinhashSignature, minhash_config

    step = KoreanMinhashSignature("/nonexistent", minhash_config(seed), language=CharTokenizer())
    return np.concatenate(step.get_signature(step.get_shingles(text)))


def test_minhash_signature_tracks_jaccard_and_catches_small_edits():
    a = "".join(chr(0xAC00 + (i * 37) % 11172) for i in range(2000))
    b = a[:1000] + "".join(chr(0xAC00 + (i * 91) % 11172) for i in range(1000))
    sa, sb = set(a[i:i + 5] for i in range(len(a) - 4)), set(b[i:i + 5] for i in range(len(b) - 4))
    true_j = len(sa & sb) / len(sa | sb)
    assert abs(float((_signature(a) == _signature(b)).mean()) - true_j) < 0.12
    # one small edit: most 12-hash buckets stay equal, so datatrove's LSH pairs the two documents
    base = "대한민국헌법 제1조 대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고 모든 권력은 국민으로부터 나온다. " * 4
    edited = base.replace("민주공화국이다", "민주공화국이었다", 1)
    sig_a, sig_b = _signature(base).reshape(12, 12), _signature(edited).reshape(12, 12)
    assert (sig_a == sig_b).all(axis=1).any()
    other = _signature("학생들은 도서관에서 책을 읽고, 친구와 함께 공부를 했다. 오늘은 월요일이고 내일은 화요일이다. " * 4)
    assert not (sig_a == other.reshape(12, 12)).all(axis=1).any()


def test_shingles_are_characters():
    assert char_shingles("가나다라마바", 5).shape == (2, 1)  # two 5-character windows
    assert char_shingles("가나", 5).shape == (1, 1)  # padded to one shingle
    assert char_shingles("", 5).shape == (0, 1)


def test_split_deterministic_order_free_and_val_nonempty():
    texts = [f"문서 번호 {i}의 본문" for i in range(500)]
    a = assign_splits(texts, seed=0)
    assert a == assign_splits(texts, seed=0)
    assert dict(zip(texts, a)) == dict(zip(texts[::-1], assign_splits(texts[::-1], seed=0)))
    assert 2 <= a.count("val") <= 25  # about 2 %
    assert assign_splits(texts, seed=1) != a
    assert assign_splits(["하나", "둘"], seed=0).count("val") == 1
    assert assign_splits(["하나"], seed=0) in (["train"], ["val"])
