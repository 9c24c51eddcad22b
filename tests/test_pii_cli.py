"""`saessak pii scan|mask`: the JSON Lines contract, offsets into the text as read, bad input."""

import io
import json
import sys

from saessak.cli import main

TEXT = "연락처: 010-1234-5678로,\r\n메일 hong@example.com으로 보내세요.\n주민번호는 900101-1234568이고\n"


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def _stdout_bytes(monkeypatch):
    buf = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf, encoding="utf-8"))
    return buf


def test_scan_file_json_lines_with_char_offsets(tmp_path, monkeypatch):
    f = tmp_path / "in.txt"
    f.write_bytes(TEXT.encode("utf-8"))
    buf = _stdout_bytes(monkeypatch)
    assert main(["pii", "scan", str(f)]) == 0
    rows = [json.loads(line) for line in buf.getvalue().decode("utf-8").splitlines()]
    assert [r["type"] for r in rows] == ["phone", "email", "rrn"]
    for r in rows:
        assert set(r) == {"type", "start", "end", "text"}
        # offsets index the text exactly as read: the \r\n is not translated
        assert TEXT[r["start"] : r["end"]] == r["text"]


def test_scan_stdin_and_dash(monkeypatch):
    for argv in (["pii", "scan"], ["pii", "scan", "-"]):
        _stdin(monkeypatch, TEXT.encode("utf-8"))
        buf = _stdout_bytes(monkeypatch)
        assert main(argv) == 0
        assert len(buf.getvalue().decode("utf-8").splitlines()) == 3


def test_mask_stdin_keeps_everything_else(monkeypatch):
    _stdin(monkeypatch, TEXT.encode("utf-8"))
    buf = _stdout_bytes(monkeypatch)
    assert main(["pii", "mask"]) == 0
    assert buf.getvalue().decode("utf-8") == (
        "연락처: [PHONE]로,\r\n메일 [EMAIL]으로 보내세요.\n주민번호는 [RRN]이고\n"
    )


def test_scan_nothing_found_prints_nothing(monkeypatch):
    _stdin(monkeypatch, "가격은 12,000원, 2024-01-15, 버전 3.10.2".encode())
    buf = _stdout_bytes(monkeypatch)
    assert main(["pii", "scan", "-"]) == 0
    assert buf.getvalue() == b""


def test_bad_input_is_a_clear_error(tmp_path, monkeypatch, capsys):
    assert main(["pii", "scan", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: file not found" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    assert main(["pii", "mask", str(bad)]) == 2
    assert "not valid UTF-8 at byte 3" in capsys.readouterr().err
    assert main(["pii", "scan", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
