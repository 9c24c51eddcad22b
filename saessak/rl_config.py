"""GRPO options (named as in Hugging Face TRL's GRPOConfig) and their defaults per preset.

TRL names kept: num_generations (G), max_completion_length, temperature, top_p, top_k, beta,
epsilon, epsilon_high, num_iterations (mu), loss_type, scale_rewards, reward_weights,
learning_rate, max_steps, max_grad_norm, mask_truncated_completions, log_completions.
Own additions: prompts_per_step (groups per optimizer step; the batch is prompts_per_step * G
completions), dynamic sampling and curriculum knobs, the task list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from saessak.curriculum import CURRICULA
from saessak.errors import UserError
from saessak.grpo import LOSS_TYPES, SCALE_REWARDS
from saessak.presets import task_levels


@dataclass
class GRPOConfig:
    max_steps: int
    prompts_per_step: int  # groups per step over all processes
    num_generations: int = 8
    max_completion_length: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    beta: float = 0.0  # k3 KL weight; 0 = no reference model (DAPO, Dr. GRPO)
    epsilon: float = 0.2
    epsilon_high: float = 0.28  # clip-higher (DAPO): room for low-probability tokens to grow
    num_iterations: int = 1
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    reward_weights: dict = field(default_factory=lambda: {"correctness": 1.0, "format": 0.1,
                                                           "korean_consistency": 0.05})
    learning_rate: float = 1e-4
    warmup_steps: int = 5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # Truncated completions (hit max_completion_length) never reach their answer line, so they
    # earn no correctness or format reward. False (default): they are trained on with that low
    # reward, i.e. penalised relative to their group. True: left out of the loss (DAPO's overlong
    # filtering). Measured on cpu-tiny: masking let the share of truncated completions climb
    # from 0 to 23% in 15 steps (rambling was never punished), see docs/RL.md.
    mask_truncated_completions: bool = False
    # Dynamic sampling: groups whose rewards are all equal carry no signal. Sample more prompts
    # (up to this many extra rounds per step) to refill the batch with informative groups.
    dynamic_sampling: bool = True
    max_resample_rounds: int = 2
    # Curriculum (saessak/curriculum.py): "learnability" draws each prompt's (family, level) with
    # weight p(1-p) of that pair's train accuracy over its last curriculum_window groups, levels
    # start_level..max_level; "threshold" keeps one level per family, raised when its train
    # accuracy over the last curriculum_window prompts reaches raise_at, lowered at lower_at.
    curriculum: str = "learnability"
    start_level: int = 1
    max_level: int = 5
    raise_at: float = 0.8
    lower_at: float = 0.05
    curriculum_window: int = 32
    # Threshold curriculum only: draw each prompt's level uniformly from 1..the family's level instead
    # of at the level only, so learnt levels stay in the batch (no forgetting) while the frontier moves up.
    level_mix: bool = True
    tasks: tuple = ()  # empty = every family of the task suite
    micro_batch_size: int = 32  # completions per forward/backward (memory, not maths)
    log_completions: int = 10  # write sample completions every N steps (0 = never)
    ckpt_every: int = 25
    seed: int = 4321
    # Wall-clock budget: stop after the step that passes it (None = run all max_steps). The LR is
    # constant after warm-up, so stopping early leaves no half-finished schedule.
    time_budget_s: float | None = None
    # torch CPU threads for a single-process CPU run (None = torch's default, one per core). A
    # budget in wall seconds then costs threads x budget CPU-seconds.
    threads: int | None = None

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.num_generations

    def validate(self, world: int = 1) -> None:
        def bad(name, why):
            raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: {why}")

        if self.num_generations < 2:
            bad("num_generations", "must be at least 2 (advantages compare completions within a group)")
        if self.prompts_per_step < 1:
            bad("prompts_per_step", "must be at least 1")
        if self.prompts_per_step % world:
            bad("prompts_per_step", f"must be divisible by the {world} processes (groups stay on one process)")
        if self.loss_type not in LOSS_TYPES:
            bad("loss_type", f"must be one of {', '.join(LOSS_TYPES)}")
        if self.scale_rewards not in SCALE_REWARDS:
            bad("scale_rewards", f"must be one of {', '.join(SCALE_REWARDS)}")
        if self.max_completion_length < 1:
            bad("max_completion_length", "must be at least 1")
        if self.temperature <= 0:
            bad("temperature", "must be > 0 for rollouts (groups need different completions)")
        if self.num_iterations < 1:
            bad("num_iterations", "must be at least 1")
        if not 0 <= self.epsilon < 1 or self.epsilon_high < 0:
            bad("epsilon", "clipping range must satisfy 0 <= epsilon < 1 and epsilon_high >= 0")
        if self.beta < 0:
            bad("beta", "must be >= 0")
        if self.curriculum not in CURRICULA:
            bad("curriculum", f"must be one of {', '.join(CURRICULA)}")
        if not 1 <= self.start_level <= self.max_level <= 5:
            bad("start_level", "levels must satisfy 1 <= start_level <= max_level <= 5")
        if self.max_steps < 1:
            bad("max_steps", "must be at least 1")
        if self.threads is not None and self.threads < 1:
            bad("threads", "must be at least 1")
        for k, w in self.reward_weights.items():
            if not isinstance(w, (int, float)):
                raise UserError(f"--reward-weights {k}={w!r}: weight must be a number")


def validate_batch(batch_size: int, num_generations: int) -> None:
    """For users who give the batch in completions (TRL's way): it must hold whole groups."""
    if batch_size % num_generations:
        raise UserError(f"--batch-size {batch_size}: not divisible by --num-generations {num_generations}")


# The families cpu-tiny's GRPO trains on: the two whose levels 1-3 sit in the learnable middle after
# SFT (val: josa 36 %, spacing 43 %). Numbers, arith and calendar are at 3-7 % there; with all five
# families, 10 minutes of GRPO moved them by -0.9 to +1.5 points and took prompts from josa and
# spacing (spacing +2.5 instead of +13.1 at the same beta). All five are still evaluated; beta 0.2
# keeps the three left out within 1.4 points. See docs/RL.md#which-families.
CPU_TINY_RL_TASKS = ("josa", "spacing")

RL_PRESETS: dict[str, GRPOConfig] = {
    "micro": GRPOConfig(max_steps=4, prompts_per_step=4, num_generations=4, max_completion_length=24,
                        learning_rate=5e-4, micro_batch_size=16, max_resample_rounds=0, ckpt_every=2,
                        log_completions=2, curriculum_window=8),
    "cpu-tiny": GRPOConfig(max_steps=500, prompts_per_step=8, num_generations=8, max_completion_length=112,
                           learning_rate=5e-5, beta=0.2, temperature=0.7, start_level=1, raise_at=0.7,
                           max_level=max(task_levels("cpu-tiny")),
                           reward_weights={"correctness": 1.0, "format": 0.1, "korean_consistency": 0.0},
                           micro_batch_size=32, time_budget_s=600.0, tasks=CPU_TINY_RL_TASKS),
    "cpu-small": GRPOConfig(max_steps=200, prompts_per_step=16, num_generations=8, max_completion_length=128,
                            learning_rate=5e-5),
}
GPU_RL = GRPOConfig(max_steps=500, prompts_per_step=64, num_generations=16, max_completion_length=512,
                    learning_rate=1e-6, micro_batch_size=64, max_level=5)


def config_for(preset: str, **overrides) -> GRPOConfig:
    cfg = RL_PRESETS.get(preset, GPU_RL)
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
