"""SFT settings: the defaults here, each preset's values in saessak/recipes.py, and any command-line
option of the same name on top (`saessak sft --help` lists them)."""

from __future__ import annotations

from dataclasses import dataclass

from saessak.errors import UserError
from saessak.model.lora import LoraSettings
from saessak.recipes import check_min, parse_mapping, setting
from saessak.tasks.base import LEVELS


def parse_level_weights(text: str) -> dict[int, float]:
    """`1=1,2=0.5` -> {1: 1.0, 2: 0.5}."""
    return parse_mapping(text, "--level-weights", key=int, example="1=1,2=0.5")


@dataclass
class SFTConfig(LoraSettings):
    max_steps: int = setting(800, "optimizer steps")
    batch_size: int = setting(16, "packed rows per optimizer step (over all processes)")
    seq_len: int = setting(256, "tokens per packed row")
    lr: float = setting(1e-3, "peak learning rate (AdamW)")
    warmup_steps: int = setting(20, "linear warm-up steps")
    min_lr_ratio: float = setting(0.1, "the cosine decay ends at lr x this")
    weight_decay: float = setting(0.0, "AdamW weight decay (matrices only)")
    grad_clip: float = setting(1.0, "gradient norm clipping")
    task_items_per_family: int = setting(2000, "worked solutions per task family")
    identity_items: int = setting(200, "conversations about the assistant itself")
    level_weights: dict = setting(help="level mix of the worked solutions, e.g. 1=1,2=1,3=1 (default: the "
                                       "preset's task levels, equally)", factory=lambda: {lvl: 1.0 for lvl in LEVELS},
                                  parse=parse_level_weights, metavar="LEVEL=WEIGHT,...")
    val_fraction: float = setting(0.05, "share of the conversations held out for the validation loss")
    eval_every: int = setting(25, "steps between validation losses")
    ckpt_every: int = setting(100, "steps between resumable checkpoints")
    seed: int = setting(1234, "seed of the task items, the data order and the held-out slice")
    compile: bool = setting(False, "torch.compile the model for the training steps (not with LoRA or FSDP)")
    dtype: str | None = setting(None, "autocast dtype (auto, bf16, fp32; default: the preset's pretraining dtype)",
                                choices=("auto", "bf16", "fp32"))
    bias_update_speed: float | None = setting(
        None, "deepseek: router bias step per optimizer step in this stage (aux-loss-free balancing on "
                      "its batches; default: the model's own, as pretrained; 0 freezes the routing)")
    time_budget_s: float | None = setting(
        None, "wall seconds for the stage from its start: at the end of the warm-up it times its steps and "
              "a validation pass and cuts max_steps (never raises it) so that the rest ends within this; the "
              "LR schedule is then set for the new count (the speedrun's time plan gives it)",
        flag="--time-budget")

    def validate(self, world: int = 1) -> None:
        check_min(self, ("max_steps", "batch_size", "seq_len", "eval_every", "ckpt_every"), 1, "must be at least 1")
        if self.batch_size % world:
            raise UserError(f"sft batch_size {self.batch_size}: not divisible by the {world} processes")
        check_min(self, ("bias_update_speed", "time_budget_s"), 0, "must be 0 or more")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"--val-fraction {self.val_fraction}: must be between 0 and 1")
        bad = [lvl for lvl in self.level_weights if lvl not in LEVELS]
        if bad or any(w < 0 for w in self.level_weights.values()) or not any(self.level_weights.values()):
            raise UserError(f"--level-weights {self.level_weights}: levels run from {LEVELS[0]} to {LEVELS[-1]} "
                            "and weights must be >= 0, not all 0")
