"""PII over large inputs: chunked scanning gives the whole-text result; `pii mask --out --workers`."""

from __future__ import annotations

import io
import random

from saessak.cli import main
from saessak.pii import find_pii, mask_pii
from saessak.pii.stream import mask_stream, scan_stream
from tests.pii_numbers import dense_set


def _dense_text() -> str:
    return "\n".join(doc.text for doc in dense_set(seed=3, per_layout=6))


def test_chunked_scan_equals_whole_text_scan():
    text = _dense_text()
    whole = [e.to_json() for e in find_pii(text)]
    assert len(whole) > 200
    for chunk in (64, 500, 4096):  # tiny chunks: every cut and margin path is taken
        got = [e.to_json() for _, ents in scan_stream(io.BytesIO(text.encode("utf-8")), "t", chunk) for e in ents]
        assert got == whole, chunk
        out = []
        counts = mask_stream(io.BytesIO(text.encode("utf-8")), out.append, "t", chunk)
        masked, expected = mask_pii(text)
        assert "".join(out) == masked and counts == expected


def test_chunks_never_split_a_multibyte_character_or_a_crlf():
    text = "전화 010-2345-6789\r\n" * 300 + "끝"
    out = []
    mask_stream(io.BytesIO(text.encode("utf-8")), out.append, "t", 100)
    assert "".join(out) == mask_pii(text)[0]


def test_mask_files_and_folders_into_out_with_workers(tmp_path, capsys):
    rng = random.Random(0)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    texts = {}
    for i in range(4):
        rel = f"sub/{i}.txt" if i % 2 else f"{i}.txt"
        texts[rel] = "\n".join(f"문의 010-{rng.randint(2000, 9999)}-{rng.randint(1000, 9999)} 번호입니다." for _ in range(50))
        (src / rel).write_text(texts[rel], encoding="utf-8")
    single = tmp_path / "one.txt"
    single.write_text("메일 kim@example.com 으로\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["pii", "mask", str(src), str(single), "--out", str(out), "--workers", "2"]) == 0
    for rel, text in texts.items():
        assert (out / "in" / rel).read_text(encoding="utf-8") == mask_pii(text)[0]
    assert (out / "one.txt").read_text(encoding="utf-8") == "메일 [EMAIL] 으로\n"
    assert "5 file(s)" in capsys.readouterr().err

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "latin.txt").write_bytes(b"caf\xe9")
    assert main(["pii", "mask", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "not valid UTF-8 at byte 3" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "bad" / "latin.txt").exists()  # nothing half-written
    assert main(["pii", "mask", str(src), str(single)]) == 2
    assert "need --out" in capsys.readouterr().err
