"""A transformers Trainer callback that times each optimizer step (the TRL side of the side-by-sides)."""

from __future__ import annotations

import time


def step_timer():
    """A callback whose `times` holds each step's seconds, begin to end."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], 0.0

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)

    return StepTimer()
