"""A small Korean run folder for tokenizer and pretraining tests (no network, generated text)."""

from __future__ import annotations

import json
import random
from pathlib import Path

_SUBJECTS = ["학생들은", "우리 가족은", "선생님께서", "친구가", "할머니는", "시민들이", "새싹은", "연구자들은"]
_PLACES = ["도서관에서", "서울에서", "학교 앞에서", "공원에서", "부산 바닷가에서", "시장에서", "집에서"]
_OBJECTS = ["책을", "사과를", "편지를", "노래를", "숙제를", "김치찌개를", "사진을", "프로그램을"]
_VERBS = ["읽었다.", "샀습니다.", "썼어요.", "불렀다.", "했습니다.", "만들었다.", "찍었어요.", "배웠다."]
_EXTRA = ["오늘은 날씨가 맑고 따뜻했다.", "대한민국의 수도는 서울이다.", "내일은 비가 올 것 같습니다.",
          "모두 함께 열심히 공부했다.", "정답은 화요일입니다."]


def korean_docs(n: int, seed: int, source: str) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        sents = []
        for _ in range(rng.randint(3, 8)):
            if rng.random() < 0.2:
                sents.append(rng.choice(_EXTRA))
            else:
                num = f" {rng.randint(1, 2030)}년에" if rng.random() < 0.3 else ""
                sents.append(f"{rng.choice(_SUBJECTS)}{num} {rng.choice(_PLACES)} {rng.choice(_OBJECTS)} {rng.choice(_VERBS)}")
        docs.append({"id": f"{source}-{seed}-{i}", "source": source, "text": " ".join(sents)})
    return docs


def make_run(root: Path, n_train: int = 300, n_val: int = 30) -> Path:
    """RUN/data/{train,val}.jsonl + done.json, as `saessak data build` writes them."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, docs in (("train", korean_docs(n_train, 1, "gen-a") + korean_docs(n_train // 3, 2, "gen-b")),
                        ("val", korean_docs(n_val, 3, "gen-a") + korean_docs(n_val // 3, 4, "gen-b"))):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs),
                                             encoding="utf-8")
    (data / "done.json").write_text("{}\n")
    return root
