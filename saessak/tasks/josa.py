"""Particles (조사) whose form depends on the word before them, and the `josa` task family.

One rule covers all eight pairs: a word whose spoken reading ends in a final consonant (받침)
takes the first form (은, 이, 을, 과, 아, 이나, 이랑, 으로), a vowel-final word the second. The one
exception: 으로/로 treats a ㄹ-final word like a vowel-final one (연필로, 서울로).
What counts is the *spoken* reading: 3 is 삼 (3을), 2 is 이 (2를), 1 is 일 (1로), 10 is 십, TV is
티비 (TV를), URL ends in 엘 (URL로).
"""

from __future__ import annotations

import random
import re

from saessak.tasks.base import Draft, normalize
from saessak.hangul import RIEUL_FINAL, final_index, is_syllable
from saessak.tasks.readings import sino

TASK = "josa"

# pair -> (form after a final consonant, form after a vowel)
PAIRS = {
    "은/는": ("은", "는"),
    "이/가": ("이", "가"),
    "을/를": ("을", "를"),
    "과/와": ("과", "와"),
    "아/야": ("아", "야"),
    "이나/나": ("이나", "나"),
    "이랑/랑": ("이랑", "랑"),
    "으로/로": ("으로", "로"),
}

# How English letters are read in Korean; acronyms are read letter by letter.
LETTER_NAMES = {
    "A": "에이", "B": "비", "C": "씨", "D": "디", "E": "이", "F": "에프", "G": "지", "H": "에이치",
    "I": "아이", "J": "제이", "K": "케이", "L": "엘", "M": "엠", "N": "엔", "O": "오", "P": "피",
    "Q": "큐", "R": "알", "S": "에스", "T": "티", "U": "유", "V": "브이", "W": "더블유", "X": "엑스",
    "Y": "와이", "Z": "제트",
}

COMMON_WORDS = (
    "사과 책 학교 친구 바다 나무 의자 컴퓨터 사람 가방 우유 동생 선생님 강아지 고양이 모자 신발 "
    "시계 버스 기차 비행기 공원 병원 은행 커피 빵 밥 김치 라면 노래 영화 편지 사진 꽃 눈 산 강 집 "
    "방 창문 문 차 배 소 개 새 토끼 호랑이 여우 곰 오리 가수 의사 경찰 엄마 아빠 누나 형 언니 오빠 "
    "할머니 할아버지 아기 숙제 시험 공책 지우개 우산 바지 치마 양말 장갑 거울 냉장고 침대 숟가락 "
    "젓가락 수박 딸기 포도 감 귤 두부 계란 생선 고기"
).split()
RIEUL_WORDS = (
    "물 말 길 발 별 달 돌 칼 글 실 술 쌀 귤 딸 팔 얼굴 지하철 연필 가을 겨울 교실 서울 시골 마을 "
    "하늘 바늘 그늘 오늘 내일 호텔 터널 케이블 볼펜 핸들 사슴벌레 소설 휴일 주말"
).split()
RARE_WORDS = (
    "윤슬 미리내 가랑비 너울 노을 산들바람 도깨비 두레박 맷돌 절구 멍석 무지개 이엉 처마 툇마루 "
    "대들보 징검다리 소나기 함지박 다듬이 물레방아 버선 댕기 노리개 갓끈 솟대 장승 널뛰기 씨름 "
    "그네 팽이 연날리기 굴렁쇠 엿장수 고드름 진눈깨비 아지랑이 싸라기눈 옹달샘 시냇물 개울 "
    "모래톱 갯벌 썰물 밀물 해오라기 두루미 부엉이 올빼미 반딧불 귀뚜라미 메뚜기 잠자리 나비 "
    "가재 다슬기 우렁이 도토리 상수리 밤송이 갈대 억새 민들레 할미꽃 진달래 철쭉 동백 매화 국화"
).split()
NAMES = "민준 서연 지우 하은 철수 영희 수진 도윤 지민 유나 현우 서준 예린 은비 태민 소율 다인 건우".split()
ACRONYMS = (
    "TV PC CD DVD USB URL KTX SK LG KB IBM BBC CNN NASA DNA CEO IT AI SNS PDF MP3 GPS ATM VIP FBI "
    "UN EU OECD FIFA SOS ID PIN LED LCD NGO API HTML SQL CPU GPU RAM SSD IQ DJ PD MC"
).split()

# Sentences with several blanks; `{}` slots are filled with a word and its pair in order.
MULTI_TEMPLATES = (
    ("{}({}) {}({}) 좋아한다.", ("은/는", "을/를")),
    ("{}({}) {}({}) 갔다.", ("이/가", "으로/로")),
    ("{}({}) {}({}) 있다.", ("과/와", "이/가")),
    ("{}({}) {}({}) 주세요.", ("이나/나", "을/를")),
    ("{}({}) {}({}) 다르다.", ("이랑/랑", "은/는")),
    ("{}({}), {}({}) 가져와.", ("아/야", "을/를")),
    ("{}({}) {}({}) {}({}) 샀다.", ("은/는", "과/와", "을/를")),
    ("{}({}) {}({}) {}({}) 옮겼다.", ("이/가", "으로/로", "을/를")),
    ("{}({}) {}({}) {}({}) 간다.", ("이랑/랑", "이/가", "으로/로")),
    ("{}({}), {}({}) {}({}) 보여 줘.", ("아/야", "이나/나", "을/를")),
)


def spoken_last_syllable(word: str) -> str:
    """The last syllable of how `word` is read aloud (삼 for '3', 엘 for 'URL', 과 for '사과')."""
    word = normalize(word).strip()
    if not word:
        raise ValueError("empty word")
    last = word[-1]
    if is_syllable(last):
        return last
    digits = re.search(r"\d+$", word)
    if digits:
        return sino(int(digits.group()))[-1]
    if last.upper() in LETTER_NAMES:
        return LETTER_NAMES[last.upper()][-1]
    raise ValueError(f"cannot tell how {word!r} ends when read aloud")


def particle(word: str, pair: str) -> str:
    """The form of `pair` (e.g. '을/를') that follows `word`."""
    with_final, without_final = PAIRS[pair]
    final = final_index(spoken_last_syllable(word))
    if final == 0 or (pair == "으로/로" and final == RIEUL_FINAL):
        return without_final
    return with_final


def attach(word: str, pair: str) -> str:
    return word + particle(word, pair)


# ---------------------------------------------------------------- the task family

def _word_pool(rng: random.Random, level: int, pair: str) -> str:
    if pair == "아/야":
        return rng.choice(NAMES)
    if level <= 2:
        return rng.choice(COMMON_WORDS + RIEUL_WORDS if level == 2 else COMMON_WORDS)
    if level == 3:
        kind = rng.choice(["digits", "acronym", "rieul"])
    else:
        kind = rng.choice(["digits", "acronym", "rieul", "rare", "common"] if level == 5
                          else ["digits", "common", "rieul", "common"])
    if kind == "digits":
        return str(rng.choice([rng.randint(0, 20), rng.randint(21, 999), rng.randint(1, 9) * 10 ** rng.randint(1, 8)]))
    return rng.choice({"acronym": ACRONYMS, "rieul": RIEUL_WORDS, "rare": RARE_WORDS,
                       "common": COMMON_WORDS}[kind])


def make(rng: random.Random, level: int) -> Draft:
    if level <= 3:
        pairs = ["은/는", "이/가", "을/를"] if level == 1 else sorted(PAIRS)
        if level == 3:
            pairs = [p for p in pairs if p != "아/야"]
        pair = rng.choice(pairs)
        word = _word_pool(rng, level, pair)
        form = particle(word, pair)
        meta = {"word": word, "pair": pair, "words": [word], "pairs": [pair]}
        return Draft(f"알맞은 조사를 고르세요: {word}({pair})", form, meta, key=[[word], [pair]])
    templates = [t for t in MULTI_TEMPLATES if len(t[1]) == (2 if level == 4 else 3)]
    text, pairs = rng.choice(templates)
    words = [_word_pool(rng, level, p) for p in pairs]
    forms = [particle(w, p) for w, p in zip(words, pairs)]
    filled = text.format(*[x for wp in zip(words, pairs) for x in wp])
    meta = {"words": words, "pairs": list(pairs), "sentence": filled}
    prompt = f"괄호마다 알맞은 조사를 골라 차례로 쓰세요: {filled}"
    return Draft(prompt, ", ".join(forms), meta, key=[words, list(pairs)])


def check(example: dict, answer: str) -> tuple[float, object]:
    meta = example["meta"]
    words, pairs = meta["words"], meta["pairs"]
    items = [x for x in re.split(r"[,\s·/]+", normalize(answer)) if x]
    items = [x.strip("'\"()[]「」‘’“”") for x in items]
    if len(items) != len(pairs):
        return 0.0, items or None
    got = []
    for item, word, pair in zip(items, words, pairs):
        # "사과를" is as good as "를": drop the word when the model repeats it.
        if item.startswith(word) and item[len(word):] in PAIRS[pair]:
            item = item[len(word):]
        got.append(item)
    want = [particle(w, p) for w, p in zip(words, pairs)]
    return float(got == want), got


def reading(word: str) -> str:
    """How a digit or Latin ending is read aloud (572 -> 오백칠십이, URL -> 유알엘); words as is."""
    digits = re.search(r"\d+$", word)
    if digits and digits.end() == len(word):
        return sino(int(digits.group())).replace(" ", "")
    if word and word[-1].upper() in LETTER_NAMES:
        return "".join(LETTER_NAMES.get(c.upper(), c) for c in word)
    return word


def explain(word: str, pair: str) -> str:
    last = spoken_last_syllable(word)
    form = particle(word, pair)
    said = reading(word)
    read = "" if said == word else f"'{word}'{particle(word, '은/는')} '{said}'{particle(said, '으로/로')} 읽고, "
    final = final_index(last)
    if final == 0:
        why = f"'{last}'에 받침이 없으므로"
    elif pair == "으로/로" and final == RIEUL_FINAL:
        why = f"'{last}'의 받침이 ㄹ이므로"
    else:
        why = f"'{last}'에 받침이 있으므로"
    return f"{read}{why} '{word}{form}'."


def solution(example: dict) -> str:
    meta = example["meta"]
    lines = [explain(w, p) for w, p in zip(meta["words"], meta["pairs"])]
    return "\n".join(lines + [f"정답: {example['answer']}"])
