"""SFT conversations: task-suite worked solutions, conversations about the assistant, user chat data.

Every source yields conversations in the `messages` format (a list of {role, content}), which
`saessak.tokenizer.chat_format.render` turns into ids and an assistant-only loss mask.

- `task_conversations`: the task suite's train split, all families, mixed levels; the reply is the
  family's worked Korean solution ending with `정답: <answer>` (the format RL and eval grade).
- `identity_conversations`: short Korean exchanges, written for this project, about what the
  assistant is: a small Korean model that runs locally and keeps no conversation data.
- `load_jsonl_conversations`: a user's JSON Lines file, one `{"messages": [...]}` per line.
- `load_hf_conversations`: a Hugging Face chat dataset (`messages`, or ShareGPT-style
  `conversations` with from/value), loaded with `datasets` (a local path works offline).

The user's data comes from outside the project, so both loaders take every message through the
door into training (`saessak.data.ingest.Door`: personal data masked, counted per source); the task
solutions and identity chats are the project's own text and do not pass (see that module).
"""

from __future__ import annotations

import os
import random
import unicodedata
from pathlib import Path
from typing import Iterable

from saessak.data.ingest import Door
from saessak.errors import UserError
from saessak.io import iter_jsonl
from saessak.tasks.base import LEVELS
from saessak.tasks.registry import prompt_messages
from saessak.tokenizer.chat_format import validate_messages


def _nfc_messages(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": unicodedata.normalize("NFC", m["content"])} for m in messages]


# --- task-suite worked solutions -------------------------------------------------------------


def task_conversations(families: Iterable[str], n_per_family: int, seed: int,
                       level_weights: dict[int, float] | None = None, tasks_api=None) -> list[list[dict]]:
    """Worked solutions from the train split, levels drawn by `level_weights` (default: all equal).

    Each (family, level) is sampled with its own seed so adding a family does not shuffle others.
    """
    if tasks_api is None:
        import saessak.tasks as tasks_api
    families = list(families)
    unknown = [f for f in families if f not in tasks_api.FAMILIES]
    if unknown:
        raise UserError(f"task families {unknown}: unknown (known: {', '.join(tasks_api.FAMILIES)})")
    weights = level_weights or {lvl: 1.0 for lvl in LEVELS}
    total_w = sum(weights.values())
    out: list[list[dict]] = []
    for fi, family in enumerate(families):
        counts = _split_count(n_per_family, weights, total_w)
        for level, n in counts.items():
            if n <= 0:
                continue
            examples = tasks_api.sample(family, "train", n, seed=seed * 1000 + fi * 10 + level, level=level)
            for ex in examples:
                reply = tasks_api.solution(ex)
                out.append(_nfc_messages(prompt_messages(ex) + [{"role": "assistant", "content": reply}]))
    return out


def _split_count(n: int, weights: dict[int, float], total_w: float) -> dict[int, int]:
    """Split n items over levels in proportion to weights, remainders to the heaviest levels."""
    raw = {lvl: n * w / total_w for lvl, w in weights.items()}
    counts = {lvl: int(v) for lvl, v in raw.items()}
    rest = n - sum(counts.values())
    for lvl in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[:rest]:
        counts[lvl] += 1
    return counts


# --- conversations about the assistant itself --------------------------------------------------

# Questions a user asks about the assistant, each with answers written for saessak. Several
# phrasings per topic so a tiny model learns the topic, not one string.
_IDENTITY = [
    (
        ["너는 누구야?", "당신은 누구인가요?", "자기소개 해 줘.", "이름이 뭐예요?"],
        ["저는 새싹이라는 작은 한국어 언어 모델입니다. 한국어 문제를 풀고 대화하도록 학습되었어요.",
         "제 이름은 새싹입니다. 한국어를 중심으로 학습한 작은 인공지능 모델이에요."],
    ),
    (
        ["너는 어디에서 실행돼?", "인터넷에 연결되어 있나요?", "클라우드 서버에서 돌아가?"],
        ["저는 지금 이 컴퓨터에서 직접 실행되고 있어요. 인터넷 연결 없이도 동작합니다.",
         "저는 사용자의 컴퓨터 안에서 로컬로 실행됩니다. 외부 서버로 데이터를 보내지 않아요."],
    ),
    (
        ["내 대화 내용을 저장해?", "개인정보를 수집하나요?", "우리 대화가 어딘가에 기록돼?"],
        ["아니요, 저는 대화 내용을 저장하지 않습니다. 요청하지 않는 한 아무것도 기록하지 않아요.",
         "저는 대화 데이터를 보관하지 않아요. 개인정보는 학습 전에 가려졌고, 지금 대화도 남기지 않습니다."],
    ),
    (
        ["누가 너를 만들었어?", "어떻게 만들어졌어요?", "어떤 데이터로 학습했나요?"],
        ["저는 새싹이라는 공개 프로젝트로 만들어졌어요. 출처와 라이선스가 기록된 한국어 글로 학습했고, 학습 비용도 모두 공개되어 있습니다.",
         "공개된 한국어 말뭉치로 사전 학습한 뒤, 정답을 확인할 수 있는 한국어 문제로 스스로 연습하며 학습했어요."],
    ),
    (
        ["무엇을 할 수 있어?", "어떤 일을 도와줄 수 있나요?", "잘하는 게 뭐야?"],
        ["조사 고르기, 숫자 읽기, 산수 문장제, 날짜 계산, 띄어쓰기를 도와드릴 수 있어요.",
         "한국어 조사와 띄어쓰기, 숫자를 한글로 읽기, 간단한 계산과 날짜 계산을 할 수 있습니다."],
    ),
    (
        ["너는 틀릴 때도 있어?", "네 답을 믿어도 돼?", "정확한가요?"],
        ["저는 아주 작은 모델이라서 틀릴 수 있어요. 중요한 내용은 꼭 다시 확인해 주세요.",
         "작은 모델이라 실수를 할 수 있습니다. 제 답은 참고로만 써 주세요."],
    ),
    (
        ["안녕!", "안녕하세요.", "반가워요."],
        ["안녕하세요! 저는 새싹입니다. 무엇을 도와드릴까요?",
         "반갑습니다. 궁금한 것이 있으면 물어보세요."],
    ),
    (
        ["고마워.", "감사합니다!", "도와줘서 고마워요."],
        ["천만에요. 또 궁금한 것이 있으면 언제든지 물어보세요.",
         "도움이 되었다니 기뻐요."],
    ),
    (
        ["무료로 써도 돼?", "사용료가 있나요?", "상업적으로 써도 되나요?"],
        ["네, 저는 공개 소프트웨어로 무료로 사용할 수 있어요. 자세한 조건은 라이선스를 확인해 주세요.",
         "무료로 쓸 수 있습니다. 모델과 코드가 공개되어 있으니 라이선스 조건을 확인해 주세요."],
    ),
]


def identity_conversations(n: int, seed: int) -> list[list[dict]]:
    """`n` single-turn conversations about the assistant, cycling topics, phrasings drawn by seed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        questions, answers = _IDENTITY[i % len(_IDENTITY)]
        out.append(_nfc_messages([
            {"role": "user", "content": rng.choice(questions)},
            {"role": "assistant", "content": rng.choice(answers)},
        ]))
    return out


# --- user-supplied chat data -------------------------------------------------------------------


def load_jsonl_conversations(path: str | os.PathLike, door: Door | None = None) -> list[list[dict]]:
    """One `{"messages": [{role, content}, ...]}` per line; each must contain an assistant turn.
    Every message passes `door` (default: a masking one) under the source `--data PATH`."""
    path = Path(path)
    door = door or Door(stage="sft")
    if not path.exists():
        raise UserError(f"--data {path}: file not found")
    out = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj, dict) or "messages" not in obj:
            raise UserError(f"{where}: expected an object with a 'messages' list")
        out.append(door.messages(_checked(obj["messages"], f"{where}: messages"), f"--data {path}"))
    if not out:
        raise UserError(f"--data {path}: no conversations in the file")
    return out


def _checked(messages, where: str) -> list[dict]:
    messages = validate_messages(messages, where)
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError(f"{where}: has no assistant turn, so nothing to train on")
    return _nfc_messages(messages)


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}


def load_hf_conversations(dataset_id: str, split: str = "train", limit: int | None = None,
                          door: Door | None = None) -> list[list[dict]]:
    """A Hugging Face chat dataset: `messages` column, or ShareGPT `conversations` (from/value).

    `dataset_id` is anything `datasets.load_dataset` accepts, including a local folder or a
    `json:PATH` shorthand for local JSON Lines files. Every message passes `door` (default: a
    masking one) under the source `--hf-dataset ID`.
    """
    import datasets

    door = door or Door(stage="sft")
    try:
        if dataset_id.startswith("json:"):
            ds = datasets.load_dataset("json", data_files=dataset_id[5:], split=split)
        else:
            ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:  # datasets raises many types for a missing/invalid id
        raise UserError(f"--hf-dataset {dataset_id}: cannot load ({type(e).__name__}: {e})") from None
    if "messages" in ds.column_names:
        column, convert = "messages", lambda conv: conv
    elif "conversations" in ds.column_names:
        column, convert = "conversations", _from_sharegpt
    else:
        raise UserError(f"--hf-dataset {dataset_id}: needs a 'messages' or 'conversations' column "
                        f"(has {ds.column_names})")
    out = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        out.append(door.messages(_checked(convert(row[column]), f"--hf-dataset {dataset_id}[{i}]"),
                                 f"--hf-dataset {dataset_id}"))
    if not out:
        raise UserError(f"--hf-dataset {dataset_id}: split '{split}' is empty")
    return out


def _from_sharegpt(conv: list[dict]) -> list[dict]:
    out = []
    for turn in conv:
        role = _SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise UserError(f"ShareGPT turn: unknown speaker {turn.get('from')!r}")
        out.append({"role": role, "content": turn.get("value", "")})
    return out
