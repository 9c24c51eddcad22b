"""One recipe per preset: the model shape and every stage's settings, together, by name.

A recipe names the settings that differ from each stage's defaults; the defaults live with the
stage's config class (`pretrain.config.PretrainConfig`, `sft.config.SFTConfig`,
`rl.config.GRPOConfig`, `evals.config.EvalConfig`), and command-line options override a recipe
field of the same name. `stage_config(cls, preset, section, overrides)` builds what a stage starts from.

Shape rules (from `depth`, the one size knob, as nanochat has it):
    hidden_size       = depth * aspect_ratio          (aspect_ratio 64 unless the recipe says)
    attention heads   = hidden_size / head_dim        (head_dim 64; 32 for the tiniest shapes)
    key/value heads   = heads / kv_group              (grouped-query attention; 1 group = MHA)
    intermediate_size = 8/3 * hidden_size, rounded up to a multiple of 64 (SwiGLU keeps ~4h params)

Two settings feed several stages and so are set once here:
- `task_levels`: the task-suite levels SFT fine-tunes on, RL draws from and eval judges (None:
  every level, as the suite draws them);
- `answer_tokens`: the completion length RL samples and eval scores.

CPU recipes (`micro`, `cpu-tiny`, `cpu-small`) are sized for a 2-core machine; GPU recipes
(`d12`, `d20`, `d26`, `d32`) for `torchrun` on one 8-GPU node. The `-deepseek` variants
(`micro-deepseek`, `cpu-tiny-deepseek`, `d12-deepseek`, `d20-deepseek`) keep their base recipe's
depth and settings and swap the model for DeepSeek-V3's (`Shape.arch`; the MoE knobs in
`Shape.deepseek`, the rest by `deepseek_config_for_shape`'s rule). Why each number is what it is:
docs/TRAINING.md (pretraining), docs/RL.md (SFT, RL, eval), docs/RESULTS.md (the runs behind them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from saessak.errors import UserError

SECTIONS = ("pretrain", "sft", "rl", "eval", "speedrun")


@dataclass(frozen=True)
class Shape:
    depth: int
    vocab_size: int  # the tokenizer vocabulary trained for this recipe
    seq_len: int  # context length (pretraining windows, the model's max positions)
    aspect_ratio: int = 64
    head_dim: int = 64
    kv_group: int = 2  # query heads per key/value head
    tie_word_embeddings: bool = True
    arch: str = "llama"  # or "deepseek": MLA + MoE + MTP (saessak/model/deepseek.py), same depth knob
    # DeepSeek knobs over `deepseek_config_for_shape`'s rule (n_routed_experts, num_experts_per_tok, ...)
    deepseek: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

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
        return (self.hidden_size * 8 // 3 + 63) // 64 * 64

    def model_fields(self, vocab_size: int | None = None) -> dict[str, Any]:
        """The fields of `saessak.model.ModelConfig` for this shape (vocab: the trained tokenizer's)."""
        return {"vocab_size": vocab_size if vocab_size is not None else self.vocab_size,
                "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
                "num_hidden_layers": self.depth, "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads, "max_position_embeddings": self.seq_len,
                "tie_word_embeddings": self.tie_word_embeddings}


def setting(default: Any = dataclasses.MISSING, help: str | None = None, *, factory=None, **cli: Any):
    """A field of a stage's config dataclass: its default, what it means (`--help` shows it), and
    how the command line spells it, where the plain `--field-name` will not do: `flag`, `aliases`,
    `choices`, `metavar`, `parse` (text -> value, for structured fields), `cli=False` (recipe only)."""
    meta = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def check_min(cfg: Any, names: tuple[str, ...], low: float, rule: str, *, strict: bool = False) -> None:
    """A user error naming the option and its value when one of `cfg`'s fields `names` is below
    `low` (or not above it, with `strict`), or NaN: `--max-steps 0: must be at least 1`. A field left
    at None (an optional setting: "the model's own") passes."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not (value > low if strict else value >= low):  # NaN fails both
            raise UserError(f"--{name.replace('_', '-')} {value}: {rule}")


def parse_mapping(text: str, option: str, key=str, example: str = "name=1") -> dict:
    """The text form of a mapping field: `a=1,b=0.5` -> {"a": 1.0, "b": 0.5} (keys through `key`)."""
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key(name.strip())] = float(value)
        except ValueError:
            raise UserError(f"{option} {part!r}: expected NAME=NUMBER, e.g. {example}") from None
    return out


def _frozen(**fields: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(fields))


@dataclass(frozen=True)
class Recipe:
    name: str
    shape: Shape
    gpu: bool = False  # sized for GPUs (a valid configuration; not run on the CPU speedrun)
    task_levels: tuple[int, ...] | None = None
    answer_tokens: int = 128
    pretrain: Mapping[str, Any] = field(default_factory=_frozen)
    sft: Mapping[str, Any] = field(default_factory=_frozen)
    rl: Mapping[str, Any] = field(default_factory=_frozen)
    eval: Mapping[str, Any] = field(default_factory=_frozen)
    speedrun: Mapping[str, Any] = field(default_factory=_frozen)

    def settings(self, section: str) -> dict[str, Any]:
        """The recipe's fields for one stage's config, the shared ones filled in."""
        if section not in SECTIONS:
            raise ValueError(f"recipe section {section!r}: not one of {SECTIONS}")
        shared: dict[str, Any] = {}
        if section == "sft" and self.task_levels:
            shared["level_weights"] = {lvl: 1.0 for lvl in self.task_levels}
        elif section == "rl":
            shared["max_completion_length"] = self.answer_tokens
            if self.task_levels:
                shared["max_level"] = max(self.task_levels)
        elif section == "eval":
            shared["max_tokens"] = self.answer_tokens
            shared["levels"] = self.task_levels
        # Plain dicts out (a recipe's own mappings are read-only).
        return {**shared, **{k: dict(v) if isinstance(v, Mapping) else v for k, v in getattr(self, section).items()}}


# SFT and RL for every GPU recipe: only the model differs.
_GPU_SFT = _frozen(max_steps=2000, batch_size=64, seq_len=1024, lr=3e-4, warmup_steps=100,
                   task_items_per_family=50000, identity_items=2000, eval_every=100, ckpt_every=500)
_GPU_RL = _frozen(max_steps=500, prompts_per_step=64, num_generations=16, learning_rate=1e-6, micro_batch_size=64)


def _gpu(name: str, depth: int, vocab_size: int, kv_group: int, **pretrain: Any) -> Recipe:
    return Recipe(name, Shape(depth=depth, vocab_size=vocab_size, seq_len=2048, head_dim=128, kv_group=kv_group,
                              tie_word_embeddings=False),
                  gpu=True, answer_tokens=512, pretrain=_frozen(val_tokens=1 << 20, compile=True, **pretrain),
                  sft=_GPU_SFT, rl=_GPU_RL)


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    # CI's end-to-end test: the whole pipeline in a few minutes; learns little.
    Recipe("micro", Shape(depth=2, aspect_ratio=32, head_dim=32, vocab_size=2048, seq_len=64),
           answer_tokens=24,
           pretrain=_frozen(batch_size=8, grad_accum=1, max_steps=20, lr=3e-3, warmup_steps=4, val_every=0,
                            val_tokens=4096, ckpt_every=10, dtype="fp32"),
           sft=_frozen(max_steps=20, batch_size=8, seq_len=128, lr=2e-3, warmup_steps=5, task_items_per_family=40,
                       identity_items=18, eval_every=10, ckpt_every=10),
           rl=_frozen(max_steps=4, prompts_per_step=4, num_generations=4, learning_rate=5e-4, micro_batch_size=16,
                      max_resample_rounds=0, ckpt_every=2, log_completions=2, curriculum_window=8,
                      dtype="fp32"),  # as micro's pretraining: CI's runs compare exact numbers across layouts
           eval=_frozen(n=8, k=0),
           speedrun=_frozen(max_docs=300)),
    # The CPU speedrun: a few M parameters on 2 cores. Levels 1-3 and the families josa and spacing
    # are the ones its model can learn (docs/RL.md#levels, docs/RL.md#which-families).
    Recipe("cpu-tiny", Shape(depth=4, vocab_size=4096, seq_len=256),
           task_levels=(1, 2, 3), answer_tokens=112,
           pretrain=_frozen(batch_size=8, grad_accum=1, max_steps=400, lr=3e-3, warmup_steps=20, val_every=100,
                            val_tokens=16384, ckpt_every=50, compile=True),
           sft=_frozen(max_steps=800, batch_size=16, seq_len=256, lr=1.5e-3, warmup_steps=20,
                       task_items_per_family=4000, identity_items=200, eval_every=100, ckpt_every=50, compile=True),
           # max_steps is only a ceiling: the time budget ends RL (the speedrun gives it what its 20
           # minutes leave; 600 s ran 419 steps on a fast Zen 4 host, 753 s 559, so 500 would have cut it)
           rl=_frozen(max_steps=2000, prompts_per_step=8, num_generations=8, learning_rate=5e-5, beta=0.2,
                      temperature=0.7, start_level=1, raise_at=0.7,
                      reward_weights=MappingProxyType({"correctness": 1.0, "format": 0.1, "korean_consistency": 0.0}),
                      micro_batch_size=32, time_budget_s=600.0, tasks=("josa", "spacing"),
                      # families in turn: spacing's level 3 got 1,195 of 3,948 groups under
                      # "learnability", 1,745 of 3,826 here; +3 points on spacing in both seeds tried
                      # (docs/RL.md, curriculum)
                      curriculum="balanced",
                      # fp32, not the faster bf16 autocast: bf16 GRPO gained josa +1.9 points, fp32 +6.4
                      # (docs/RESULTS.md, issue 17), measured before the stale-copy fix, not yet re-measured
                      dtype="fp32"),
           # Up to 1500 distinct test items per family (500 per level; small levels give what they have).
           eval=_frozen(n=1500),
           # The speedrun sizes SFT steps and the RL budget to fit 20 minutes on the machine it runs on.
           speedrun=_frozen(budget_min=20)),
    # A bigger CPU shape (the MFU benchmark shape); about 1-1.5 hours of pretraining on 2 idle cores.
    Recipe("cpu-small", Shape(depth=6, vocab_size=8192, seq_len=512),
           pretrain=_frozen(batch_size=8, grad_accum=1, max_steps=400, lr=2e-3, warmup_steps=30, val_every=100,
                            ckpt_every=50, compile=True),
           sft=_frozen(max_steps=800, batch_size=32, seq_len=512, lr=1e-3, task_items_per_family=6000,
                       identity_items=500, eval_every=50, ckpt_every=200, compile=True),
           rl=_frozen(max_steps=200, prompts_per_step=16, num_generations=8, learning_rate=5e-5)),
    # GPU recipes (nanochat-like shapes), for torchrun --nproc_per_node=8 on CUDA.
    _gpu("d12", 12, 32768, kv_group=1, batch_size=32, grad_accum=1, max_steps=5000, lr=1e-3, warmup_steps=200,
         val_every=250, ckpt_every=500),
    _gpu("d20", 20, 65536, kv_group=2, batch_size=32, grad_accum=1, max_steps=21000, lr=6e-4, warmup_steps=500,
         val_every=500, ckpt_every=1000),
    _gpu("d26", 26, 65536, kv_group=2, batch_size=16, grad_accum=2, max_steps=30000, lr=5e-4, warmup_steps=500,
         val_every=500, ckpt_every=1000),
    _gpu("d32", 32, 65536, kv_group=4, batch_size=8, grad_accum=4, max_steps=40000, lr=4e-4, warmup_steps=1000,
         val_every=1000, ckpt_every=1000),
]}


def _deepseek(base: str, **knobs: Any) -> Recipe:
    """`base`'s recipe with the DeepSeek model of the same depth. Not compiled: the MoE's per-expert
    loop depends on the routing (a data-dependent graph torch.compile breaks up)."""
    r = RECIPES[base]

    def eager(section: Mapping[str, Any]) -> Mapping[str, Any]:
        return _frozen(**{**section, "compile": False}) if "compile" in section else section

    return dataclasses.replace(r, name=f"{base}-deepseek",
                               shape=dataclasses.replace(r.shape, arch="deepseek", deepseek=_frozen(**knobs)),
                               pretrain=eager(r.pretrain), sft=eager(r.sft))


RECIPES.update({r.name: r for r in [
    # CI: the micro run with a tiny MoE (4 routed experts, 2 per token, 1 shared) and one MTP depth.
    _deepseek("micro", n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
              num_nextn_predict_layers=1),
    # Bias speed 1e-2, not DeepSeek-V3's 1e-3: in a 400-step CPU run 1e-3 left max/mean expert load at
    # 1.8, 1e-2 brings it to 1.33 (bench/moe_vs_dense.py, docs/RESULTS.md).
    _deepseek("cpu-tiny", n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, num_nextn_predict_layers=1,
              bias_update_speed=1e-2),
    # DeepSeek-V3's routing at GPU scale: 64 fine-grained experts in 8 groups, 4 groups and 6 experts per token.
    _deepseek("d12", n_routed_experts=64, num_experts_per_tok=6, n_shared_experts=2, n_group=8, topk_group=4,
              num_nextn_predict_layers=1),
    _deepseek("d20", n_routed_experts=64, num_experts_per_tok=6, n_shared_experts=2, n_group=8, topk_group=4,
              num_nextn_predict_layers=1),
]})


def get(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"--preset {name!r}: unknown preset; valid presets: {', '.join(RECIPES)}") from None


def stage_config(cls, preset: str, section: str, overrides: Mapping[str, Any] | None = None):
    """`cls` (a stage's config dataclass) built from the preset's recipe, then `overrides` by field
    name (None values are left out: an option the user did not give)."""
    fields = get(preset).settings(section)
    fields.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"recipe {preset!r} [{section}]: {cls.__name__} has no field {', '.join(unknown)}")
    return cls(**fields)
