"""What the teacher is asked: task-suite items from the train split (graded) and the user's prompts.

An item is a dict: `id`, `source` ("task" or "prompts"), `messages` (the conversation the student
will be trained on, without the reply), and for task items `task`, `level` and `example` (for the
grader). The list is a pure function of the settings and the prompts file, so a rerun finds the
same items at the same positions, which is what resuming relies on.
"""

from __future__ import annotations

import os
from pathlib import Path

from saessak.errors import UserError
from saessak.io import iter_jsonl
from saessak.tasks.registry import FAMILIES, prompt_messages, sample
from saessak.tokenizer.chat_format import validate_messages


def task_items(families: tuple, levels: tuple, per_level: int, seed: int) -> list[dict]:
    """`per_level` train-split items of each family and level; each (family, level) has its own seed."""
    chosen = list(families) or list(FAMILIES)
    if chosen == ["none"]:
        return []
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise UserError(f"--tasks {','.join(unknown)}: unknown task family (known: {', '.join(FAMILIES)})")
    out = []
    for fi, family in enumerate(chosen):
        for level in levels:
            for ex in sample(family, "train", per_level, seed=seed * 1000 + fi * 10 + level, level=level):
                out.append({"id": ex["id"], "source": "task", "task": family, "level": level,
                            "messages": prompt_messages(ex), "example": ex})
    return out


def user_items(path: str | os.PathLike) -> list[dict]:
    """The user's prompts: JSON Lines, `{"prompt": "..."}` or `{"messages": [...]}` (system/user turns;
    a trailing assistant turn is dropped: the teacher writes it). Kept as written; never graded."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--prompts {path}: file not found")
    out = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            messages = [{"role": "user", "content": obj["prompt"]}]
        elif isinstance(obj, dict) and "messages" in obj:
            messages = validate_messages(obj["messages"], f"{where}: messages")
            while messages and messages[-1]["role"] == "assistant":
                messages = messages[:-1]
        else:
            raise UserError(f"{where}: expected {{\"prompt\": \"...\"}} or {{\"messages\": [...]}}")
        if not messages or messages[-1]["role"] != "user":
            raise UserError(f"{where}: the conversation must end with a user turn for the teacher to answer")
        out.append({"id": str(obj.get("id") or f"prompts-{lineno}"), "source": "prompts",
                    "messages": [{"role": m["role"], "content": m["content"]} for m in messages]})
    if not out:
        raise UserError(f"--prompts {path}: no prompts in the file")
    return out
