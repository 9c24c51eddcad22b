"""The speedrun's time budget as a plan: a slow machine trains fewer steps instead of running longer.

The recipe says how much SFT and RL the model gets on a machine of the speed it was tuned on. The
speedrun also knows its budget (`--budget-min`, 20 minutes for the CPU recipes; 0 turns planning
off). At the start it measures this machine, on the preset's own model shape, in the precision the
stages will choose (saessak/model/precision.py):

- `sft_step_s`: one SFT optimizer step (the recipe's batch and length, a packed-row mask, AdamW),
  the best of two after a warm-up on random tokens;
- `decode_s_per_token`: the generation engine decoding 64 rows, per generated token.

From those it predicts each stage's time (pretraining from its tokens at the SFT step's rate, the
three evaluations from the number of held-out items and the answer length) and, when the recipe's
SFT steps and RL budget do not fit in what is left, shortens RL first: SFT keeps its steps while RL
can still get MIN_RL_S, because an SFT cut short loses skills abruptly (on cpu-tiny, 601 of 800
steps left spacing level 3 at 3 % instead of 76 %, docs/RESULTS.md) while RL's gain grows
steadily with its steps. Only a machine too slow for that gets fewer SFT steps (and the report
says to expect a weaker model). When the recipe fits, RL gets all the time the budget leaves, which
on a fast machine is more than the recipe's figure (the recipe's RL budget is what `saessak rl`
runs alone): a 20-minute speedrun uses its 20 minutes (12-06: on a Zen 4 host at bf16 683 GFLOP/s
the stages took 966 s with RL at the recipe's 600 s, leaving about 170 s of the budget unused).
RL's budget is re-set when RL starts, from the wall time actually left (so an estimate that was
off is corrected before the last training stage), never below MIN_RL_S. RL's budget counts wall
seconds on every machine.

SFT gets a deadline too, set when it starts (`saessak.speedrun.sft_budget_now`): the latest it may
end and still leave RL MIN_RL_S and the evaluations their estimate. At the end of its warm-up it
times its own steps (compiled, on this machine) and a validation pass and cuts its step count if
the rest would not fit (saessak/sft/stage.py `steps_within`). The plan's SFT estimate divides the
probe's eager step by 1.3 for compilation, measured on the Zen 4 host in bf16; on an AVX2-only EPYC
in fp32 compilation gained 1.13x, SFT took 851 s where 695 s were planned, and the run ended 35 s
past 20 minutes with RL at its minimum (12-06). The deadline catches such an error where it arises.

`saessak plan --run RUN --preset P [--budget-min M] [--force]` writes RUN/plan.json; the speedrun runs
it first (when its preset has a budget), gives SFT the planned `--max-steps`, and re-sets RL's
`--time-budget` from the plan's figures and the time actually spent when RL starts
(saessak/speedrun.py reads the JSON; the root imports no stage). A resumed speedrun reads the plan
back, so a stage resumed after an interruption keeps its step count; the report shows what was
scaled and why.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saessak import recipes
from saessak.errors import UserError
from saessak.io import read_json_or_none, write_json

SAFETY = 0.95  # plan for 95 % of the budget: the estimates are estimates
COMPILE_S = 30.0  # torch.compile's first SFT step on cpu-tiny (28 s measured)
# The three evaluations took 272 s where the decode probe predicted 218 s (prefill, text decoding and
# grading are not in the probe): the estimate is scaled by this.
EVAL_OVERHEAD = 1.3
FIXED_S = 30.0  # data, tokenizer, report and exports on the embedded corpus (about 15 s measured), doubled
MIN_RL_S = 60.0  # below this RL cannot take enough steps to matter; it is kept even over budget
# Completions of a trained (SFT/RL) model end at their answer line: on cpu-tiny they averaged about
# 40 of the 112-token limit (runs/cpu-tiny eval results), so the estimate counts 40 % of the limit.
ANSWER_FILL = 0.4


@dataclass
class Plan:
    preset: str
    budget_s: float
    measured: dict[str, Any] = field(default_factory=dict)
    estimate_s: dict[str, float] = field(default_factory=dict)  # per stage, as the recipe stands
    recipe: dict[str, Any] = field(default_factory=dict)  # the recipe's sft max_steps and rl budget
    scale: float = 1.0  # 1: the recipe fits
    sft_max_steps: int | None = None
    rl_time_budget_s: float | None = None  # set when planned; re-set when RL starts (rl_reset)
    rl_reset: dict[str, Any] | None = None
    sft_reset: dict[str, Any] | None = None  # SFT's deadline, set when SFT starts (saessak.speedrun.sft_budget_now)
    note: str = ""
    # What the speedrun needs to re-set RL's budget when RL starts (it reads plan.json, not this module)
    safety: float = SAFETY
    reserve_after_rl_s: float = 0.0  # the evaluations' estimate plus half the fixed costs
    min_rl_s: float = MIN_RL_S

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "plan.json"


def _sft_step_seconds(preset: str, model_cfg, info_device: str = "cpu") -> tuple[float, dict]:
    import torch

    from saessak.model import build_model
    from saessak.pretrain.config import PretrainConfig
    from saessak.sft.config import SFTConfig
    from saessak.sft.pack import block_causal_mask
    from saessak.training.optim import autocast, build_optimizer
    from saessak.model.precision import choose_dtype

    sft = recipes.stage_config(SFTConfig, preset, "sft")
    dtype_opt = sft.dtype or recipes.stage_config(PretrainConfig, preset, "pretrain").dtype
    B, T = sft.batch_size, min(sft.seq_len, model_cfg.max_position_embeddings)
    precision = choose_dtype(info_device, dtype_opt, model_cfg, rows=B * T)
    torch.manual_seed(0)
    model = build_model(model_cfg)
    model.init_weights(0)
    model.train()
    opt = build_optimizer(model, 1e-4)
    ids = torch.randint(0, model_cfg.vocab_size, (B, T))
    seg = torch.zeros(B, T, dtype=torch.long)
    seg[:, T // 2:] = 1  # two conversations per row, as packing makes them
    mask = block_causal_mask(seg)
    pos = torch.arange(T).expand(B, T)

    def step() -> float:
        t0 = time.perf_counter()
        with autocast(info_device, precision.dtype):
            loss = model(ids, position_ids=pos, attn_mask=mask, targets=ids).float()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    step()
    best = min(step(), step())
    return best, {"sft_dtype": precision.dtype, "sft_batch": [B, T], "sft_precision": precision.facts()}


def _decode_seconds_per_token(model_cfg, vocab_size: int) -> tuple[float, dict]:
    """The engine's greedy decode on a random model of the shape, with a stand-in tokenizer, in the
    precision the evaluations will choose (the same measurement and cache key)."""
    from saessak.model import build_model
    from saessak.model.sampler import decode_probe, generation_precision

    class _Tok:  # what the engine needs of a tokenizer, for random ids
        stop_ids: tuple = ()
        pad_id = 0
        strips_first_space = True

        def __init__(self, n):
            self.vocab_size = n

        def token_bytes(self):  # token_bytes_table takes a tokenizer's own table
            return [b"x"] * self.vocab_size

    model = build_model(model_cfg).eval()
    model.init_weights(0)
    tok = _Tok(vocab_size)
    probe = decode_probe(model, tok, 64)
    # The same measured choice the evaluations will make (same key: mode, shapes, 64 rows).
    choice = generation_precision(model, tok, 64, probe=probe)
    return min(probe(choice.dtype), probe(choice.dtype)), {"decode_dtype": choice.dtype}


def _eval_items(preset: str) -> int:
    import saessak.tasks as tasks_api
    from saessak.evals.config import EvalConfig
    from saessak.evals.task_eval import draw_items
    from saessak.runfolder import REPORTED_SPLIT

    cfg = recipes.stage_config(EvalConfig, preset, "eval")
    levels = list(cfg.levels) if cfg.levels else None
    families = list(cfg.tasks or tasks_api.FAMILIES)
    return sum(len(draw_items(tasks_api, f, REPORTED_SPLIT, cfg.n, cfg.seed, levels)) for f in families)


def make_plan(preset: str, budget_min: float, log=print) -> Plan:
    from saessak.evals.config import EvalConfig
    from saessak.model import model_config
    from saessak.pretrain.config import PretrainConfig
    from saessak.rl.config import GRPOConfig
    from saessak.sft.config import SFTConfig

    plan = Plan(preset=preset, budget_s=round(budget_min * 60.0, 1))
    sft = recipes.stage_config(SFTConfig, preset, "sft")
    rl = recipes.stage_config(GRPOConfig, preset, "rl")
    ev = recipes.stage_config(EvalConfig, preset, "eval")
    pre = recipes.stage_config(PretrainConfig, preset, "pretrain")
    plan.recipe = {"sft_max_steps": sft.max_steps, "rl_time_budget_s": rl.time_budget_s}
    cfg = model_config(preset)
    t0 = time.perf_counter()
    sft_step_s, facts = _sft_step_seconds(preset, cfg)
    decode_s, dfacts = _decode_seconds_per_token(cfg, cfg.vocab_size)
    facts.update(dfacts)
    items = _eval_items(preset)
    plan.measured = {"sft_step_s": round(sft_step_s, 4), "decode_s_per_token": round(decode_s, 6),
                     "eval_items": items, **facts, "seconds": round(time.perf_counter() - t0, 2)}
    # Pretraining: its tokens per step over the SFT step's tokens/s (same model, same precision rule).
    sft_tokens = sft.batch_size * min(sft.seq_len, cfg.max_position_embeddings)
    pre_tokens = pre.tokens_per_step(cfg.max_position_embeddings) * pre.max_steps
    est_pretrain = pre_tokens / sft_tokens * sft_step_s
    answer = ev.max_tokens
    eval_tokens = items * (ev.base_max_tokens + 2 * answer * ANSWER_FILL)  # the speedrun's evals are greedy (--k 0)
    est_eval = eval_tokens * decode_s * EVAL_OVERHEAD
    # A compiled SFT step (the recipe's `compile`) ran 1.5x faster than the eager one the probe times
    # (cpu-tiny, AMD EPYC), after a ~30 s compilation; counted at 1.3x to stay on the safe side.
    step_s = sft_step_s / (1.3 if sft.compile else 1.0)
    compile_s = COMPILE_S if sft.compile else 0.0
    est_sft = sft.max_steps * step_s + compile_s
    est_rl = float(rl.time_budget_s or 0.0)
    plan.estimate_s = {"fixed": FIXED_S, "pretrain": round(est_pretrain, 1), "sft": round(est_sft, 1),
                       "rl": round(est_rl, 1), "eval": round(est_eval, 1)}
    room = plan.budget_s * SAFETY - FIXED_S - est_pretrain - est_eval
    steps_fit = int((room - MIN_RL_S - compile_s) / step_s) if step_s > 0 else sft.max_steps
    if est_sft + est_rl <= room or (est_sft + est_rl <= 0):
        # RL gets all the budget leaves (at least the recipe's figure, as the recipe fits): on a fast
        # machine that is more.
        plan.note = "the recipe fits the budget on this machine; RL gets the rest of it"
        plan.sft_max_steps, rl_s = sft.max_steps, room - est_sft
    elif steps_fit >= sft.max_steps:
        # SFT keeps its length: cut short, it loses skills abruptly (spacing level 3 fell from 76 % to
        # 3 % at 601 of 800 steps; docs/RESULTS.md). RL's budget takes the squeeze.
        plan.sft_max_steps, rl_s = sft.max_steps, max(MIN_RL_S, room - est_sft)
        plan.note = (f"predicted {sum(plan.estimate_s.values()) / 60:.1f} min with the recipe, over {SAFETY:.0%} of "
                     f"the {budget_min:g}-minute budget: SFT keeps its {sft.max_steps} steps, RL's budget shrinks")
    else:
        plan.sft_max_steps, rl_s = max(1, steps_fit), MIN_RL_S
        plan.note = (f"predicted {sum(plan.estimate_s.values()) / 60:.1f} min with the recipe, far over the "
                     f"{budget_min:g}-minute budget: SFT cut to {plan.sft_max_steps} steps (expect a weaker SFT "
                     f"model), RL at its minimum")
    plan.reserve_after_rl_s = round(est_eval + FIXED_S / 2, 1)
    plan.scale = round(min(1.0, (plan.sft_max_steps * step_s + compile_s + rl_s) / max(1e-9, est_sft + est_rl)), 3)
    if rl.time_budget_s:
        plan.rl_time_budget_s = round(rl_s, 1)
    log(f"plan: {plan.note}; SFT {plan.sft_max_steps} steps (recipe {sft.max_steps}), RL "
        f"{plan.rl_time_budget_s} s (recipe {rl.time_budget_s}); measured SFT step {sft_step_s:.3f} s "
        f"({facts.get('sft_dtype')}), decode {decode_s * 1e3:.2f} ms/token, {items} eval items")
    return plan


def load_or_make(run_dir: str | Path, preset: str, budget_min: float, log=print, force: bool = False) -> Plan | None:
    """The run's plan: read back when it exists for the same preset and budget (unless `force`),
    else measured now and written to RUN/plan.json."""
    if budget_min < 0:
        raise UserError(f"--budget-min {budget_min:g}: must be 0 (no plan) or more")
    if not budget_min:
        return None
    path = plan_path(run_dir)
    old = read_json_or_none(path)
    if not force and isinstance(old, dict) and old.get("preset") == preset and old.get("budget_s") == round(budget_min * 60.0, 1):
        names = set(Plan.__dataclass_fields__)
        plan = Plan(**{k: v for k, v in old.items() if k in names})
        log(f"plan: read back from {path} (SFT {plan.sft_max_steps} steps, RL {plan.rl_time_budget_s} s; "
            f"--force measures again)")
        return plan
    plan = make_plan(preset, budget_min, log)
    save(run_dir, plan)
    return plan


def save(run_dir: str | Path, plan: Plan) -> None:
    write_json(plan_path(run_dir), plan.to_dict())
