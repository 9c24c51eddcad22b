"""Task evaluation of a model stage on a held-out split of the task suite: greedy pass@1 and pass@k.

For each family, up to `n` distinct items are drawn with a fixed seed, split evenly over the
levels the run's preset trains on (or at random levels, as the suite draws them, with `levels`
all); a level whose held-out space is smaller than its share gives all its distinct questions,
each counted once (`items` / `items_by_level` in the results say how many). `split="val"`
evaluates on the val split instead, for choosing settings. Greedy accuracy is the headline;
pass@k samples k completions per item at `temperature` and counts an item solved if any is
correct (with exactly k samples the unbiased pass@k estimator reduces to this). Results go to
RUN/eval/results.json (val: results_val.json) under the stage's key; the other stages' entries
are kept (atomic rewrite). See results.py for reading and comparing them.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from saessak import recipes
from saessak.errors import UserError
from saessak.evals.config import EvalConfig, parse_levels
from saessak.evals.results import read_results
from saessak.io import file_sha256, write_json
from saessak.ledger import StageTimer
from saessak.model.loading import load_stage
from saessak.model.sampler import Sampler, generation_precision, torch_dtype_for_engine
from saessak.runfolder import MODEL_STAGES, RunFolder, stage_name
from saessak.tasks.base import ANSWER_LINE_STOP
from saessak.tasks.registry import prompt_messages
from saessak.tokenizer.chat_format import prompt_ids

SAMPLES_PER_FAMILY = 2
DISTINCT_PATIENCE = 100  # repeats in a row that mean a level's held-out space is used up
# The engine's batch width for evaluation: on the 2-core AMD EPYC, greedy decoding of 512 held-out
# prompts with the cpu-tiny SFT model ran at 1.37x the tokens/s at 256 rows than at 64 (bench/eval_speed.py
# measures the whole protocol against the old one).
EVAL_WIDTH = 256


def draw_items(tasks_api, family: str, split: str, n: int, seed: int, levels: list[int] | None) -> list[dict]:
    """At most n distinct items of one family: as the suite draws them (level uniform over 1..5) when
    `levels` is None, else stratified: n split as evenly as possible over `levels`, each level with its
    own stream.

    A question is counted once. Some levels have a small held-out space (calendar level 1 has 7
    distinct test questions); drawing 200 items from it would count each question about 29 times,
    so one answer flip would move the family's score by several points. Such a level contributes
    every distinct question it has and no more, so the family can get fewer than n items.
    """
    if not levels:
        return _distinct_items(tasks_api, family, split, n, seed, None)
    out = []
    for i, lvl in enumerate(levels):
        count = n // len(levels) + (1 if i < n % len(levels) else 0)
        if count:
            out += _distinct_items(tasks_api, family, split, count, seed, lvl)
    return out


def _distinct_items(tasks_api, family: str, split: str, count: int, seed: int, level: int | None) -> list[dict]:
    """The first `count` distinct (prompt, answer) items of the stream, or all of them once `patience`
    draws in a row bring nothing new (the space is used up: a question drawn with chance 1/S is
    missed with probability about exp(-patience/S), under 1e-4 for S <= 10 at patience 100)."""
    out: list[dict] = []
    seen: set[tuple[str, str]] = set()
    drawn, idle, patience = 0, 0, max(DISTINCT_PATIENCE, count)
    while len(out) < count and idle < patience:
        batch = tasks_api.sample(family, split, count - len(out), seed=seed, level=level, start=drawn)
        if not batch:
            break
        drawn += len(batch)
        for item in batch:
            ident = (item["prompt"], item["answer"])
            if ident in seen:
                idle += 1
                continue
            seen.add(ident)
            out.append(item)
            idle = 0
    return out


def evaluate_model(model, tokenizer, tasks_api, families: list[str], n: int, k: int, seed: int,
                   max_tokens: int, temperature: float = 0.8, device: str = "cpu", split: str = "test",
                   levels: list[int] | None = None, dtype: str | None = None) -> dict:
    """Greedy accuracy and pass@k per family for a loaded model (no files touched).

    Every family's prompts go to the engine in one call (greedy, then the k samples), so its batch
    stays full to the end instead of draining once per family; a completion ends at its first
    completed `정답:` line (or its end-of-turn token, or `max_tokens`). The engine's weights are
    bf16 or fp32 by measurement (`dtype` auto/None) unless `dtype` says.
    """
    choice = generation_precision(model, tokenizer, EVAL_WIDTH, device, dtype)
    sampler = Sampler(model, tokenizer, device=device, max_batch_size=EVAL_WIDTH, dtype=torch_dtype_for_engine(choice))
    room = sampler.max_seq_len - max_tokens
    out = {"tasks": {}, "pass_at_k": {}, "by_level": {}, "items": {}, "items_by_level": {}, "correct": {}, "items_sha": {},
           "split": split, "levels": levels or "all", "k": k, "n": n,
           "seed": seed,
           "temperature": temperature, "max_tokens": max_tokens, "stop": "answer line", "samples": [],
           "precision": choice.facts()}
    drawn = {f: draw_items(tasks_api, f, split, n, seed, levels) for f in families}
    prompts = {f: [prompt_ids(tokenizer, prompt_messages(ex))[-room:] for ex in examples]
               for f, examples in drawn.items()}
    flat = [p for f in families for p in prompts[f]]
    # Prompt i of a family keeps the seed it had when families were sampled one call each.
    greedy_all = sampler.sample(flat, max_tokens=max_tokens, temperature=0.0, stop_at_line=ANSWER_LINE_STOP,
                                seeds=[seed + i for f in families for i in range(len(prompts[f]))])
    sampled_all = []
    if k >= 1:
        sampled_all = sampler.sample([p for p in flat for _ in range(k)], max_tokens=max_tokens,
                                     temperature=temperature, stop_at_line=ANSWER_LINE_STOP,
                                     seeds=[seed + 1 + i for f in families for i in range(len(prompts[f]) * k)])
    gen_tokens = sum(len(c.token_ids) for c in greedy_all) + sum(len(c.token_ids) for c in sampled_all)
    at = 0
    for f in families:
        examples = drawn[f]
        greedy = greedy_all[at:at + len(examples)]
        sampled = sampled_all[at * k:(at + len(examples)) * k]
        at += len(examples)
        correct = [bool(tasks_api.grade(ex, c.text)["correct"]) for ex, c in zip(examples, greedy)]
        out["tasks"][f] = round(sum(correct) / len(correct), 4)
        by_level: dict[int, list[bool]] = {}
        for ex, ok in zip(examples, correct):
            by_level.setdefault(int(ex["level"]), []).append(ok)
        out["by_level"][f] = {str(lvl): round(sum(v) / len(v), 4) for lvl, v in sorted(by_level.items())}
        out["items"][f] = len(examples)
        # Per-item outcomes (in draw order) and which items they were: two stages evaluated on the
        # same items can be compared item by item (paired_gain), which is far tighter than comparing
        # two accuracies.
        out["correct"][f] = "".join("1" if ok else "0" for ok in correct)
        out["items_sha"][f] = _items_sha(examples)
        out["items_by_level"][f] = {str(lvl): len(v) for lvl, v in sorted(by_level.items())}
        for ex, c, ok in list(zip(examples, greedy, correct))[:SAMPLES_PER_FAMILY]:
            out["samples"].append({"task": f, "level": ex["level"], "prompt": ex["prompt"], "answer": ex["answer"],
                                   "response": c.text, "correct": ok})
        if k >= 1:
            solved = 0
            for i, ex in enumerate(examples):
                if any(tasks_api.grade(ex, c.text)["correct"] for c in sampled[i * k:(i + 1) * k]):
                    solved += 1
            out["pass_at_k"][f] = round(solved / len(examples), 4)
    out["generated_tokens"] = gen_tokens
    return out


def _items_sha(examples: list[dict]) -> str:
    blob = "\n".join(f"{ex['prompt']}\t{ex['answer']}" for ex in examples)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def run_eval_tasks(run: str, stage: str, *, force: bool = False, tasks_api=None, log=print,
                   **overrides: Any) -> dict:
    """Evaluate one stage; `overrides` are EvalConfig fields by name (None: the preset's recipe value).
    `levels` may also be given as text (`1-3`, `all`)."""
    if stage_name(stage) not in MODEL_STAGES:
        raise UserError(f"--stage {stage!r}: not a model stage (one of {', '.join(MODEL_STAGES)})")
    stage = stage_name(stage)
    if isinstance(overrides.get("levels"), str):
        overrides["levels"] = parse_levels(overrides["levels"])
    if tasks_api is None:
        import saessak.tasks as tasks_api
    rf = RunFolder(run)
    rf.require(stage, f"eval tasks --stage {stage}")
    cfg = recipes.stage_config(EvalConfig, rf.preset(), "eval", overrides)
    cfg.validate()
    families = list(cfg.tasks or tasks_api.FAMILIES)
    unknown = [t for t in families if t not in tasks_api.FAMILIES]
    if unknown:
        raise UserError(f"--tasks {','.join(unknown)}: unknown task (known: {', '.join(tasks_api.FAMILIES)})")
    levels = list(cfg.levels) if cfg.levels else None
    max_tokens = cfg.base_max_tokens if stage == "pretrain" and overrides.get("max_tokens") is None else cfg.max_tokens
    weights = rf.final_checkpoint(stage) / "model.safetensors"
    model_sha = file_sha256(weights) if weights.exists() else None
    existing = read_results(rf, cfg.split).get(stage)
    # Skip only if this very model was evaluated with the same settings (a redone stage is re-evaluated).
    if existing and not force and existing.get("n") == cfg.n and existing.get("k") == cfg.k \
            and existing.get("seed") == cfg.seed and sorted(existing.get("tasks", {})) == sorted(families) \
            and existing.get("levels", "all") == (levels or "all") and existing.get("model_sha256") == model_sha \
            and existing.get("max_tokens") == max_tokens:
        log(f"eval: {rf.eval_results(cfg.split)} already has '{stage}' (n={cfg.n}, k={cfg.k}, seed={cfg.seed}); "
            "skipping (--force to redo)")
        return existing
    # In the ledger from here on (loading the model is part of the cost); an error ends it as failed.
    with StageTimer(run, "eval", facts={"model_stage": stage, "split": cfg.split}) as timer:
        model, tok = load_stage(rf, stage, f"eval tasks --stage {stage}")
        model.eval()
        t0 = time.perf_counter()
        result = evaluate_model(model, tok, tasks_api, families, cfg.n, cfg.k, cfg.seed, max_tokens,
                                cfg.temperature, split=cfg.split, levels=levels, dtype=cfg.dtype)
        result["wall_s"] = round(time.perf_counter() - t0, 2)
        result["model_sha256"] = model_sha
        # Re-read right before writing: another stage's eval may have finished meanwhile.
        merged = read_results(rf, cfg.split)
        merged[stage] = result
        write_json(rf.eval_results(cfg.split), merged)
        params = model.config.num_parameters()
        timer.finish(params=params, tokens=result["generated_tokens"],
                     flops=2 * params * result["generated_tokens"], n=cfg.n, k=cfg.k, precision=result["precision"])
    log(f"eval {stage} ({cfg.split}): " + " ".join(f"{f}={a:.3f}" for f, a in result["tasks"].items())
        + (" | pass@%d " % cfg.k + " ".join(f"{f}={a:.3f}" for f, a in result["pass_at_k"].items()) if cfg.k else ""))
    return result
