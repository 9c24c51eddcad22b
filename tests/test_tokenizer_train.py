"""`saessak tokenizer train`: outputs, Korean stats, skip/force, bad input."""

import json

import pytest

from saessak.cli import main
from saessak.tokenizer import Tokenizer
from saessak.tokenizer.stats import tokenizer_stats
from tests.run_fixtures import make_run


@pytest.fixture()
def run(tmp_path):
    return make_run(tmp_path / "run")


def test_train_writes_tokenizer_stats_marker_and_ledger(run):
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "600"]) == 0
    tok = Tokenizer.load(run / "tokenizer" / "tokenizer.json")
    assert tok.bos_id == 1 and tok.eot_id == 7  # reserved ids the later stages rely on
    stats = json.loads((run / "tokenizer" / "stats.json").read_text())
    assert stats["vocab_size"] == tok.vocab_size <= 600
    assert set(stats["per_source"]) == {"gen-a", "gen-b"}
    # The generated corpus repeats a few words: a trained BPE must pack several syllables per token.
    assert stats["hangul_chars_per_token"] > 1.5
    assert 0 <= stats["byte_fallback_rate"] < 0.01
    done = json.loads((run / "tokenizer" / "done.json").read_text())
    assert done["vocab_size"] == tok.vocab_size and len(done["tokenizer_sha256"]) == 64
    ledger = [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()]
    assert ledger[-1]["stage"] == "tokenizer" and ledger[-1]["vocab_size"] == tok.vocab_size


def test_digits_split_and_roundtrip(run):
    main(["tokenizer", "train", "--run", str(run), "--vocab-size", "600"])
    tok = Tokenizer.load(run / "tokenizer")
    ids = tok.encode("2024년 3월 15일")
    pieces = [tok.id_to_token(i) for i in ids]
    digit_pieces = [p for p in pieces if not p.startswith("<0x") and any(c.isdigit() for c in p)]
    assert digit_pieces == list("2024315")  # one token per digit, never merged with 년/월/일
    text = "학생들은 2030년에 도서관에서 책을 읽었다. 😀 unseen 漢字"
    assert tok.decode(tok.encode(text)) == text  # byte fallback: nothing becomes <unk>


def test_transformers_loads_the_same_tokenizer(run):
    transformers = pytest.importorskip("transformers")
    main(["tokenizer", "train", "--run", str(run), "--vocab-size", "600"])
    ours = Tokenizer.load(run / "tokenizer")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(run / "tokenizer" / "tokenizer.json"))
    text = "선생님께서 시장에서 사과를 샀습니다. 12,000원"
    assert hf.encode(text, add_special_tokens=False) == ours.encode(text)


def test_skips_when_done_and_force_retrains(run, capsys):
    main(["tokenizer", "train", "--run", str(run), "--vocab-size", "600"])
    path = run / "tokenizer" / "tokenizer.json"
    before = path.stat().st_mtime_ns
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "500"]) == 0
    assert "complete" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == before
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "500", "--force"]) == 0
    assert Tokenizer.load(path).vocab_size <= 500


def test_hangul_chars_per_token_counts_only_hangul_spans():
    from tests.helpers import tiny_tokenizer

    tok = tiny_tokenizer()
    docs = [{"source": "s", "text": "abc 123 !!"}, {"source": "s", "text": "대한민국"}]
    stats = tokenizer_stats(tok, docs)
    n_tokens = len(tok.encode("대한민국"))
    covering = sum(1 for t in tok.encode("대한민국") if any("\uac00" <= c <= "\ud7a3" for c in tok.id_to_token(t)))
    assert stats["hangul_chars"] == 4
    assert stats["hangul_chars_per_token"] == round(4 / covering, 4)
    assert stats["tokens"] == n_tokens + len(tok.encode("abc 123 !!"))


@pytest.mark.parametrize("breakage,needle", [
    ("missing", "not found"),
    ("empty", "has no text"),
    ("bad_json", "train.jsonl:2: not valid JSON"),
    ("no_text", "string 'text' field"),
])
def test_bad_data_is_a_clear_error_and_writes_nothing(run, breakage, needle, capsys):
    train = run / "data" / "train.jsonl"
    if breakage == "missing":
        train.unlink()
    elif breakage == "empty":
        train.write_text("")
    elif breakage == "bad_json":
        train.write_text('{"id": "a", "source": "s", "text": "가나다"}\n{oops\n')
    elif breakage == "no_text":
        train.write_text('{"id": "a", "source": "s", "body": "가나다"}\n')
    assert main(["tokenizer", "train", "--run", str(run)]) == 2
    assert needle in capsys.readouterr().err
    assert not (run / "tokenizer" / "tokenizer.json").exists()
    assert not (run / "tokenizer" / "done.json").exists()


def test_unknown_preset_lists_valid_ones(run, capsys):
    assert main(["tokenizer", "train", "--run", str(run), "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset" in err and "cpu-tiny" in err and "micro" in err


def test_bad_vocab_size_with_force_keeps_the_finished_stage(run, capsys):
    main(["tokenizer", "train", "--run", str(run), "--vocab-size", "600"])
    before = (run / "tokenizer" / "tokenizer.json").read_bytes()
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "100", "--force"]) == 2
    assert "--vocab-size 100" in capsys.readouterr().err
    assert (run / "tokenizer" / "done.json").exists()
    assert (run / "tokenizer" / "tokenizer.json").read_bytes() == before


def test_max_chars_bounds_the_training_sample(run, tmp_path):
    from saessak.data.split import iter_docs
    from saessak.tokenizer.stage import sample_texts

    train = run / "data" / "train.jsonl"
    docs = [d["text"] for d in iter_docs(train)]
    total = sum(map(len, docs))
    assert list(sample_texts(train, total, total)) == docs  # a corpus within the bound is used whole
    bound = total // 4
    sample = list(sample_texts(train, bound, total))
    assert 0 < sum(map(len, sample)) <= bound
    assert sample == list(sample_texts(train, bound, total))  # seeded: the same sample every time
    positions = [docs.index(t) for t in sample]
    assert positions[-1] > len(docs) // 2  # spread over the split, not its first quarter
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "600", "--max-chars", str(bound)]) == 0
    done = json.loads((run / "tokenizer" / "done.json").read_text())
    assert done["max_chars"] == bound and done["train_docs"] == len(sample)
    assert main(["tokenizer", "train", "--run", str(run), "--force", "--max-chars", "0"]) == 2
