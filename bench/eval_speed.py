"""Task evaluation: the protocol before issue 17 and the one the speedrun now runs, side by side.

Same model, same held-out items (the sealed `final` split's draw, `--n` per family at the run's
levels), greedy pass@1 plus `--k` samples per item, the recipe's answer limit:

- before:  the engine at 64 rows, fp32 weights, one call per family and per pass, each completion
           running to its end-of-turn token or the limit;
- now:     every family in one call per pass at 256 rows (EVAL_WIDTH), the engine's weights in the
           precision its decode measurement chooses, each completion ending at its answer line
           (saessak/evals/task_eval.py).

Reports wall seconds, generated tokens and tokens/s of each, and both greedy accuracies per family
(they can differ only where a model writes a second answer line after its first).

    .venv/bin/python bench/eval_speed.py --run runs/cpu-tiny [--stage sft] [--n 300] [--k 4]
    .venv/bin/python bench/eval_speed.py --smoke    # a random cpu-tiny model, 4 items, in seconds (tests)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)


def _before(model, tok, tasks_api, families, n, k, seed, max_tokens, levels):
    """The protocol as it was: per family, width 64, fp32, no answer-line stop."""
    from saessak.evals.task_eval import draw_items
    from saessak.model.sampler import Sampler
    from saessak.tasks.registry import prompt_messages
    from saessak.tokenizer.chat_format import prompt_ids

    sampler = Sampler(model, tok, max_batch_size=64)
    room = sampler.max_seq_len - max_tokens
    acc, tokens = {}, 0
    for f in families:
        examples = draw_items(tasks_api, f, "final", n, seed, levels)
        prompts = [prompt_ids(tok, prompt_messages(ex))[-room:] for ex in examples]
        greedy = sampler.sample(prompts, max_tokens=max_tokens, temperature=0.0, seed=seed)
        tokens += sum(len(c.token_ids) for c in greedy)
        acc[f] = round(sum(bool(tasks_api.grade(ex, c.text)["correct"]) for ex, c in zip(examples, greedy))
                       / max(1, len(examples)), 4)
        if k:
            sampled = sampler.sample([p for p in prompts for _ in range(k)], max_tokens=max_tokens, temperature=0.8,
                                     seed=seed + 1)
            tokens += sum(len(c.token_ids) for c in sampled)
    return acc, tokens


def main() -> None:
    import torch

    import saessak.tasks as tasks_api
    from saessak.evals.task_eval import EVAL_WIDTH, evaluate_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/cpu-tiny", help="a run folder with the model stage (default: the speedrun's, runs/cpu-tiny)")
    ap.add_argument("--stage", default="sft")
    ap.add_argument("--n", type=int, default=300, help="items per family, at most")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--smoke", action="store_true", help="a random cpu-tiny model, 4 items per family (tests)")
    add_record_args(ap)
    args = ap.parse_args()
    seed = 20240901
    if args.smoke:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from engine_generate import cpu_tiny_model, toy_tokenizer

        tok = toy_tokenizer()
        model = cpu_tiny_model()
        families, n, k, max_tokens, levels = ["josa", "spacing"], 4, 1, 16, [1]
    else:
        from saessak import recipes
        from saessak.evals.config import EvalConfig
        from saessak.model.loading import load_stage
        from saessak.runfolder import RunFolder

        rf = RunFolder(args.run)
        model, tok = load_stage(rf, args.stage, "bench/eval_speed.py")
        cfg = recipes.stage_config(EvalConfig, rf.preset(), "eval")
        families, n, k, max_tokens = list(tasks_api.FAMILIES), args.n, args.k, cfg.max_tokens
        levels = list(cfg.levels) if cfg.levels else None
    model.eval()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    acc_before, tok_before = _before(model, tok, tasks_api, families, n, k, seed, max_tokens, levels)
    wall_before = time.perf_counter() - t0
    t0 = time.perf_counter()
    now = evaluate_model(model, tok, tasks_api, families, n, k, seed, max_tokens, split="final", levels=levels)
    wall_now = time.perf_counter() - t0
    result = {
        "bench": "eval_speed", "smoke": args.smoke, "run": None if args.smoke else args.run,
        "stage": None if args.smoke else args.stage, "n": n, "k": k, "max_tokens": max_tokens,
        "items": sum(now["items"].values()), "width_now": EVAL_WIDTH,
        "before": {"wall_s": round(wall_before, 2), "tokens": tok_before,
                   "tok_s": round(tok_before / wall_before, 1), "greedy": acc_before},
        "now": {"wall_s": round(wall_now, 2), "tokens": now["generated_tokens"],
                "tok_s": round(now["generated_tokens"] / wall_now, 1), "greedy": now["tasks"],
                "precision": now["precision"]},
        "speedup": round(wall_before / wall_now, 2),
        "threads": torch.get_num_threads(),
    }
    print(f"before: {wall_before:.1f} s, {tok_before} tokens; now: {wall_now:.1f} s, {now['generated_tokens']} tokens "
          f"({result['speedup']}x)")
    emit("eval_speed", result, args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    b, n = r["before"], r["now"]
    prec = n.get("precision") or {}
    rows = [["before: 64 rows, fp32, per family, to end-of-turn or limit", f"{b['wall_s']:.1f}", f"{b['tokens']:,}",
             f"{b['tok_s']:,.0f}", "1.00x"],
            [f"now: {r['width_now']} rows, {prec.get('dtype', '?')} ({prec.get('source', '?')}), one call, "
             f"stop at the answer line", f"{n['wall_s']:.1f}", f"{n['tokens']:,}", f"{n['tok_s']:,.0f}",
             f"{r['speedup']:.2f}x"]]
    fams = list(b["greedy"])
    acc = [[f, f"{100 * b['greedy'][f]:.1f}", f"{100 * n['greedy'].get(f, 0):.1f}"] for f in fams]
    where = "a random cpu-tiny model (--smoke)" if r.get("smoke") else f"`{r['run']}`'s {r['stage']} model"
    return "\n".join([
        f"{where}, {r['items']:,} items of the `final` split, greedy plus {r['k']} samples each, limit "
        f"{r['max_tokens']} tokens, {r['threads']} torch threads.", "",
        md_table(["protocol", "wall s", "generated tokens", "tokens/s", "speed-up"], rows), "",
        md_table(["family", "greedy % before", "greedy % now"], acc)])


if __name__ == "__main__":
    main()
