"""`saessak data build` / `build_corpus`: sources, formats, bad input, PII, dedup, card, atomicity."""

import hashlib
import json
import random
import zipfile
from pathlib import Path

import pytest

from saessak.cli import main
from saessak.data import build_corpus
from saessak.data import cache as data_cache
from saessak.errors import UserError
from saessak.io import read_jsonl
from tests.pii_numbers import rrn

WORDS = ["학생", "도서관", "책", "친구", "공부", "서울", "바다", "산", "음식", "김치", "버스", "지하철", "회사", "시장",
         "날씨", "여름", "겨울", "가족", "영화", "음악", "운동", "병원", "학교", "선생님", "컴퓨터", "문서", "사진", "여행"]
ENDINGS = ["을 좋아합니다.", "에 갔습니다.", "이 많습니다.", "와 함께 지냈다.", "에 대해 이야기했다.", "을 찾았다."]


def korean_doc(seed: int, sentences: int = 8) -> str:
    rng = random.Random(seed)
    return " ".join(f"{rng.choice(WORDS)} {rng.choice(WORDS)}{rng.choice(ENDINGS)}" for _ in range(sentences))


def read_split(out: Path):
    return read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")


# ---------- a fake source cache: the real code paths, no apt-get and no network ----------

HTML = """<html><head><title>t</title></head><body><header><p>LibreOffice 도움말 머리말</p></header>
<div id="DisplayArea"><h1>{title}</h1><p>{body}</p><p>English only paragraph that should be dropped.</p></div>
<footer><p>꼬리말</p></footer></body></html>"""


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SAESSAK_CACHE", str(root))
    deb = root / "debs" / "libreoffice-help-ko"
    docs = deb / "root/usr/share/libreoffice/help/ko/text"
    for i in range(12):
        body = korean_doc(i)
        if i == 3:
            body += f" 담당자 연락처는 010-2345-6789로, 주민번호 {rrn('880808', '2')}입니다."
        (docs / f"shared/{i:02d}.html").parent.mkdir(parents=True, exist_ok=True)
        (docs / f"shared/{i:02d}.html").write_text(HTML.format(title=f"도움말 {i}장", body=body), encoding="utf-8")
    (docs / "shared/english.html").write_text(HTML.format(title="Title", body="Only English here, nothing else."))
    cp = deb / "root/usr/share/doc/libreoffice-help-ko/copyright"
    cp.parent.mkdir(parents=True)
    cp.write_text("Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                  "Files: *\nCopyright: LibreOffice contributors\nLicense: MPL-2.0\n")
    (deb / "fetched.json").write_text(json.dumps({"package": "libreoffice-help-ko", "version": "4:7.4.7-1",
                                                  "deb_file": "x.deb", "deb_sha256": "0" * 64}))
    wheel_dir = root / "wheels" / "konlpy"
    wheel_dir.mkdir(parents=True)
    law = "대한민국헌법\n\n" + korean_doc(100) + "\n\n       제1장 총강\n  제1조 " + korean_doc(101) + \
          "\n\n       제2장 국민의 권리와 의무\n  제10조 " + korean_doc(102) + "\n\n       부칙\n 제1조 " + korean_doc(103)
    with zipfile.ZipFile(wheel_dir / "konlpy-0.6.0-py2.py3-none-any.whl", "w") as z:
        z.writestr("konlpy/data/corpus/kolaw/constitution.txt", law)
    (wheel_dir / "fetched.json").write_text(json.dumps({"requirement": "konlpy==0.6.0",
                                                        "wheel_file": "konlpy-0.6.0-py2.py3-none-any.whl",
                                                        "wheel_sha256": "1" * 64}))
    return root


def test_default_build_from_cached_sources(fake_cache, tmp_path):
    run = tmp_path / "run"
    summary = build_corpus(run / "data")
    out = run / "data"
    assert sorted(p.name for p in out.iterdir()) == ["data_card.json", "data_card.md", "done.json", "logs",
                                                     "train.jsonl", "val.jsonl"]
    assert (out / "logs/write/completions/00000").exists()  # datatrove's logs stay in the run folder
    assert not (run / "work").exists()  # the task files are gone once the folder is complete
    docs = read_split(out)
    assert {d["source"] for d in docs} == {"debian-ko", "kolaw"}
    assert all(set(d) == {"id", "source", "text"} for d in docs)
    assert len({d["id"] for d in docs}) == len(docs)
    assert summary["train"]["documents"] + summary["val"]["documents"] == len(docs) == 12 + 4
    assert summary["val"]["documents"] >= 1
    texts = "\n".join(d["text"] for d in docs)
    assert "010-2345-6789" not in texts and "[PHONE]" in texts and "[RRN]" in texts
    assert "English only" not in texts and "머리말" not in texts and "꼬리말" not in texts

    card = json.loads((out / "data_card.json").read_text(encoding="utf-8"))
    by_name = {s["name"]: s for s in card["sources"]}
    lo, law = by_name["debian-ko"], by_name["kolaw"]
    assert lo["licence"]["name"] == "MPL-2.0" and lo["origin"]["version"] == "4:7.4.7-1"
    assert lo["pii_masked"] == {"phone": 1, "rrn": 1} and law["pii_masked"] == {}
    assert lo["documents_in"] == 13 and lo["documents_out"] == 12 and lo["documents_dropped"] == {"empty": 1}
    assert lo["lines_dropped"]["low_hangul_paragraph"] >= 13
    # characters in count the English paragraphs that the Hangul filter then drops
    assert lo["characters_in"] > lo["characters_out"] + 13 * len("English only paragraph that should be dropped.")
    first = lo["files"][0]
    html_path = fake_cache / "debs/libreoffice-help-ko/root/usr/share/libreoffice/help/ko/text" / first["path"]
    assert first["sha256"] == hashlib.sha256(html_path.read_bytes()).hexdigest()
    assert law["documents_out"] == 4 and law["hangul_syllables_out"] > 100
    assert card["totals"]["documents_out"] == 16 and card["totals"]["pii_masked"] == {"phone": 1, "rrn": 1}
    assert card["split"]["train"]["documents"] + card["split"]["val"]["documents"] == 16
    for name, entry in card["outputs"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert card["tool"]["version"] and card["command"].startswith("build_corpus(")
    md = (out / "data_card.md").read_text(encoding="utf-8")
    assert "debian-ko" in md and "MPL-2.0" in md and "phone 1" in md

    ledger = [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()]
    assert ledger[-1]["stage"] == "data" and ledger[-1]["documents"] == 16
    assert ledger[-1]["characters"] == card["totals"]["characters_out"]


def test_skip_when_done_and_force_rebuilds(fake_cache, tmp_path, capsys):
    out = tmp_path / "run/data"
    assert main(["data", "build", "--out", str(out)]) == 0
    mtime = (out / "done.json").stat().st_mtime_ns
    assert main(["data", "build", "--out", str(out)]) == 0
    assert "skipping" in capsys.readouterr().err and (out / "done.json").stat().st_mtime_ns == mtime
    assert main(["data", "build", "--out", str(out), "--force", "--seed", "3"]) == 0
    card = json.loads((out / "data_card.json").read_text())
    assert card["split"]["seed"] == 3
    assert card["command"] == f"saessak data build --out {out} --seed 3 --force"


def test_opt_in_sources_by_name_and_max_docs(fake_cache, tmp_path):
    out = tmp_path / "run/data"
    build_corpus(out, sources=["kolaw"], max_docs=2)
    docs = read_split(out)
    assert {d["source"] for d in docs} == {"kolaw"} and len(docs) == 2
    with pytest.raises(UserError, match="unknown source 'nope'"):
        build_corpus(tmp_path / "x/data", sources=["nope"])


def test_local_inputs_every_format_and_bad_files_recorded(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text(korean_doc(1), encoding="utf-8")
    (d / "sub/b.md").write_text("# 제목\n\n" + korean_doc(2), encoding="utf-8")
    (d / "c.jsonl").write_text("\n".join([
        json.dumps({"text": korean_doc(3)}, ensure_ascii=False),
        "{not json",
        json.dumps({"body": "필드 없음"}, ensure_ascii=False),
        json.dumps({"text": korean_doc(4) + " 카드 4111-1111-1111-1111"}, ensure_ascii=False),
    ]), encoding="utf-8")
    pq.write_table(pa.table({"text": [korean_doc(5), korean_doc(6)], "n": [1, 2]}), d / "d.parquet")
    pq.write_table(pa.table({"content": [korean_doc(7)]}), d / "e.parquet")
    (d / "bin.txt").write_bytes(b"\x00\x01\x02binary\x00")
    (d / "latin.txt").write_bytes("caf\xe9 한국어".encode("latin-1", errors="ignore") + b"\xe9\xff")
    (d / "empty.txt").write_bytes(b"")
    (d / "notes.csv").write_text("a,b\n")
    (d / "broken.parquet").write_bytes(b"PAR1 not really")
    (d / "nofield.jsonl").write_text(json.dumps({"body": korean_doc(8)}, ensure_ascii=False) + "\n")

    out = tmp_path / "run/data"
    build_corpus(out, inputs=[str(d)])
    docs = read_split(out)
    assert len(docs) == 6
    assert {d_["id"][len(d_["source"]) + 1 :] for d_ in docs} == {"a.txt", "sub/b.md", "c.jsonl:1", "c.jsonl:4",
                                                          "d.parquet:1", "d.parquet:2"}
    assert any("[CARD]" in d_["text"] for d_ in docs)
    card = json.loads((out / "data_card.json").read_text())
    (src,) = card["sources"]
    reasons = {s["path"]: s["reason"] for s in src["skipped_files"]}
    assert reasons["bin.txt"].startswith("binary")
    assert reasons["latin.txt"].startswith("invalid UTF-8")
    assert reasons["empty.txt"] == "empty file"
    assert reasons["notes.csv"].startswith("unsupported file type")
    assert reasons["e.parquet"].startswith("no column 'text'")
    assert reasons["broken.parquet"].startswith("not a readable parquet")
    assert reasons["nofield.jsonl"].startswith("no string field 'text'")
    assert "1 line(s) not valid JSON" in reasons["c.jsonl"] or any(
        "not valid JSON" in s["reason"] for s in src["skipped_files"] if s["path"] == "c.jsonl")
    assert src["pii_masked"] == {"card": 1}

    # a configurable text field picks up the other parquet file
    out2 = tmp_path / "run2/data"
    build_corpus(out2, inputs=[str(d / "e.parquet")], text_field="content")
    assert len(read_split(out2)) == 1


def test_duplicates_counted(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    base = korean_doc(11, sentences=20)
    (d / "1.txt").write_text(base, encoding="utf-8")
    (d / "2.txt").write_text(base.replace(" ", "  "), encoding="utf-8")  # same after whitespace collapse
    (d / "3.txt").write_text(base.replace("좋아합니다", "좋아해요", 1) + " 끝.", encoding="utf-8")  # near
    (d / "4.txt").write_text(korean_doc(12, sentences=20), encoding="utf-8")
    out = tmp_path / "run/data"
    build_corpus(out, inputs=[str(d)])
    src = json.loads((out / "data_card.json").read_text())["sources"][0]
    assert src["dedup_removed"] == {"exact": 1, "near": 1}
    assert src["documents_out"] == 2


def test_missing_input_is_clear_error_exit_2(tmp_path, capsys):
    assert main(["data", "build", "--out", str(tmp_path / "r/data"), "--input", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "saessak: error: --input" in err and "no such file or folder" in err and "Traceback" not in err
    assert not (tmp_path / "r/data").exists()


def test_empty_corpus_after_filtering_is_error(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    (d / "en.txt").write_text("This document is English only and will be dropped by the Hangul filter. " * 3)
    (d / "empty.txt").write_bytes(b"")
    assert main(["data", "build", "--out", str(tmp_path / "r/data"), "--input", str(d)]) == 2
    err = capsys.readouterr().err
    assert "empty corpus after filtering" in err and "low_hangul" in err
    assert not (tmp_path / "r/data").exists()


def test_killed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    import saessak.data.build as build_mod

    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text(korean_doc(1), encoding="utf-8")

    def crash(card):
        raise KeyboardInterrupt  # as if the process were interrupted while writing the card

    monkeypatch.setattr(build_mod, "render_markdown", crash)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(tmp_path / "run/data", inputs=[str(d)])
    assert not (tmp_path / "run/data").exists()
    assert list((tmp_path / "run").glob("*data*")) == []  # no temporary folder left behind
    from saessak.ledger import read_ledger

    # The attempt is in the ledger (it spent time), and says it did not finish.
    assert [r["status"] for r in read_ledger(tmp_path / "run")] == ["interrupted"]


def test_hf_dataset_from_local_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "ds_saved"
    datasets.Dataset.from_dict({"text": [korean_doc(20), korean_doc(21)], "id": ["a", "b"]}).save_to_disk(str(saved))
    out = tmp_path / "run/data"
    build_corpus(out, hf_dataset=str(saved))
    docs = read_split(out)
    assert len(docs) == 2 and {d["source"] for d in docs} == {f"hf:{saved}"}

    pq_dir = tmp_path / "ds_parquet"
    pq_dir.mkdir()
    datasets.Dataset.from_dict({"content": [korean_doc(22), korean_doc(23), korean_doc(24)]}).to_parquet(
        str(pq_dir / "train-00000.parquet"))
    out2 = tmp_path / "run2/data"
    build_corpus(out2, hf_dataset=str(pq_dir), text_field="content", max_docs=2)
    assert len(read_split(out2)) == 2

    with pytest.raises(UserError, match="no such local folder"):
        build_corpus(tmp_path / "run4/data", hf_dataset=str(tmp_path / "missing_ds"))

    # no such text field: skipped with the reason, and nothing else -> empty corpus error
    with pytest.raises(UserError, match="empty corpus.*no text field 'body'"):
        build_corpus(tmp_path / "run3/data", hf_dataset=str(saved), text_field="body")


@pytest.mark.skipif(not (data_cache.deb_is_cached("libreoffice-help-ko") and data_cache.konlpy_is_cached()),
                    reason="default sources not cached (run `saessak data fetch`)")
def test_real_default_sources_small_build(tmp_path):
    out = tmp_path / "run/data"
    assert main(["data", "build", "--out", str(out), "--max-docs", "40"]) == 0
    card = json.loads((out / "data_card.json").read_text(encoding="utf-8"))
    by_name = {s["name"]: s for s in card["sources"]}
    assert by_name["debian-ko"]["licence"]["name"] == "MPL-2.0"
    assert by_name["debian-ko"]["origin"]["package"] == "libreoffice-help-ko"
    assert by_name["kolaw"]["documents_out"] >= 5
    assert by_name["kolaw"]["pii_masked"] == {}  # the constitution's dates and article numbers are not PII
    assert card["command"] == f"saessak data build --out {out} --max-docs 40"
    docs = read_split(out)
    assert any("대한민국" in d["text"] for d in docs)


def test_unreadable_file_skipped_with_reason(tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    (d / "ok.txt").write_text(korean_doc(31), encoding="utf-8")
    (d / "locked.txt").write_text(korean_doc(32), encoding="utf-8")
    real_read = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.txt":  # running as root, chmod 000 would not stop the read
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    # the streamed formats open their files themselves: the same refusal for them
    import builtins

    import pyarrow as pa
    import pyarrow.parquet as pq

    import saessak.data.inputs as inputs_mod

    (d / "locked.jsonl").write_text(json.dumps({"text": korean_doc(33)}, ensure_ascii=False) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": [korean_doc(34)]}), d / "locked.parquet")

    def refuse(path, *a, **k):
        if Path(path).name.startswith("locked."):
            raise PermissionError(13, "Permission denied")
        return builtins.open(path, *a, **k)

    monkeypatch.setattr(inputs_mod, "open", refuse, raising=False)
    real_sha256 = inputs_mod.file_sha256
    monkeypatch.setattr(inputs_mod, "file_sha256", lambda p: refuse(p, "rb").close() or real_sha256(p))
    out = tmp_path / "run/data"
    build_corpus(out, inputs=[str(d)])
    src = json.loads((out / "data_card.json").read_text())["sources"][0]
    assert sorted(src["skipped_files"], key=lambda s: s["path"]) == [
        {"path": f"locked.{ext}", "reason": "unreadable: Permission denied"} for ext in ("jsonl", "parquet", "txt")]
    assert src["documents_out"] == 1


def test_bad_parquet_and_empty_inputs_are_counted_drops(tmp_path):
    """Each bad input is a counted drop, listed in the card with its reason (docs/DATA_CARD.md#bad-input)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(pa.table({"text": [korean_doc(61), korean_doc(62)]}), d / "good.parquet")
    pq.write_table(pa.table({"text": [korean_doc(63), None, None, korean_doc(64)]}), d / "nulls.parquet")
    pq.write_table(pa.table({"text": pa.array([korean_doc(65).encode()], pa.binary())}), d / "bytes.parquet")
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), d / "zero_rows.parquet")
    (d / "empty.parquet").write_bytes(b"")
    pq.write_table(pa.table({"text": [korean_doc(66)]}), d / "cut.parquet")
    (d / "cut.parquet").write_bytes((d / "cut.parquet").read_bytes()[:-30])  # the footer cut off
    rows = [korean_doc(100 + i, sentences=30) for i in range(400)]
    pq.write_table(pa.table({"text": rows}), d / "broken_page.parquet", row_group_size=100, compression="zstd")
    data = bytearray((d / "broken_page.parquet").read_bytes())
    mid = len(data) // 2
    data[mid - 200 : mid + 200] = bytes(400)  # a page zeroed, the footer intact
    (d / "broken_page.parquet").write_bytes(bytes(data))
    (d / "blank.jsonl").write_text("\n  \n\n", encoding="utf-8")

    out = tmp_path / "run/data"
    build_corpus(out, inputs=[str(d)], log=lambda m: None)
    (src,) = json.loads((out / "data_card.json").read_text())["sources"]
    reasons: dict[str, list[str]] = {}
    for s in src["skipped_files"]:
        reasons.setdefault(s["path"], []).append(s["reason"])
    assert "good.parquet" not in reasons
    assert reasons["nulls.parquet"] == ["2 row(s) with a null 'text'"]
    assert reasons["bytes.parquet"] == ["column 'text' holds binary, not text"]
    assert reasons["zero_rows.parquet"] == ["no rows"]
    assert reasons["empty.parquet"] == ["empty file"]
    assert reasons["cut.parquet"][0].startswith("not a readable parquet file (ArrowInvalid: ")
    (broken,) = reasons["broken_page.parquet"]
    assert broken.startswith("unreadable after row ")
    kept_before_break = int(broken.split()[3])
    assert 0 <= kept_before_break < len(rows)
    assert reasons["blank.jsonl"] == ["blank lines only"]
    # every file read is listed with its hash, the skipped ones too
    assert {f["path"] for f in src["files"]} == {p.name for p in d.iterdir()}
    ids = {r["id"].rsplit(":", 2)[-2] for r in read_split(out)}
    assert {"good.parquet", "nulls.parquet"} <= ids and not ids & {"bytes.parquet", "cut.parquet", "zero_rows.parquet"}


def test_empty_input_folder_is_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_text("x")
    assert main(["data", "build", "--out", str(tmp_path / "r/data"), "--input", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert f"saessak: error: --input {tmp_path / 'empty'}: the folder holds no files" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
