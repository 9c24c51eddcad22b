"""GRPO settings, named as in Hugging Face TRL's GRPOConfig, and their checks, in one place.

The defaults are here; each preset's values are in saessak/recipes.py; a command-line option of
the same name overrides either (`saessak rl --help` lists them).

TRL names kept: num_generations (G), max_completion_length, temperature, top_p, top_k, beta,
epsilon, epsilon_high, num_iterations (mu), loss_type, scale_rewards, reward_weights,
learning_rate, max_steps, max_grad_norm, mask_truncated_completions, log_completions.
Own additions: prompts_per_step (groups per optimizer step; the batch is prompts_per_step * G
completions), dynamic sampling and curriculum knobs, the task list, a wall-clock budget, kl_clamp.
Why the cpu-tiny values are what they are: docs/RL.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from saessak.errors import UserError
from saessak.model.lora import LoraSettings
from saessak.recipes import check_min, parse_mapping, setting
from saessak.rl.curriculum import CURRICULA

# Token aggregation of the loss and reward scaling of the advantages (maths in grpo.py).
LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")


def parse_reward_weights(text: str) -> dict[str, float]:
    """`correctness=1,format=0.1` -> {"correctness": 1.0, "format": 0.1}."""
    return parse_mapping(text, "--reward-weights", example="correctness=1,format=0.1")


def parse_tasks(text: str) -> tuple[str, ...]:
    """`josa,spacing` -> ("josa", "spacing"); `all` -> () (every family)."""
    if text.strip().lower() == "all":
        return ()
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tasks:
        raise UserError(f"--tasks {text!r}: names no family (give e.g. josa,spacing, or all)")
    return tasks


@dataclass
class GRPOConfig(LoraSettings):
    max_steps: int = setting(500, "optimizer steps (a --time-budget may stop earlier)")
    prompts_per_step: int = setting(8, "prompts (groups) per step over all processes")
    num_generations: int = setting(8, "completions per prompt (G >= 2)", aliases=("-G",))
    max_completion_length: int = setting(128, "completion limit in tokens (default: the preset's answer length)")
    stop_at_answer: bool = setting(
        True, "end each rollout at its first completed `정답:` line, where evaluation stops reading it, so the "
              "reward grades what the eval grades and no step trains on text the eval never sees")
    temperature: float = setting(1.0, "sampling temperature of the rollouts")
    top_p: float = setting(1.0, "nucleus sampling of the rollouts")
    top_k: int = setting(0, "top-k sampling of the rollouts (0: off)")
    beta: float = setting(0.0, "KL weight to the frozen SFT model (k3 estimator; 0 = no reference model)")
    kl_clamp: float = setting(10.0, "cap on each token's k3 KL estimate (its tail grows as exp(ref - logp) and "
                                    "one token could outweigh the batch's reward signal; 0: no cap)")
    epsilon: float = setting(0.2, "lower clipping range")
    epsilon_high: float = setting(0.28, "upper clipping range (clip-higher, DAPO)")
    num_iterations: int = setting(1, "policy updates per generated batch (mu)")
    loss_type: str = setting("dapo", "token aggregation of the loss", choices=LOSS_TYPES)
    scale_rewards: str = setting("group", "advantage scaling: group std, batch std, or none", choices=SCALE_REWARDS)
    reward_weights: dict = setting(help="weights of the task suite's rewards, e.g. correctness=1,format=0.1,"
                                        "korean_consistency=0.05",
                                   factory=lambda: {"correctness": 1.0, "format": 0.1, "korean_consistency": 0.05},
                                   parse=parse_reward_weights, metavar="NAME=WEIGHT,...")
    learning_rate: float = setting(1e-4, "learning rate (AdamW; constant after warm-up)")
    warmup_steps: int = setting(5, "linear warm-up steps")
    weight_decay: float = setting(0.0, "AdamW weight decay (matrices only)")
    max_grad_norm: float = setting(1.0, "gradient norm clipping")
    mask_truncated_completions: bool = setting(
        False, "leave completions that hit the length limit out of the loss (DAPO's overlong filtering); by "
               "default they are trained on with the low reward they earn")
    dynamic_sampling: bool = setting(True, "refill the batch with fresh prompts when a group's rewards are all equal")
    max_resample_rounds: int = setting(2, "extra sampling rounds per step for dynamic sampling")
    curriculum: str = setting("learnability", "how prompts' task levels are chosen (docs/RL.md#curriculum)",
                              choices=tuple(CURRICULA))
    start_level: int = setting(1, "the frontier level each family starts at")
    max_level: int = setting(5, "the highest task level drawn (default: the preset's task levels)")
    raise_at: float = setting(0.8, "a level counts as learnt at this train accuracy")
    lower_at: float = setting(0.05, "threshold curriculum: step a family down at this train accuracy")
    curriculum_window: int = setting(32, "groups per (family, level) the curriculum's accuracy is taken over")
    level_mix: bool = setting(True, "threshold curriculum: draw levels from 1..frontier, not the frontier only")
    tasks: tuple = setting((), "comma-separated task families, or all (default: the preset's; docs/RL.md#which-families)",
                           parse=parse_tasks, metavar="FAMILY,...|all")
    micro_batch_size: int = setting(32, "completions per forward/backward (memory, not maths)")
    log_completions: int = setting(10, "write sample completions every N steps (0: never)")
    ckpt_every: int = setting(25, "steps between resumable checkpoints")
    seed: int = setting(4321, "seed of the prompts and the samples")
    time_budget_s: float | None = setting(None, "stop after the step that passes this many wall seconds "
                                                "(the LR is constant after warm-up, so nothing is left half done)",
                                          flag="--time-budget")
    dtype: str = setting("auto", "autocast dtype of the policy's training passes over fp32 master weights (auto: "
                                 "the faster of bf16 and fp32 measured on this machine); the rollout engine "
                                 "makes its own measured choice of weights in bf16 or fp32",
                         choices=("auto", "bf16", "fp32"))
    bias_update_speed: float | None = setting(
        None, "deepseek: router bias step per optimizer step in this stage (aux-loss-free balancing on "
                      "its batches; default: the model's own, as pretrained; 0 freezes the routing)")
    threads: int | None = setting(None, "torch CPU threads for a single process on CPU (default: one per core); "
                                        "a --time-budget then costs threads x budget CPU-seconds")

    @property
    def batch_size(self) -> int:
        """Completions per step (TRL's batch): prompts_per_step x G."""
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
        check_min(self, ("kl_clamp",), 0, "must be 0 (no cap) or more")
        check_min(self, ("bias_update_speed",), 0, "must be 0 or more")
        if self.curriculum not in CURRICULA:
            bad("curriculum", f"must be one of {', '.join(CURRICULA)}")
        if not 1 <= self.start_level <= self.max_level <= 5:
            bad("start_level", "levels must satisfy 1 <= start_level <= max_level <= 5")
        if self.max_steps < 1:
            bad("max_steps", "must be at least 1")
        if self.ckpt_every < 1:
            bad("ckpt_every", "must be at least 1")
        if self.threads is not None and self.threads < 1:
            bad("threads", "must be at least 1")
        for k, w in self.reward_weights.items():
            if not isinstance(w, (int, float)):
                raise UserError(f"--reward-weights {k}={w!r}: weight must be a number")

    def families(self, tasks_api) -> list[str]:
        """The task families trained on (all of the suite's when `tasks` is empty), checked against the
        suite, as are the reward names."""
        families = list(self.tasks) or list(tasks_api.FAMILIES)
        unknown = [t for t in families if t not in tasks_api.FAMILIES]
        if unknown:
            raise UserError(f"--tasks {','.join(unknown)}: unknown task (known: {', '.join(tasks_api.FAMILIES)})")
        known_rewards = set(getattr(tasks_api, "REWARDS", self.reward_weights))
        bad = [k for k in self.reward_weights if k not in known_rewards]
        if bad:
            raise UserError(f"--reward-weights {','.join(bad)}: unknown reward (known: {', '.join(sorted(known_rewards))})")
        return families


def validate_batch(batch_size: int, num_generations: int) -> None:
    """For users who give the batch in completions (TRL's way): it must hold whole groups."""
    if batch_size % num_generations:
        raise UserError(f"--batch-size {batch_size}: not divisible by --num-generations {num_generations}")
