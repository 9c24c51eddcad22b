"""Named training presets: one `depth` knob sets the model shape (as nanochat does), and each preset
also fixes its tokenizer vocabulary, context length, batch and schedule.

Shape rules (from `depth`):
    hidden_size       = depth * aspect_ratio          (aspect_ratio 64 unless the preset says)
    attention heads   = hidden_size / head_dim        (head_dim 64; 32 for the tiniest shapes)
    key/value heads   = heads / kv_group              (grouped-query attention; 1 group = MHA)
    intermediate_size = 8/3 * hidden_size, rounded up to a multiple of 64 (SwiGLU keeps ~4h params)

CPU presets (`micro`, `cpu-tiny`, `cpu-small`) are sized for a 2-core machine; GPU presets
(`d12`, `d20`, `d26`, `d32`) are valid configurations for `torchrun` on GPUs, not run here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from saessak.errors import UserError


@dataclass(frozen=True)
class Preset:
    name: str
    depth: int
    vocab_size: int  # tokenizer vocabulary trained for this preset
    seq_len: int
    batch_size: int  # sequences per micro-batch per process
    grad_accum: int  # micro-batches per optimizer step (per process)
    max_steps: int  # optimizer steps of a full run
    aspect_ratio: int = 64
    head_dim: int = 64
    kv_group: int = 2  # query heads per key/value head
    lr: float = 3e-3  # peak learning rate (AdamW)
    min_lr_frac: float = 0.1  # the decay ends at lr * min_lr_frac
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    val_every: int = 100  # optimizer steps between validations (0 = only at the end)
    val_tokens: int = 32768  # tokens of the val split scored at each validation
    ckpt_every: int = 100  # optimizer steps between resumable checkpoints
    keep_checkpoints: int = 2
    dtype: str = "auto"  # autocast: bf16, fp32, or auto (bf16 on CUDA and AMX CPUs); master weights fp32
    compile: bool = False  # torch.compile the model (halves CPU time per step at cpu-tiny: docs/BENCHMARKS.md)
    tie_word_embeddings: bool = True
    gpu: bool = False  # sized for GPUs (valid config; not run on the CPU speedrun)

    @property
    def hidden_size(self) -> int:
        return self.depth * self.aspect_ratio

    @property
    def num_attention_heads(self) -> int:
        return max(1, self.hidden_size // self.head_dim)

    @property
    def num_key_value_heads(self) -> int:
        heads = self.num_attention_heads
        return heads // self.kv_group if heads % self.kv_group == 0 else heads

    @property
    def intermediate_size(self) -> int:
        return _round_up(self.hidden_size * 8 // 3, 64)

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step for one process (multiply by the world size for the global batch)."""
        return self.batch_size * self.grad_accum * self.seq_len

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(hidden_size=self.hidden_size, num_attention_heads=self.num_attention_heads,
                 num_key_value_heads=self.num_key_value_heads, intermediate_size=self.intermediate_size)
        return d


def _round_up(x: int, multiple: int) -> int:
    return (x + multiple - 1) // multiple * multiple


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        # CI's end-to-end test: the whole pretrain stage in seconds; learns little.
        Preset("micro", depth=2, aspect_ratio=32, head_dim=32, vocab_size=2048, seq_len=64,
               batch_size=8, grad_accum=1, max_steps=20, lr=3e-3, warmup_steps=4,
               val_every=0, val_tokens=4096, ckpt_every=10, dtype="fp32"),
        # The CPU speedrun: a few M parameters, ~8-9 minutes on 2 cores.
        Preset("cpu-tiny", depth=4, vocab_size=4096, seq_len=256, batch_size=8, grad_accum=1,
               max_steps=400, lr=3e-3, warmup_steps=20, val_every=100, val_tokens=16384, ckpt_every=50,
               compile=True),
        # A bigger CPU shape (the MFU benchmark shape); ~1-1.5 hours on 2 idle cores.
        Preset("cpu-small", depth=6, vocab_size=8192, seq_len=512, batch_size=8, grad_accum=1,
               max_steps=400, lr=2e-3, warmup_steps=30, val_every=100, ckpt_every=50, compile=True),
        # GPU presets (nanochat-like shapes), for torchrun --nproc_per_node=N on CUDA.
        Preset("d12", depth=12, vocab_size=32768, seq_len=2048, batch_size=32, grad_accum=1,
               max_steps=5000, lr=1e-3, warmup_steps=200, val_every=250, val_tokens=1 << 20,
               ckpt_every=500, head_dim=128, kv_group=1, compile=True, tie_word_embeddings=False, gpu=True),
        Preset("d20", depth=20, vocab_size=65536, seq_len=2048, batch_size=32, grad_accum=1,
               max_steps=21000, lr=6e-4, warmup_steps=500, val_every=500, val_tokens=1 << 20,
               ckpt_every=1000, head_dim=128, kv_group=2, compile=True, tie_word_embeddings=False, gpu=True),
        Preset("d26", depth=26, vocab_size=65536, seq_len=2048, batch_size=16, grad_accum=2,
               max_steps=30000, lr=5e-4, warmup_steps=500, val_every=500, val_tokens=1 << 20,
               ckpt_every=1000, head_dim=128, kv_group=2, compile=True, tie_word_embeddings=False, gpu=True),
        Preset("d32", depth=32, vocab_size=65536, seq_len=2048, batch_size=8, grad_accum=4,
               max_steps=40000, lr=4e-4, warmup_steps=1000, val_every=1000, val_tokens=1 << 20,
               ckpt_every=1000, head_dim=128, kv_group=4, compile=True, tie_word_embeddings=False, gpu=True),
    ]
}


# The task-suite levels a preset's model is fine-tuned on (SFT), trained on (RL) and judged on
# (eval tasks). cpu-tiny: levels 1-3. Its SFT model, trained on all five levels, was at 0-13 % on
# levels 4-5 of every family on train-split items (and arith at <= 10 % on every level), while
# levels 1-3 reached 31-93 % on josa, calendar, spacing and numbers level 1 (docs/RL.md#levels):
# the rule is to choose levels a tiny model can learn. Bigger presets use all five.
TASK_LEVELS: dict[str, tuple[int, ...]] = {"cpu-tiny": (1, 2, 3)}


def task_levels(name: str) -> tuple[int, ...]:
    if name in TASK_LEVELS:
        return TASK_LEVELS[name]
    from saessak.tasks.base import LEVELS  # every level of the suite (imported here: presets stays light)

    return LEVELS


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"--preset {name!r}: unknown preset; valid presets: {', '.join(PRESETS)}") from None


def model_config(preset: Preset | str, vocab_size: int | None = None):
    """The ModelConfig of a preset; `vocab_size` is the trained tokenizer's (defaults to the preset's)."""
    from saessak.model import ModelConfig

    p = get_preset(preset) if isinstance(preset, str) else preset
    cfg = ModelConfig(
        vocab_size=vocab_size if vocab_size is not None else p.vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.depth,
        num_attention_heads=p.num_attention_heads,
        num_key_value_heads=p.num_key_value_heads,
        max_position_embeddings=p.seq_len,
        tie_word_embeddings=p.tie_word_embeddings,
    )
    cfg.validate()
    return cfg
