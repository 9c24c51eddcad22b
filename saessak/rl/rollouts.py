"""RL rollouts: draw task prompts where the curriculum says, sample G completions each, grade them.

Rollouts only sample and grade; advantages and the update are grpo.py's.

Dynamic sampling lives here: groups whose rewards are all equal carry no signal, so the batch is
refilled with fresh prompts (over-sampling 2x per refill round) until it holds `need` informative
groups or the rounds run out; every generated group still counts in the statistics and in the
curriculum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from saessak.tasks.base import ANSWER_LINE_STOP, stable_hash
from saessak.tasks.registry import prompt_messages
from saessak.tokenizer.chat_format import prompt_ids


@dataclass
class Group:
    example: dict
    prompt_ids: list[int]
    completions: list  # saessak.model.sampler.Sampled, G of them
    grades: list[dict]
    rewards: torch.Tensor  # [G] combined reward
    zero_std: bool = False
    advantages: torch.Tensor | None = None

    @property
    def accuracy(self) -> float:
        return sum(1.0 for g in self.grades if g["correct"]) / len(self.grades)


@dataclass
class RolloutBatch:
    kept: list[Group]  # groups to train on
    generated: list[Group]  # every group sampled this step (statistics, curriculum)
    next_offset: int  # where the next step's curriculum plan continues (threshold curriculum)
    rollout_s: float = 0.0
    completion_tokens: int = 0


def draw_examples(tasks_api, order: list[tuple[str, int]], seed: int) -> list[dict]:
    """One train example per (family, level) in `order` (the curriculum's plan), in that order.

    Each (family, level) is sampled with its own seed, so one pair's draw does not shift another's.
    """
    per_key: dict[tuple, int] = {}
    for key in order:
        per_key[key] = per_key.get(key, 0) + 1
    drawn = {(f, lvl): tasks_api.sample(f, "train", k, seed=stable_hash("rl", seed, f, lvl) % (2**31), level=lvl)
             for (f, lvl), k in per_key.items()}
    return [drawn[key].pop(0) for key in order]


def collect(sampler, tokenizer, tasks_api, cfg, curriculum, need: int, step: int,
            rank: int, offset: int, world: int = 1) -> RolloutBatch:
    """Sample and grade groups until `need` informative ones are kept (see module docstring).

    The first round is one global draw of `need x world` prompts (and their sampling seeds) cut
    into the ranks' slices, so the same global batch comes out whatever the number of ranks (as
    long as every rank's curriculum agrees); refill rounds are each rank's own."""
    G = cfg.num_generations
    batch = RolloutBatch(kept=[], generated=[], next_offset=offset)
    t0 = time.perf_counter()
    rounds = 1 + (cfg.max_resample_rounds if cfg.dynamic_sampling else 0)
    draw_offset = offset
    for rnd in range(rounds):
        deficit = need - len(batch.kept)
        if deficit <= 0:
            break
        n_prompts = deficit if rnd == 0 else 2 * deficit
        mine = slice(0, n_prompts)
        seed = stable_hash("rl-step", cfg.seed, step, rank, rnd) % (2**31)
        sample_seed = seed
        if rnd == 0:  # the global draw (rank 0's seed), this rank's slice of it
            seed = stable_hash("rl-step", cfg.seed, step, 0, rnd) % (2**31)
            mine = slice(rank * n_prompts, (rank + 1) * n_prompts)
            sample_seed = seed + rank * n_prompts * G
            n_prompts *= world
        order = curriculum.plan(n_prompts, seed, draw_offset, cfg.level_mix)
        examples = draw_examples(tasks_api, order, seed)[mine]
        draw_offset += n_prompts
        prompts = [prompt_ids(tokenizer, prompt_messages(ex)) for ex in examples]
        # Leave room for the completion inside the model's context.
        room = sampler.max_seq_len - cfg.max_completion_length
        prompts = [p[-room:] if len(p) > room else p for p in prompts]
        flat = [p for p in prompts for _ in range(G)]
        outs = sampler.sample(flat, max_tokens=cfg.max_completion_length, temperature=cfg.temperature,
                              top_k=cfg.top_k, top_p=cfg.top_p, seed=sample_seed,
                              stop_at_line=ANSWER_LINE_STOP if cfg.stop_at_answer else None)
        batch.completion_tokens += sum(len(o.token_ids) for o in outs)
        for i, ex in enumerate(examples):
            comps = outs[i * G:(i + 1) * G]
            grades = [tasks_api.grade(ex, c.text) for c in comps]
            rewards = torch.tensor([tasks_api.combine_rewards(g, cfg.reward_weights) for g in grades])
            # All G rewards equal: the group carries no signal (its advantages would all be 0).
            group = Group(ex, prompts[i], comps, grades, rewards, zero_std=bool(rewards.max() - rewards.min() < 1e-9))
            batch.generated.append(group)
            curriculum.record(ex["task"], group.accuracy, step, level=int(ex["level"]))
            if (not group.zero_std or not cfg.dynamic_sampling) and len(batch.kept) < need:
                batch.kept.append(group)
    batch.next_offset = draw_offset
    batch.rollout_s = time.perf_counter() - t0
    return batch
