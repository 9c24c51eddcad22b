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
               top_p: float = 1.0, seed: int = 0, stop_at_line: str | None = None,
               seeds: list[int] | None = None) -> list[Sampled]:
        """One completion per prompt (repeat a prompt G times for a group); temperature 0 = greedy.

        Prompt i uses seed `seed + i`, so a batch is reproducible whatever the engine's batching.
        `stop_at_line`: end a completion at the first completed line matching this regex. `seeds`: one
        seed per prompt instead (several batches sampled in one call keep their own seeds).
        """
        from saessak.model.engine import SamplingParams

        params = [SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                 seed=seeds[i] if seeds is not None else seed + i, stop_at_line=stop_at_line)
                  for i in range(len(prompts))]
        return [self._normalise(c) for c in self.engine.generate(prompts, params)]

    def _normalise(self, c) -> Sampled:
        # The engine keeps the end-of-turn token in token_ids (RL must learn to end its turn) and
        # leaves it out of the text.
        return Sampled(list(c.prompt_ids), list(c.token_ids), c.text, c.finish_reason)


def decode_seconds_per_token(engine, prompts: list[list[int]], new_tokens: int = 24) -> float:
    """Seconds per generated token of the engine's decode steps alone at len(prompts) rows: a run of
    1 + `new_tokens` tokens minus a run of 1 (the prefill), so short probes are not mostly prefill
    (an earlier probe of 8 tokens after 24-token prompts timed prefill and chose bf16 where decoding
    was slower in it)."""
    import time

    from saessak.model.engine import SamplingParams

    def run(n: int) -> float:
        t0 = time.perf_counter()
        engine.generate(prompts, SamplingParams(max_tokens=n, temperature=0.0))
        return time.perf_counter() - t0

    return max(1e-9, run(1 + new_tokens) - run(1)) / (new_tokens * len(prompts))


def probe_prompts(vocab_limit: int, rows: int, length: int = 16) -> list[list[int]]:
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.randint(1, vocab_limit, (rows, length), generator=gen).tolist()


def decode_probe(model, tokenizer, width: int, device: str = "cpu"):
    """probe(dtype name) -> the engine's decode seconds per token at `width` rows, with fp32 weights or
    a bf16 copy (each engine built once): what `generation_precision` and the time plan time."""
    from saessak.model.engine import Engine
    from saessak.model.precision import torch_dtype

    prompts = probe_prompts(min(model.config.vocab_size, tokenizer.vocab_size), width)
    engines: dict = {}

    def probe(name: str) -> float:
        if name not in engines:
            engines[name] = Engine(model, NoStop(tokenizer), max_batch_size=width, device=device,
                                   dtype=None if name == "fp32" else torch_dtype(name))
        return decode_seconds_per_token(engines[name], prompts)

    return probe


def generation_precision(model, tokenizer, width: int, device: str = "cpu", dtype: str | None = None, probe=None):
    """Whether the engine should decode with a bf16 copy of the weights or the fp32 model, by timing
    its own decode steps at `width` rows both ways (saessak/model/precision.py caches the verdict).
    Returns the choice; `torch_dtype_for_engine(choice)` is what Sampler/Engine take. `probe`: a
    `decode_probe` of this model the caller keeps using."""
    from saessak.model.precision import choose_dtype

    if dtype not in (None, "auto") or str(device).startswith("cuda"):
        return choose_dtype(device, dtype, mode="generate")  # given, or CUDA's answer: nothing to time
    width = max(1, min(int(width), 64))  # decode rates change little past 64 rows; the probe stays short
    return choose_dtype(device, dtype, model, rows=width, mode="generate",
                        probe=probe or decode_probe(model, tokenizer, width, device))


def torch_dtype_for_engine(choice):
    """None (run the model as it is, fp32) or torch.bfloat16 (the engine's bf16 copy)."""
    import torch

    return torch.bfloat16 if choice.dtype == "bf16" else None


class NoStop:
    """The tokenizer with no end tokens, so every probe row decodes its full length."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.stop_ids = ()

    def __getattr__(self, name):
        return getattr(self._tok, name)
