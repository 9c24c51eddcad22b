"""Which (family, level) each RL prompt is drawn at, chosen from the model's own train accuracy.

A tiny model gets all-zero rewards on levels beyond it and all-one rewards on levels it has
mastered: neither carries a GRPO signal. Three curricula decide where prompts go; all keep, per
family, the *frontier level* (`level(f)`), and all are judged only on train-split rollouts.

- `Curriculum` ("threshold"): one level per family. Each family keeps a window of recent group
  accuracies and moves one level when the window is full: up at `raise_at`, down at `lower_at`.
  With `level_mix` a prompt's level is drawn uniformly from 1..frontier.
- `LearnabilityCurriculum` ("learnability", the default): every (family, level) pair up to
  `max_level` keeps a window of its recent group accuracies p, and prompts are drawn with weight
  p(1 - p) (the variance of a 0/1 reward, which is what a group-relative advantage feeds on), with
  a floor so no pair is forgotten, and unseen pairs at the top weight so each is tried. A pair the
  model masters (p >= raise_at) or cannot do (p ~ 0) fades out by itself; a family's frontier level
  is raised when its current level passes `raise_at`, as in the threshold rule. Why this is the
  default: docs/RL.md (Curriculum).
- `BalancedCurriculum` ("balanced", cpu-tiny's): the learnability weights within each family, the
  families in turn, so a family with more learnable levels does not take more of the prompts.
"""

from __future__ import annotations

import random
from collections import deque


class Curriculum:
    def __init__(self, families, start_level: int, max_level: int, raise_at: float, lower_at: float,
                 window: int, min_level: int = 1):
        self.families = list(families)
        self.levels = {f: start_level for f in families}
        self.min_level, self.max_level = min_level, max_level
        self.raise_at, self.lower_at, self.window = raise_at, lower_at, window
        self.history = {f: deque(maxlen=window) for f in families}
        self.moves: list[dict] = []

    def level(self, family: str) -> int:
        return self.levels[family]

    def plan(self, n: int, seed: int, offset: int, level_mix: bool = False) -> list[tuple[str, int]]:
        """(family, level) for n prompts: families in turn from `offset`, at the family's level or,
        with `level_mix`, at a level drawn uniformly from 1..that level (learnt levels stay in the mix)."""
        rng = random.Random(seed)
        out = []
        for i in range(n):
            f = self.families[(offset + i) % len(self.families)]
            lvl = rng.randint(1, self.levels[f]) if level_mix else self.levels[f]
            out.append((f, lvl))
        return out

    def record(self, family: str, accuracy: float, step: int, level: int | None = None) -> None:
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

    def summary(self) -> dict:
        """Per family: its level and the current window's accuracy (for done.json)."""
        return {f: {"level": self.levels[f], "window_acc": round(sum(h) / len(h), 3) if h else None}
                for f, h in self.history.items()}

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


class LearnabilityCurriculum:
    """Draw (family, level) pairs with weight p(1 - p) of their recent train accuracy (see module doc)."""

    UNSEEN = 0.25  # p(1 - p) at p = 0.5: an untried pair is as interesting as the best one
    FLOOR = 0.01  # keeps mastered and impossible pairs in view (about 1 prompt in 40 over 15 pairs)

    def __init__(self, families, start_level: int, max_level: int, raise_at: float, lower_at: float,
                 window: int, min_level: int = 1):
        self.families = list(families)
        self.min_level, self.max_level = min_level, max_level
        self.raise_at, self.lower_at, self.window = raise_at, lower_at, window
        self.pairs = [(f, lvl) for f in self.families for lvl in range(min_level, max_level + 1)]
        self.history = {p: deque(maxlen=window) for p in self.pairs}
        self.drawn = {p: 0 for p in self.pairs}  # groups recorded per pair (where the compute went)
        self.levels = {f: start_level for f in self.families}
        self.moves: list[dict] = []

    def level(self, family: str) -> int:
        return self.levels[family]

    def accuracy(self, family: str, level: int) -> float | None:
        h = self.history[(family, level)]
        return sum(h) / len(h) if h else None

    def weight(self, family: str, level: int) -> float:
        p = self.accuracy(family, level)
        return self.UNSEEN if p is None else max(self.FLOOR, p * (1.0 - p))

    def plan(self, n: int, seed: int, offset: int = 0, level_mix: bool = False) -> list[tuple[str, int]]:
        rng = random.Random(seed)
        weights = [self.weight(f, lvl) for f, lvl in self.pairs]
        return rng.choices(self.pairs, weights=weights, k=n)

    def record(self, family: str, accuracy: float, step: int, level: int | None = None) -> None:
        lvl = self.levels[family] if level is None else level
        if (family, lvl) not in self.history:
            return
        self.history[(family, lvl)].append(accuracy)
        self.drawn[(family, lvl)] += 1
        # The frontier (for logs and the summary): the lowest level not yet mastered.
        front = self.min_level
        while front < self.max_level:
            p = self.accuracy(family, front)
            if p is None or len(self.history[(family, front)]) < min(8, self.window) or p < self.raise_at:
                break
            front += 1
        if front != self.levels[family]:
            self.moves.append({"step": step, "task": family, "from": self.levels[family], "to": front,
                               "window_acc": round(self.accuracy(family, lvl) or 0.0, 3)})
            self.levels[family] = front

    def summary(self) -> dict:
        """Per pair: groups drawn and the last window's accuracy (for done.json)."""
        out = {}
        for f, lvl in self.pairs:
            acc = self.accuracy(f, lvl)
            out[f"{f}@{lvl}"] = {"groups": self.drawn[(f, lvl)], "window_acc": None if acc is None else round(acc, 3)}
        return out

    def state(self) -> dict:
        return {"levels": dict(self.levels), "moves": list(self.moves),
                "drawn": {f"{f}@{lvl}": n for (f, lvl), n in self.drawn.items()},
                "pairs": {f"{f}@{lvl}": list(h) for (f, lvl), h in self.history.items()}}

    def load_state(self, state: dict) -> None:
        self.levels.update(state["levels"])
        self.moves = list(state["moves"])
        for key, values in state.get("pairs", {}).items():
            f, _, lvl = key.rpartition("@")
            if (f, int(lvl)) in self.history:
                self.history[(f, int(lvl))].clear()
                self.history[(f, int(lvl))].extend(values)
                self.drawn[(f, int(lvl))] = state.get("drawn", {}).get(key, len(values))


class BalancedCurriculum(LearnabilityCurriculum):
    """The learnability weights within a family, the families in turn: prompt i goes to family
    (offset + i) mod F and to a level drawn with weight p(1 - p) among that family's levels, so a
    family with more learnable levels does not take more of the prompts."""

    def plan(self, n: int, seed: int, offset: int = 0, level_mix: bool = False) -> list[tuple[str, int]]:
        rng = random.Random(seed)
        levels = list(range(self.min_level, self.max_level + 1))
        weights = {f: [self.weight(f, lvl) for lvl in levels] for f in self.families}
        out = []
        for i in range(n):
            f = self.families[(offset + i) % len(self.families)]
            out.append((f, rng.choices(levels, weights=weights[f])[0]))
        return out


# By the name `--curriculum` takes (GRPOConfig.curriculum).
CURRICULA = {"learnability": LearnabilityCurriculum, "balanced": BalancedCurriculum, "threshold": Curriculum}


def make_curriculum(kind: str, families, cfg):
    cls = CURRICULA[kind]
    return cls(families, cfg.start_level, cfg.max_level, cfg.raise_at, cfg.lower_at, cfg.curriculum_window)
