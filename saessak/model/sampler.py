"""Sampling completions for RL rollouts and evaluation through the one generation engine.

`Sampler` keeps one `saessak.model.engine.Engine` per model (its KV cache is reused across calls, and
the engine follows the model's weights as the optimizer changes them) and returns plain records.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sampled:
    prompt_ids: list[int]
    token_ids: list[int]  # completion tokens, the end-of-turn token included when it stopped on it
    text: str
    finish_reason: str  # "stop" | "length"

    @property
    def truncated(self) -> bool:
        return self.finish_reason != "stop"


class Sampler:
    def __init__(self, model, tokenizer, device: str = "cpu", max_batch_size: int = 64, dtype=None):
        from saessak.model.engine import Engine

        self.tokenizer = tokenizer
        self.engine = Engine(model, tokenizer, max_batch_size=max_batch_size, device=device, dtype=dtype)

    @property
    def max_seq_len(self) -> int:
        return self.engine.max_seq_len

    def sample(self, prompts: list[list[int]], *, max_tokens: int, temperature: float, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0) -> list[Sampled]:
        """One completion per prompt (repeat a prompt G times for a group); temperature 0 = greedy.

        Prompt i uses seed `seed + i`, so a batch is reproducible whatever the engine's batching.
        """
        from saessak.model.engine import SamplingParams

        params = [SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                 seed=seed + i) for i in range(len(prompts))]
        return [self._normalise(c) for c in self.engine.generate(prompts, params)]

    def _normalise(self, c) -> Sampled:
        # The engine keeps the end-of-turn token in token_ids (RL must learn to end its turn) and
        # leaves it out of the text.
        return Sampled(list(c.prompt_ids), list(c.token_ids), c.text, c.finish_reason)
