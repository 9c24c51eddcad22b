"""띄어쓰기 restoration: the model gets a sentence with its spaces removed and writes it back spaced.

Grading is F1 over word boundaries (the positions between characters where a space goes),
counted only when the response keeps the characters unchanged. Some boundaries are optional by
the spelling rules (한글 맞춤법), and are left out of both sides before scoring:
- a counter after Arabic digits may be attached or spaced (3개 / 3 개, 제43항 다만);
- an auxiliary verb after -아/-어 may be attached (읽어 보았다 / 읽어보았다, 제47항).

Sentences are generated from a small grammar by default; with `corpus=PATH` (a run folder's
`data/val.jsonl`, or `val.parquet`) they are cut from its texts, bucketed by length per level.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

from saessak.data.split import iter_docs
from saessak.errors import UserError
from saessak.hangul import is_syllable
from saessak.tasks.base import SPLITS, Draft, normalize, split_of
from saessak.tasks.josa import attach

TASK = "spacing"

SUBJECTS = "나는 우리는 동생이 친구가 아기가 할머니께서 선생님께서 고양이가 강아지가 아이들이 언니가 형이".split()
INTRANSITIVE = "잔다 웃는다 운다 달린다 쉰다 걷는다 노래한다 일어났다 떠났다 돌아왔다 기다렸다 놀았다".split()
TIMES = "오늘 어제 내일 아침에 저녁에 주말에 방학에 새벽에 점심에 밤마다".split()
PLACES = "학교에서 공원에서 집에서 도서관에서 시장에서 바닷가에서 운동장에서 식당에서 부엌에서 교실에서".split()
ADVERBS = "천천히 열심히 함께 조용히 빨리 다시 처음으로 가끔".split()
# object -> (past verb, -아/-어 stem for auxiliaries, -고 stem)
OBJECT_VERBS = {
    "책을": ("읽었다", "읽어", "읽고"),
    "사과를": ("먹었다", "먹어", "먹고"),
    "편지를": ("썼다", "써", "쓰고"),
    "노래를": ("불렀다", "불러", "부르고"),
    "그림을": ("그렸다", "그려", "그리고"),
    "숙제를": ("끝냈다", "끝내", "끝내고"),
    "빵을": ("샀다", "사", "사고"),
    "영화를": ("보았다", "봐", "보고"),
    "음악을": ("들었다", "들어", "듣고"),
    "방을": ("치웠다", "치워", "치우고"),
}
# (thing, counter, past verb, -아/-어 stem, -고 stem)
COUNTED = (
    ("사과", "개", "먹었다", "먹어", "먹고"),
    ("연필", "자루", "샀다", "사", "사고"),
    ("책", "권", "읽었다", "읽어", "읽고"),
    ("우유", "잔", "마셨다", "마셔", "마시고"),
    ("고양이", "마리", "키웠다", "키워", "키우고"),
    ("편지", "통", "썼다", "써", "쓰고"),
)
NATIVE_COUNT = "한 두 세 네 다섯 여섯 일곱 여덟 아홉 열".split()
AUXILIARY = (("보았다", True), ("두었다", True), ("싶었다", False))  # (word, may attach: -어 only)
WORD_COUNTS = {1: (2, 3), 2: (4, 5), 3: (6, 8), 4: (9, 12), 5: (13, 20)}  # corpus buckets


def _generated(rng: random.Random, level: int) -> tuple[list[str], set[int]]:
    """(words, optional joins): join i is the boundary after word i."""
    subj = rng.choice(SUBJECTS)
    if level == 1:
        return [subj, rng.choice(INTRANSITIVE)], set()
    obj = rng.choice(sorted(OBJECT_VERBS))
    past, eo, go = OBJECT_VERBS[obj]
    if level == 2:
        return [subj, obj, past], set()
    words = [rng.choice(TIMES), subj, rng.choice(PLACES)]
    optional: set[int] = set()
    if level >= 4:
        # A counted object instead of a bare one: "사과 3개를" (attached digits) or "사과 세 개를".
        thing, counter, past, eo, go = rng.choice(COUNTED)
        count = rng.choice([str(rng.randint(2, 30)), rng.choice(NATIVE_COUNT)])
        counted = attach(counter, "을/를")
        words += [rng.choice(ADVERBS), thing]
        words += [count + counted] if count.isdigit() else [count, counted]
    else:
        words.append(obj)
    aux, may_attach = rng.choice(AUXILIARY)
    if level >= 4 and rng.random() < 0.6:
        words += [eo if may_attach else go, aux]
        if may_attach:
            optional.add(len(words) - 2)
    else:
        words.append(past)
    if level == 5:
        # Two clauses: the first verb ends in -고 (읽었다 -> 읽었고,).
        words[-1] = words[-1][:-1] + "고,"
        words += [rng.choice(SUBJECTS), rng.choice(ADVERBS), rng.choice(INTRANSITIVE)]
    return words, optional


def _digit_joins(sentence: str) -> set[int]:
    """Boundaries after a digit run followed by a non-digit: spacing there is optional."""
    joined = sentence.replace(" ", "")
    return {i for i in range(1, len(joined)) if joined[i - 1].isdigit() and not joined[i].isdigit()
            and joined[i] not in ",."}


def boundaries(sentence: str) -> set[int]:
    """Positions (counted in non-space characters) where a space stands."""
    out, pos = set(), 0
    for ch in sentence.strip():
        if ch == " ":
            out.add(pos)
        else:
            pos += 1
    return out


def _optional_positions(words: list[str], optional_joins: set[int]) -> set[int]:
    sentence = " ".join(words)
    positions = {sum(len(w) for w in words[: i + 1]) for i in optional_joins}
    return positions | _digit_joins(sentence)


def make(rng: random.Random, level: int, corpus: str | None = None, split: str = "train") -> Draft:
    if corpus:
        # Drawn from the requested split's sentences only, so a small corpus cannot starve a split.
        bucket = _corpus_buckets(corpus)[level, split]
        if not bucket:
            lo, hi = WORD_COUNTS[level]
            raise UserError(f"{corpus}: no {split} sentences of {lo}-{hi} Korean words for spacing level {level}")
        sentence = rng.choice(bucket)
        words, joins = sentence.split(), set()
    else:
        words, joins = _generated(rng, level)
        sentence = " ".join(words)
    joined = sentence.replace(" ", "")
    meta = {"joined": joined, "optional": sorted(_optional_positions(words, joins)),
            "source": "corpus" if corpus else "generated"}
    return Draft(f"띄어쓰기를 바르게 하세요: {joined}", sentence, meta, key=sentence)


_FINAL_MARKS = ".!?。…"


def f1(pred: set[int], gold: set[int]) -> float:
    if not pred and not gold:
        return 1.0
    hit = len(pred & gold)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(pred), hit / len(gold)
    return 2 * precision * recall / (precision + recall)


def check(example: dict, answer: str) -> tuple[float, object]:
    meta = example["meta"]
    text = re.sub(r"\s+", " ", normalize(answer)).strip().strip("'\"“”‘’「」")
    # The answer parser drops a final full stop; the sentence's own final mark does not count either.
    if text.replace(" ", "").rstrip(_FINAL_MARKS) != meta["joined"].rstrip(_FINAL_MARKS):
        return 0.0, text  # changed, dropped or added characters: nothing to score
    optional = set(meta.get("optional", []))
    pred = boundaries(text) - optional
    gold = boundaries(example["answer"]) - optional
    return f1(pred, gold), text


def solution(example: dict) -> str:
    words = example["answer"].split()
    return f"낱말을 나누면 {' / '.join(words)}입니다.\n정답: {example['answer']}"


# ---------------------------------------------------------------- corpus sentences

_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


@functools.lru_cache(maxsize=4)
def _corpus_buckets(path: str) -> dict[tuple[int, str], list[str]]:
    """Sentences from a corpus file (a run's `data/val.jsonl` or `val.parquet`) by (level, split)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: corpus file not found")
    seen = set()
    buckets = {(lvl, split): [] for lvl in WORD_COUNTS for split in SPLITS}
    for doc in iter_docs(p):  # a run's split file, .jsonl or .parquet; a bad line or row is a UserError
        # Lines are separate units (titles, list items), then sentence ends split them further.
        pieces = (s for para in normalize(doc["text"]).splitlines() for s in _SENTENCE_END.split(para))
        for sentence in pieces:
            sentence = " ".join(sentence.split())
            if sentence in seen or not _mostly_hangul(sentence):
                continue
            seen.add(sentence)
            count = len(sentence.split())
            for lvl, (lo, hi) in WORD_COUNTS.items():
                if lo <= count <= hi:
                    buckets[lvl, split_of(TASK, sentence)].append(sentence)
    # Line order decides nothing: sort so the same sentences give the same examples.
    for items in buckets.values():
        items.sort()
    return buckets


def _mostly_hangul(sentence: str) -> bool:
    letters = [c for c in sentence if c.isalpha()]
    hangul = sum(1 for c in letters if is_syllable(c))
    return len(letters) >= 4 and hangul >= 0.8 * len(letters)
