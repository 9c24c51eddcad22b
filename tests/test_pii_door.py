"""PII at the door: every path into training masks every identifier type the masker knows.

Each path is fed text dense with valid identifiers (several per line, every type, in every chat
role) and the test reads what the trainer reads: for SFT the token ids the packer produced,
decoded with the run's tokenizer; for the corpus the split files pretraining reads. `--keep-pii`
keeps them, says so on stderr and records it.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from saessak.cli import main
from saessak.data.ingest import Door
from saessak.io import read_json, read_jsonl
from saessak.pii import PII_TYPES, PLACEHOLDERS, find_pii
from saessak.report.pii_section import pii_section
from saessak.runfolder import RunFolder
from tests.finetune_fixtures import make_run
from tests.pii_numbers import brn, card, crn, frn, rrn

# How each type is introduced in a sentence (account numbers need a bank or 계좌 before them).
_LEAD = {"rrn": "주민번호", "frn": "외국인등록번호", "crn": "법인등록번호", "brn": "사업자등록번호", "card": "카드",
         "driver_license": "운전면허", "passport": "여권", "phone": "전화", "account": "신한은행 계좌", "email": "메일",
         "ip": "접속 IP"}


def identifiers(i: int) -> dict[str, str]:
    """One valid identifier of every type, different for every i (check digits by the official rules)."""
    ymd = f"{70 + i % 25:02d}{1 + i % 12:02d}{10 + i % 18:02d}"
    return {
        "rrn": rrn(ymd, "12"[i % 2], f"{23456 + i:05d}"),
        "frn": frn(ymd, "56"[i % 2], f"{34567 + i:05d}"),
        "crn": crn(f"1345110{i:05d}"),  # 134511 is no date, so no RRN reading competes
        "brn": brn(f"2208162{i % 100:02d}"),
        "card": card(f"4111111111{i:05d}"),
        "driver_license": f"{11 + i % 16}-{10 + i % 90:02d}-{100000 + i:06d}-{10 + i % 90:02d}",
        "passport": f"M{100 + i % 900:03d}A{1000 + i:04d}",
        "phone": f"010-{2000 + i:04d}-{5000 + i:04d}",
        "account": f"110-{100 + i % 900:03d}-{456789 + i:06d}",
        "email": f"user{i}@example.co.kr",
        "ip": f"192.168.{i % 256}.{(i * 7) % 256}",
    }


def dense_line(ids: dict[str, str]) -> str:
    return ", ".join(f"{_LEAD[t]} {v}" for t, v in ids.items()) + "입니다."


def test_generator_covers_every_type_the_masker_knows():
    # If the masker learns a new type, this test asks for it here too.
    assert set(identifiers(0)) == set(PII_TYPES)
    for i in range(12):
        ids = identifiers(i)
        line = dense_line(ids)
        assert sorted((e.type, e.text) for e in find_pii(line)) == sorted(ids.items()), line


WORDS = ["학생", "도서관", "친구", "공부", "서울", "바다", "음식", "김치", "버스", "회사", "시장", "날씨", "가족", "영화",
         "음악", "운동", "병원", "학교", "선생님", "문서", "사진", "여행", "겨울", "여름"]
ENDINGS = ["을 좋아합니다.", "에 갔습니다.", "이 많습니다.", "와 함께 지냈다.", "에 대해 이야기했다.", "을 찾았다."]


def prose(seed: int, sentences: int = 14) -> str:
    rng = random.Random(seed)
    return " ".join(f"{rng.choice(WORDS)} {rng.choice(WORDS)}{rng.choice(ENDINGS)}" for _ in range(sentences))


def assert_masked(texts: list[str], planted: list[dict[str, str]]) -> None:
    """No planted identifier in `texts`; each type's placeholder as often as it was planted."""
    joined = "\n".join(texts)
    survivors = [v for ids in planted for v in ids.values() if v in joined]
    assert not survivors, f"identifiers reached the trainer: {survivors[:5]}"
    planted_per_type = Counter(t for ids in planted for t in ids)
    for t, n in planted_per_type.items():
        assert joined.count(PLACEHOLDERS[t]) == n, (t, joined.count(PLACEHOLDERS[t]), n)


def assert_kept(texts: list[str], planted: list[dict[str, str]]) -> None:
    joined = "\n".join(texts)
    missing = [v for ids in planted for v in ids.values() if v not in joined]
    assert not missing, f"--keep-pii lost identifiers: {missing[:5]}"
    assert not any(p in joined for p in PLACEHOLDERS.values())


def per_type(planted: list[dict[str, str]]) -> dict[str, int]:
    return dict(sorted(Counter(t for ids in planted for t in ids).items()))


# ----------------------------------------------------------------------------- the door itself


def test_door_masks_every_role_keeps_structure_and_counts_per_source(capsys):
    ids = identifiers(3)
    types = list(ids)
    conv = [{"role": "system", "content": dense_line({t: ids[t] for t in types[:4]})},
            {"role": "user", "content": dense_line({t: ids[t] for t in types[4:8]})},
            {"role": "assistant", "content": dense_line({t: ids[t] for t in types[8:]})}]
    door = Door(stage="sft")
    out = door.messages(conv, "--data a.jsonl")
    assert [m["role"] for m in out] == ["system", "user", "assistant"]
    assert_masked([m["content"] for m in out], [ids])
    door.messages([{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "네"}], "--hf-dataset b")
    assert door.record() == {"keep_pii": False, "masked": {"--data a.jsonl": per_type([ids]), "--hf-dataset b": {}},
                             "total": per_type([ids])}
    assert capsys.readouterr().err == ""  # masking is the default: nothing to warn about

    keep = Door(keep_pii=True, stage="sft")
    assert keep.messages(conv, "x") == conv
    assert keep.record() == {"keep_pii": True, "kept": {"x": per_type([ids])}, "total": per_type([ids])}
    keep.report(lambda m: None)
    err = capsys.readouterr().err
    assert "WARNING" in err and "NOT masked" in err and "11 identifiers left unmasked in x" in err


# ----------------------------------------------------------------------------- SFT: --data and --hf-dataset

SEQ_LEN = 512


def chat_data(n: int = 11) -> tuple[list[list[dict]], list[dict[str, str]]]:
    """n conversations; the types rotate over system, user and assistant, so each type sits in
    every role in some conversation. Returns (conversations, the identifiers planted)."""
    convs, planted = [], []
    for k in range(n):
        ids = identifiers(100 + k)
        order = [list(ids)[(j + k) % len(ids)] for j in range(len(ids))]
        parts = [order[:4], order[4:8], order[8:]]
        convs.append([{"role": role, "content": dense_line({t: ids[t] for t in part})}
                      for role, part in zip(("system", "user", "assistant"), parts)])
        planted.append(ids)
    return convs, planted


def _write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def run_sft_capturing_rows(tmp_path, monkeypatch, extra: list[str]) -> tuple[RunFolder, list[str]]:
    """`saessak sft` through the CLI on a tiny run; returns the run and the text of every packed
    conversation (train and validation rows), decoded from the ids the trainer consumes."""
    import saessak.sft.stage as sft_stage
    from saessak.tokenizer import Tokenizer

    packed = []
    real_pack = sft_stage.pack

    def capture(*a, **k):
        rows = real_pack(*a, **k)
        packed.append(rows)
        return rows

    monkeypatch.setattr(sft_stage, "pack", capture)
    run = make_run(tmp_path / "run", max_position_embeddings=SEQ_LEN)
    code = main(["sft", "--run", str(run), "--preset", "micro", "--max-steps", "1", "--batch-size", "1",
                 "--seq-len", str(SEQ_LEN), "--task-items-per-family", "1", "--identity-items", "1", *extra])
    assert code == 0
    assert len(packed) == 2  # validation rows, then training rows
    tok = Tokenizer.load(run / "tokenizer")
    texts = []
    for rows in packed:
        for r in range(len(rows)):
            seg = rows.segment_ids[r]
            for s in seg.unique().tolist():
                if s >= 0:
                    texts.append(tok.decode(rows.input_ids[r][seg == s].tolist()))
    return RunFolder(run), texts


def _sharegpt(conv: list[dict]) -> list[dict]:
    speaker = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"from": speaker[m["role"]], "value": m["content"]} for m in conv]


@pytest.mark.parametrize("path", ["--data", "--hf-dataset"])
def test_sft_trains_on_masked_chat_data(tmp_path, monkeypatch, capsys, path):
    convs, planted = chat_data()
    f = tmp_path / "chat.jsonl"
    if path == "--data":
        _write_jsonl(f, [{"messages": c} for c in convs])
        arg, source = str(f), f"--data {f}"
    else:  # a local data file through `datasets` (no network), ShareGPT layout
        _write_jsonl(f, [{"conversations": _sharegpt(c)} for c in convs])
        arg = f"json:{f}"
        source = f"--hf-dataset {arg}"
    rf, texts = run_sft_capturing_rows(tmp_path, monkeypatch, [path, arg])
    # Nothing was cut off: every planted conversation is whole in the rows (else "none survives" proves little).
    assert sum(t.count("입니다.") for t in texts) >= 3 * len(convs)
    assert_masked(texts, planted)
    pii = read_json(rf.done_path("sft"))["pii"]
    assert pii == {"keep_pii": False, "masked": {source: per_type(planted)}, "total": per_type(planted)}
    assert f"masked {11 * len(convs)} identifiers in {source}" in capsys.readouterr().out
    lines, facts = pii_section(rf)
    assert facts["sources"] == [{"stage": "sft", "source": source, "keep_pii": False, "counts": per_type(planted),
                                 "total": 11 * len(convs)}]
    assert any(source in line and f"{11 * len(convs)} masked" in line for line in lines)


def test_sft_keep_pii_keeps_identifiers_warns_and_records(tmp_path, monkeypatch, capsys):
    convs, planted = chat_data(4)
    f = tmp_path / "chat.jsonl"
    _write_jsonl(f, [{"messages": c} for c in convs])
    rf, texts = run_sft_capturing_rows(tmp_path, monkeypatch, ["--data", str(f), "--keep-pii"])
    assert_kept(texts, planted)
    err = capsys.readouterr().err
    assert "WARNING" in err and "--keep-pii" in err and f"{11 * len(convs)} identifiers left unmasked" in err
    pii = read_json(rf.done_path("sft"))["pii"]
    assert pii == {"keep_pii": True, "kept": {f"--data {f}": per_type(planted)}, "total": per_type(planted)}
    lines, facts = pii_section(rf)
    assert facts["keep_pii"] is True
    assert any("kept unmasked (--keep-pii)" in line for line in lines)


# ----------------------------------------------------------------------------- the corpus build


def corpus_inputs(tmp_path) -> tuple[list[str], dict[str, list[dict[str, str]]]]:
    """A local JSON Lines file and a `save_to_disk` dataset, every document dense with identifiers.
    Returns (the `data build` arguments, identifiers planted per source name)."""
    datasets = pytest.importorskip("datasets")

    def docs(first: int, n: int):
        out, planted = [], []
        for i in range(first, first + n):
            a, b = identifiers(i), identifiers(1000 + i)
            out.append(f"{prose(i)}\n{dense_line(a)}\n{prose(5000 + i, 6)} {dense_line(b)}")
            planted += [a, b]
        return out, planted

    local_docs, local_planted = docs(0, 6)
    jsonl = tmp_path / "mine.jsonl"
    _write_jsonl(jsonl, [{"text": t} for t in local_docs])
    hf_docs, hf_planted = docs(50, 4)
    saved = tmp_path / "saved_ds"
    datasets.Dataset.from_dict({"text": hf_docs}).save_to_disk(str(saved))
    return (["--input", str(jsonl), "--hf-dataset", str(saved)],
            {f"input:{jsonl}": local_planted, f"hf:{saved}": hf_planted})


def test_corpus_build_masks_local_files_and_datasets(tmp_path, capsys):
    args, planted = corpus_inputs(tmp_path)
    out = tmp_path / "run" / "data"
    assert main(["data", "build", "--out", str(out), *args]) == 0
    docs = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    assert len(docs) == 10  # every document survives the filters and dedup, so the counts below are exact
    assert_masked([d["text"] for d in docs], [ids for p in planted.values() for ids in p])
    card = read_json(out / "data_card.json")
    assert {s["name"]: s["pii_masked"] for s in card["sources"]} == {k: per_type(v) for k, v in planted.items()}
    assert card["settings"]["keep_pii"] is False
    assert read_json(out / "done.json")["keep_pii"] is False
    assert "WARNING" not in capsys.readouterr().err
    lines, facts = pii_section(RunFolder(out.parent))
    assert [(r["stage"], r["source"], r["total"]) for r in facts["sources"]] == \
        [("data", k, 11 * len(v)) for k, v in planted.items()]
    assert not facts["keep_pii"] and any("132 masked" in line for line in lines)


def test_corpus_build_keep_pii_keeps_identifiers_warns_and_records(tmp_path, capsys):
    args, planted = corpus_inputs(tmp_path)
    out = tmp_path / "run" / "data"
    assert main(["data", "build", "--out", str(out), *args, "--keep-pii"]) == 0
    docs = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    assert_kept([d["text"] for d in docs], [ids for p in planted.values() for ids in p])
    err = capsys.readouterr().err
    assert "WARNING" in err and "NOT masked" in err and "identifiers left unmasked in input:" in err
    card = read_json(out / "data_card.json")
    assert card["settings"]["keep_pii"] is True and "--keep-pii" in card["command"]
    assert all(s["pii_masked"] == {} for s in card["sources"])
    assert {s["name"]: s["pii_kept"] for s in card["sources"]} == {k: per_type(v) for k, v in planted.items()}
    done = read_json(out / "done.json")
    assert done["keep_pii"] is True and done["pii_masked"] == {} and sum(done["pii_kept"].values()) == 220
    assert "PII NOT masked (--keep-pii)" in (out / "data_card.md").read_text(encoding="utf-8")
    _, facts = pii_section(RunFolder(out.parent))
    assert facts["keep_pii"] and all(r["keep_pii"] for r in facts["sources"])


def test_report_section_names_stages_with_no_outside_data_or_no_record(tmp_path):
    from saessak.io import write_json

    rf = RunFolder(tmp_path / "run")
    lines, facts = pii_section(rf)
    assert facts["sources"] == [] and "_No stage of this run took data in._" in lines
    write_json(rf.done_path("sft"), {"steps": 3})  # an SFT stage from before the door
    lines, facts = pii_section(rf)
    assert facts["unrecorded"] == ["sft"] and any("no personal-data record" in line for line in lines)
    write_json(rf.done_path("sft"), {"steps": 3, "pii": Door(stage="sft").record()})  # generated data only
    lines, facts = pii_section(rf)
    assert facts["generated_only"] == ["sft"] and facts["unrecorded"] == []
    assert any("sft: no outside data" in line for line in lines)
