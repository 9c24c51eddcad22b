"""Per-family difficulty levels for RL, moved by the model's own train accuracy.

A tiny model gets all-zero rewards on levels beyond it (no signal), and all-one rewards on levels
it has mastered (no signal either). Each family keeps a window of recent train outcomes (one per
prompt: did most of the group answer correctly?) and moves one level when the window is full:
up at `raise_at`, down at `lower_at`. The window is cleared after a move so the new level is
judged on its own outcomes.
"""

from __future__ import annotations

from collections import deque


class Curriculum:
    def __init__(self, families, start_level: int, max_level: int, raise_at: float, lower_at: float,
                 window: int, min_level: int = 1):
        self.levels = {f: start_level for f in families}
        self.min_level, self.max_level = min_level, max_level
        self.raise_at, self.lower_at, self.window = raise_at, lower_at, window
        self.history = {f: deque(maxlen=window) for f in families}
        self.moves: list[dict] = []

    def level(self, family: str) -> int:
        return self.levels[family]

    def record(self, family: str, accuracy: float, step: int) -> None:
        """Add one prompt's group accuracy (share of its G completions that were correct)."""
        h = self.history[family]
        h.append(accuracy)
        if len(h) < self.window:
            return
        mean = sum(h) / len(h)
        lvl = self.levels[family]
        new = lvl
        if mean >= self.raise_at and lvl < self.max_level:
            new = lvl + 1
        elif mean <= self.lower_at and lvl > self.min_level:
            new = lvl - 1
        if new != lvl:
            self.levels[family] = new
            h.clear()
            self.moves.append({"step": step, "task": family, "from": lvl, "to": new, "window_acc": round(mean, 3)})

    def state(self) -> dict:
        return {"levels": dict(self.levels), "history": {f: list(h) for f, h in self.history.items()},
                "moves": list(self.moves)}

    def load_state(self, state: dict) -> None:
        self.levels.update(state["levels"])
        for f, values in state["history"].items():
            if f in self.history:
                self.history[f].clear()
                self.history[f].extend(values)
        self.moves = list(state["moves"])
