"""Task evaluation of a model stage on the held-out `test` split: greedy pass@1 and pass@k.

For each family, up to `n` distinct test items are drawn with a fixed seed, split evenly over the
levels the run's preset trains on (or at random levels, as the suite draws them, with
`levels="all"`); a level whose held-out space is smaller than its share gives all its distinct
questions, each counted once (`items` / `items_by_level` in the results say how many);
`split="val"` evaluates on the val split instead, for choosing settings. Greedy accuracy is the headline; pass@k samples k completions per item at `temperature`
and counts an item solved if any is correct (with exactly k samples the unbiased pass@k
estimator reduces to this). Results go to RUN/eval/results.json (val: results_val.json) under the stage's
key; the other stages' entries are kept (atomic rewrite).
"""

from __future__ import annotations

import time

from saessak.errors import UserError
from saessak.runfolder import MODEL_STAGES, RunFolder
from saessak.tasks.base import LEVELS, SPLITS

DEFAULT_SEED = 20240901
SAMPLES_PER_FAMILY = 2
DISTINCT_PATIENCE = 100  # repeats in a row that mean a level's held-out space is used up



def results_path(rf: RunFolder, split: str = "test"):
    """The held-out test split's results (the report's); other splits' results are kept apart."""
    return rf.stage_dir("eval") / ("results.json" if split == "test" else f"results_{split}.json")


def read_results(rf: RunFolder, split: str = "test") -> dict:
    from saessak.io import read_json

    p = results_path(rf, split)
    return read_json(p) if p.exists() else {}


def _file_sha256(path) -> str | None:
    import hashlib

    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def parse_levels(text: str | None) -> list[int] | None:
    """`1-3`, `1,2,3`, `2` or `all` (None)."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            levels = list(range(lo, hi + 1))
        else:
            levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--levels {text!r}: expected a range like 1-3, a list like 1,2,3, or all") from None
    if not levels or not all(lvl in LEVELS for lvl in levels):
        raise UserError(f"--levels {text!r}: levels run from {LEVELS[0]} to {LEVELS[-1]}")
    return levels


def evaluate_model(model, tokenizer, tasks_api, families: list[str], n: int, k: int, seed: int,
                   max_tokens: int, temperature: float = 0.8, device: str = "cpu", split: str = "test",
                   levels: list[int] | None = None) -> dict:
    """Greedy accuracy and pass@k per family for a loaded model (no files touched)."""
    from saessak.chat_format import prompt_ids
    from saessak.rollout import Sampler
    from saessak.sft_data import prompt_messages

    sampler = Sampler(model, tokenizer, device=device, max_batch_size=64)
    room = sampler.max_seq_len - max_tokens
    out = {"tasks": {}, "pass_at_k": {}, "by_level": {}, "items": {}, "items_by_level": {}, "correct": {}, "items_sha": {},
           "split": split, "levels": levels or "all", "k": k, "n": n,
           "seed": seed,
           "temperature": temperature, "max_tokens": max_tokens, "samples": []}
    gen_tokens = 0
    for f in families:
        examples = draw_items(tasks_api, f, split, n, seed, levels)
        prompts = [prompt_ids(tokenizer, prompt_messages(ex))[-room:] for ex in examples]
        greedy = sampler.sample(prompts, max_tokens=max_tokens, temperature=0.0, seed=seed)
        gen_tokens += sum(len(c.token_ids) for c in greedy)
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
            flat = [p for p in prompts for _ in range(k)]
            sampled = sampler.sample(flat, max_tokens=max_tokens, temperature=temperature, seed=seed + 1)
            gen_tokens += sum(len(c.token_ids) for c in sampled)
            solved = 0
            for i, ex in enumerate(examples):
                if any(tasks_api.grade(ex, c.text)["correct"] for c in sampled[i * k:(i + 1) * k]):
                    solved += 1
            out["pass_at_k"][f] = round(solved / len(examples), 4)
    out["generated_tokens"] = gen_tokens
    return out


def _items_sha(examples: list[dict]) -> str:
    import hashlib

    blob = "\n".join(f"{ex['prompt']}\t{ex['answer']}" for ex in examples)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def paired_gain(before: dict, after: dict, family: str) -> tuple[float, float] | None:
    """(after - before accuracy, half-width of its 95 % interval) from per-item outcomes, when both
    results scored the same items; None otherwise. The interval is the normal one for a paired mean
    difference: 1.96 * sd(d) / sqrt(N) with d = after_i - before_i in {-1, 0, 1}."""
    a, b = (before.get("correct") or {}).get(family), (after.get("correct") or {}).get(family)
    same = (before.get("items_sha") or {}).get(family) == (after.get("items_sha") or {}).get(family)
    if not a or not b or len(a) != len(b) or not same or len(a) < 2:
        return None
    d = [int(y) - int(x) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    return mean, 1.96 * (var / n) ** 0.5


def run_eval_tasks(run: str, stage: str, n: int = 200, k: int = 4, seed: int = DEFAULT_SEED,
                   tasks: list[str] | None = None, temperature: float = 0.8, max_tokens: int | None = None,
                   force: bool = False, tasks_api=None, log=print, split: str = "test",
                   levels: list[int] | str | None = None) -> dict:
    """Evaluate one stage; `levels` None = the RL preset's levels (1..its max_level), "all" = as drawn."""
    from saessak.io import write_json
    from saessak.ledger import StageTimer
    from saessak.presets import task_levels
    from saessak.rl_config import config_for
    from saessak.stage_model import load_stage, preset_of

    if stage not in MODEL_STAGES:
        raise UserError(f"--stage {stage!r}: not a model stage (one of {', '.join(MODEL_STAGES)})")
    if n < 1:
        raise UserError(f"--n {n}: must be at least 1")
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: must be one of {', '.join(SPLITS)}")
    if k < 0:
        raise UserError(f"--k {k}: must be >= 0 (0 skips pass@k)")
    if tasks_api is None:
        import saessak.tasks as tasks_api
    families = list(tasks or tasks_api.FAMILIES)
    unknown = [t for t in families if t not in tasks_api.FAMILIES]
    if unknown:
        raise UserError(f"--tasks {','.join(unknown)}: unknown task (known: {', '.join(tasks_api.FAMILIES)})")
    rf = RunFolder(run)
    rf.require(stage, f"eval tasks --stage {stage}")
    preset = preset_of(rf)
    rl_cfg = config_for(preset)
    if levels is None:  # the levels the preset is trained and judged on, see docs/RL.md#levels
        levels = None if task_levels(preset) == LEVELS else list(task_levels(preset))
    elif isinstance(levels, str):
        levels = parse_levels(levels)
    model_sha = _file_sha256(rf.final_checkpoint(stage) / "model.safetensors")
    existing = read_results(rf, split).get(stage)
    # Skip only if this very model was evaluated with the same settings (a redone stage is re-evaluated).
    if existing and not force and existing.get("n") == n and existing.get("k") == k \
            and existing.get("seed") == seed and sorted(existing.get("tasks", {})) == sorted(families) \
            and existing.get("levels", "all") == (levels or "all") and existing.get("model_sha256") == model_sha:
        log(f"eval: {results_path(rf, split)} already has '{stage}' (n={n}, k={k}, seed={seed}); skipping (--force to redo)")
        return existing
    model, tok = load_stage(rf, stage, f"eval tasks --stage {stage}")
    model.eval()
    if max_tokens is None:
        max_tokens = rl_cfg.max_completion_length
    timer = StageTimer(run, "eval")
    t0 = time.perf_counter()
    result = evaluate_model(model, tok, tasks_api, families, n, k, seed, max_tokens, temperature, split=split,
                            levels=levels)
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    result["model_sha256"] = model_sha
    # Re-read right before writing: another stage's eval may have finished meanwhile.
    merged = read_results(rf, split)
    merged[stage] = result
    write_json(results_path(rf, split), merged)
    params = model.config.num_parameters()
    timer.finish(model_stage=stage, params=params, tokens=result["generated_tokens"],
                 flops=2 * params * result["generated_tokens"], n=n, k=k)
    log(f"eval {stage} ({split}): " + " ".join(f"{f}={a:.3f}" for f, a in result["tasks"].items())
        + (" | pass@%d " % k + " ".join(f"{f}={a:.3f}" for f, a in result["pass_at_k"].items()) if k else ""))
    return result
