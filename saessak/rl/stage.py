"""The RL stage: GRPO on the task suite's checkable Korean tasks, starting from RUN/sft/final.

Each step: draw prompts where the curriculum says (curriculum.py), sample G completions per prompt
with the generation engine and grade them with the task suite (rollouts.py: reward = weighted
correctness, format and Korean consistency; dynamic sampling keeps informative groups), then
compute group-relative advantages and take `num_iterations` clipped policy-gradient steps
(grpo.py). See docs/RL.md for the method and the choices made.

Outputs: RUN/rl/final/, RUN/rl/metrics.jsonl (one line per step), RUN/rl/samples.jsonl (sample
completions every `log_completions` steps), RUN/rl/ckpt/ (resume), RUN/rl/done.json, a ledger
record. Skip, resume and --force follow the stage life-cycle (saessak/training/lifecycle.py).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import torch

from saessak import recipes
from saessak.errors import UserError
from saessak.io import append_jsonl
from saessak.model import is_deepseek
from saessak.model.deepseek import RouterTail, router_metrics
from saessak.model.loading import load_stage
from saessak.model.lora import BaseOnly, attach
from saessak.model.lora import finish as lora_finish
from saessak.model.sampler import Sampler
from saessak.rl.config import GRPOConfig
from saessak.rl.curriculum import make_curriculum
from saessak.rl.grpo import assign_advantages, local_counts, normaliser, sequences, update
from saessak.rl.rollouts import collect
from saessak.runfolder import RunFolder
from saessak.training.distributed import all_reduce_max, all_reduce_sum, barrier
from saessak.training.lifecycle import StageRun, completed
from saessak.training.optim import build_optimizer, lr_at, set_lr
from saessak.model.kernels import linear_kernel, linear_layers
from saessak.model.precision import torch_dtype
from saessak.training.optim import kernel_on_rank0, precision_on_rank0
from saessak.training.parallel import Parallel, full_weights, shard_model


def run_rl(run: str, preset: str | None = None, *, resume: bool = False, force: bool = False, tasks_api=None,
           log=print, parallel: Parallel | None = None, **overrides: Any) -> dict:
    """Run (or resume, or skip) GRPO; `overrides` are GRPOConfig fields by name (None: the recipe's);
    `parallel` is --fsdp and --activation-checkpointing (saessak/training/parallel.py)."""
    if tasks_api is None:
        import saessak.tasks as tasks_api
    rf = RunFolder(run)
    if (done := completed(rf, "rl", force, log)) is not None:
        return done
    preset = rf.preset(preset)
    cfg = recipes.stage_config(GRPOConfig, preset, "rl", overrides)
    par = parallel or Parallel()
    if par.fsdp and cfg.lora_r:
        raise UserError("--fsdp with --lora-r: not supported yet; train LoRA adapters without --fsdp")
    with StageRun(rf, "rl", force=force, resume=resume, threads=cfg.threads, parallel=par) as st:
        info = st.info
        cfg.validate(info.world)
        families = cfg.families(tasks_api)
        # Full fine-tuning keeps fp32 master weights; under LoRA the frozen base keeps its stored dtype.
        # Under FSDP the model loads into host memory and only each rank's shards go to the device.
        model, tok = load_stage(rf, "sft", "rl", device="cpu" if par.fsdp else info.device,
                                dtype=None if cfg.lora_r else torch.float32)
        lora = attach(model, cfg)
        st.begin()
        samples_path = st.dir / "samples.jsonl"
        ref_model = None
        if cfg.beta > 0 and lora is not None:
            ref_model = BaseOnly(lora)  # the SFT model is the base with the adapters off: no copy
        elif cfg.beta > 0:
            ref_model = copy.deepcopy(model).eval()
            for p in ref_model.parameters():
                p.requires_grad_(False)
        # The policy and the frozen reference are both sharded under FSDP (before the optimizer).
        seq_rows = cfg.micro_batch_size * (cfg.max_completion_length + 64)  # completions of a micro-batch, prompts ~64
        precision = precision_on_rank0(info, info.device, cfg.dtype, model.config, rows=seq_rows)
        dtype = precision.dtype
        # The rollout engine decodes at its batch width with weights already cast: its own measurement.
        # A sharded (FSDP) policy is generated from as it is (the engine's copy would not be sharded).
        gen_precision = precision_on_rank0(info, info.device, None if cfg.dtype == "auto" else cfg.dtype, model.config,
                                        rows=max(64, cfg.num_generations), mode="generate")
        gen_dtype = None if par.fsdp or gen_precision.dtype == "fp32" else torch_dtype(gen_precision.dtype)
        log(f"rl: precision: training {precision.describe()}; rollouts {gen_precision.describe()}")
        kernel = kernel_on_rank0(info, model, seq_rows, dtype, compiled=False, fsdp=par.fsdp)
        kernel_layers = linear_layers(model) if kernel.kernel != "aten" else []
        log(f"rl: linear kernel of the policy update {kernel.describe()}")
        shard_model(model, info, par, dtype)
        if ref_model is not None and par.fsdp:
            shard_model(ref_model, info, dataclasses.replace(par, activation_checkpointing="none"), dtype)
        opt = build_optimizer(model, cfg.learning_rate, cfg.weight_decay)
        cur = make_curriculum(cfg.curriculum, families, cfg)
        step, offset, totals = 0, 0, {"rollout_tokens": 0, "prompt_tokens": 0, "trained_tokens": 0}
        state = st.restore(model, opt)
        if state is not None:
            step, offset, totals = state["step"], state["offset"], state["totals"]
            cur.load_state(state["curriculum"])
            log(f"rl: resuming from {st.resume_from} (step {step})")
        step_before, totals_before = step, dict(totals)  # what earlier attempts did (the ledger counts each attempt)
        sampler = Sampler(model, tok, device=info.device, max_batch_size=max(64, cfg.num_generations), dtype=gen_dtype)
        need = cfg.prompts_per_step // info.world
        n_params = model.config.num_parameters()
        # DeepSeek: routing over the last 10 % of the step limit (a time budget may end the run sooner)
        router = RouterTail(cfg.max_steps // 10) if is_deepseek(model) else None
        if router is None and cfg.bias_update_speed is not None:
            raise UserError(f"--bias-update-speed: a DeepSeek setting; {rf.final_checkpoint('sft')} is not a "
                            "DeepSeek model (it has no router)")
        log(f"rl: preset={preset} tasks={families} G={cfg.num_generations} prompts/step={cfg.prompts_per_step} "
            f"steps={cfg.max_steps} loss={cfg.loss_type} beta={cfg.beta}")

        t_start = time.perf_counter()
        rec: dict = {}
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            lr = lr_at(step, cfg.max_steps, cfg.learning_rate, cfg.warmup_steps, 1.0)  # warm-up, then constant
            set_lr(opt, lr)
            model.eval()
            with full_weights(model):  # FSDP: gathered once for the whole rollout, no collectives inside
                batch = collect(sampler, tok, tasks_api, cfg, cur, need, step, info.rank, offset, info.world)
            offset = batch.next_offset
            model.train()
            assign_advantages(batch.kept, cfg)
            seqs = sequences(batch.kept, cfg.mask_truncated_completions)
            counts = local_counts(seqs)
            keys = sorted(counts)
            summed = dict(zip(keys, all_reduce_sum([counts[k] for k in keys], info)))
            norm = normaliser(summed, cfg.loss_type, cfg.max_completion_length)
            t1 = time.perf_counter()
            with linear_kernel(model, kernel.kernel, kernel_layers):
                stats = update(model, ref_model, opt, seqs, cfg, tok.pad_id, info.device, norm, info, dtype=dtype)
            train_s = time.perf_counter() - t1
            step += 1
            rec = _step_metrics(step, batch, stats, cfg, families, cur, info)
            if router is not None:  # the loads of this step's update (update_router_biases keeps them)
                router.add(model)
                if step % 10 == 0 or step == cfg.max_steps:
                    rec["router"] = router_metrics(model)
            rec.update(lr=lr, rollout_s=round(batch.rollout_s, 3), train_s=round(train_s, 3),
                       step_s=round(time.perf_counter() - t0, 3))
            prompt_toks = sum(len(g.prompt_ids) * cfg.num_generations for g in batch.generated)
            totals["rollout_tokens"] += batch.completion_tokens
            totals["prompt_tokens"] += prompt_toks
            totals["trained_tokens"] += int(stats["trained_tokens"])
            st.metrics.log(rec)
            mine = {k: totals[k] - totals_before[k] for k in totals}
            # Rank 0 counts only its own tokens until the sums at the end: under DDP the heartbeat carries steps.
            st.progress(steps=step - step_before, **({"tokens": sum(mine.values()), "flops": _flops(n_params, mine, cfg)}
                                                     if info.world == 1 else {}))
            if info.is_main:
                if cfg.log_completions and (step % cfg.log_completions == 0 or step == 1):
                    for g in batch.generated[:4]:
                        c = g.completions[0]
                        append_jsonl(samples_path, {"step": step, "task": g.example["task"], "level": g.example["level"],
                                                    "prompt": g.example["prompt"], "answer": g.example["answer"],
                                                    "completion": c.text, "finish_reason": c.finish_reason,
                                                    "reward": float(g.rewards[0]), "correct": bool(g.grades[0]["correct"])})
                log(_progress_line(rec, families))
            over_budget = cfg.time_budget_s is not None and time.perf_counter() - t_start > cfg.time_budget_s
            (stop_flag,) = all_reduce_sum([1.0 if over_budget else 0.0], info)
            if step % cfg.ckpt_every == 0 and step < cfg.max_steps:
                st.checkpoint(step, model, opt, {"curriculum": cur.state(), "offset": offset, "totals": totals})
            barrier(info)
            if stop_flag > 0:
                log(f"rl: time budget {cfg.time_budget_s}s reached after step {step}")
                break

        keys = ("rollout_tokens", "prompt_tokens", "trained_tokens")
        world_tokens = all_reduce_sum([totals[k] for k in keys], info)
        rollout_toks, prompt_toks, trained_toks = (int(x) for x in world_tokens)
        # The ledger records this attempt's own work (a resumed run's earlier attempts have theirs).
        before = all_reduce_sum([totals_before[k] for k in keys], info)
        mine = {k: int(w - b) for k, w, b in zip(keys, world_tokens, before)}
        summary = {"preset": preset, "steps": step, "tasks": families, "levels": dict(cur.levels),
                   "curriculum": cfg.curriculum, "curriculum_moves": cur.moves,
                   "curriculum_state": cur.summary(),
                   "rollout_tokens": rollout_toks, "trained_tokens": trained_toks,
                   "loop_s": round(time.perf_counter() - t_start, 2), "config": dataclasses.asdict(cfg),
                   "precision": {"train": precision.facts(), "rollouts": gen_precision.facts()},
                   "linear_kernel": {"train": kernel.facts(), "rollouts": sampler.engine.kernel.facts()},
                   "last": rec}
        moe_facts = router.summary(model) if router is not None else {}
        summary.update(moe_facts)
        meta = {"preset": preset, "stage": "rl", "step": step, "parent": "sft", "levels": dict(cur.levels)}
        model, footprint = lora_finish(model, lora, cfg, st.dir, str(rf.final_checkpoint("sft")), info.is_main, meta)
        return st.finish(model, meta, summary, **footprint, tokens=sum(mine.values()), flops=_flops(n_params, mine, cfg),
                         steps=step - step_before, rollout_tokens=mine["rollout_tokens"],
                         trained_tokens=mine["trained_tokens"],
                         precision={"train": precision.facts(), "rollouts": gen_precision.facts()}, **moe_facts)


def _flops(n_params: int, tokens: dict, cfg: GRPOConfig) -> float:
    """Generation: 2N FLOPs per prompt and completion token (forward only); training: 6N per
    trained token per iteration, plus 2N for the no-grad old/ref log-prob passes."""
    extra_fwd = (1 if cfg.num_iterations > 1 else 0) + (1 if cfg.beta > 0 else 0)
    trained = tokens["trained_tokens"]
    return 2 * n_params * (tokens["rollout_tokens"] + tokens["prompt_tokens"]) + 6 * n_params * trained \
        + 2 * n_params * extra_fwd * trained / cfg.num_iterations


def _step_metrics(step, batch, stats, cfg, families, cur, info) -> dict:
    """Per-step metrics summed over ranks, then turned into means."""
    sums: dict[str, float] = {}

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + float(value)

    reward_names = list(cfg.reward_weights)
    for name in reward_names + ["total"]:
        add(f"r_{name}_sum", 0)
        add(f"r_{name}_sq", 0)
    for f in families:  # every key on every rank, so the all-reduce below lines up
        for key in (f"acc_{f}_correct", f"acc_{f}_n", f"lvl_{f}_sum", f"lvl_{f}_n"):
            add(key, 0)
    add("completions", 0)
    add("len_sum", 0)
    add("truncated", 0)
    for g in batch.generated:
        f = g.example["task"]
        add(f"lvl_{f}_sum", int(g.example["level"]))
        add(f"lvl_{f}_n", 1)
        for grade, r, c in zip(g.grades, g.rewards.tolist(), g.completions):
            for name in reward_names:
                v = float(grade.get(name, 0.0) or 0.0)
                add(f"r_{name}_sum", v)
                add(f"r_{name}_sq", v * v)
            add("r_total_sum", r)
            add("r_total_sq", r * r)
            add(f"acc_{f}_correct", 1.0 if grade["correct"] else 0.0)
            add(f"acc_{f}_n", 1)
            add("completions", 1)
            add("len_sum", len(c.token_ids))
            add("truncated", 1.0 if c.truncated else 0.0)
    add("groups", len(batch.generated))
    add("zero_std_groups", sum(1 for g in batch.generated if g.zero_std))
    add("kept_groups", len(batch.kept))
    add("completion_tokens", batch.completion_tokens)
    add("rollout_s", batch.rollout_s)
    for k in ("clip_tokens", "kl_sum", "entropy_sum", "tokens", "loss"):
        add(k, stats[k])
    keys = sorted(sums)
    total = dict(zip(keys, all_reduce_sum([sums[k] for k in keys], info)))
    lens = [len(c.token_ids) for g in batch.generated for c in g.completions]
    max_len = int(all_reduce_max(max(lens) if lens else 0, info))
    n = max(1.0, total["completions"])
    rec: dict = {"step": step}
    for name in reward_names + ["total"]:
        mean = total[f"r_{name}_sum"] / n
        rec[f"reward/{name}/mean"] = round(mean, 4)
        rec[f"reward/{name}/std"] = round(max(0.0, total[f"r_{name}_sq"] / n - mean * mean) ** 0.5, 4)
    for f in families:
        if total[f"lvl_{f}_n"]:
            rec[f"level_mean/{f}"] = round(total[f"lvl_{f}_sum"] / total[f"lvl_{f}_n"], 2)
        if total[f"acc_{f}_n"]:
            rec[f"accuracy/{f}"] = round(total[f"acc_{f}_correct"] / total[f"acc_{f}_n"], 4)
        rec[f"level/{f}"] = cur.level(f)
    tok = max(1.0, total["tokens"])
    rec.update({
        "frac_reward_zero_std": round(total["zero_std_groups"] / max(1.0, total["groups"]), 4),
        "groups_generated": int(total["groups"]), "groups_trained": int(total["kept_groups"]),
        "completion_length/mean": round(total["len_sum"] / n, 2), "completion_length/max": max_len,
        "truncated_frac": round(total["truncated"] / n, 4),
        "clip_frac": round(total["clip_tokens"] / tok, 5),
        "entropy": round(total["entropy_sum"] / tok, 4),
        "loss": round(total["loss"], 6),
        "grad_norm": round(stats["grad_norm"], 5),
        # Ranks sample in parallel: tokens over all ranks per second of one rank's rollout time.
        "rollout_tokens_per_s": round(total["completion_tokens"] / max(1e-9, total["rollout_s"] / info.world), 1),
    })
    if cfg.beta > 0:
        rec["kl"] = round(total["kl_sum"] / tok, 6)
    return rec


def _progress_line(rec: dict, families: list[str]) -> str:
    acc = " ".join(f"{f}={rec.get(f'accuracy/{f}', float('nan')):.2f}@L{rec[f'level/{f}']}" for f in families)
    return (f"rl step {rec['step']} reward {rec['reward/total/mean']:.3f} {acc} "
            f"zero_std {rec['frac_reward_zero_std']:.2f} len {rec['completion_length/mean']:.0f} "
            f"{rec['rollout_tokens_per_s']:.0f} tok/s step {rec['step_s']:.1f}s")
