"""RL step speed at the cpu-tiny shape: rollout tokens/s and GRPO step time, G=8, 128-token completions.

Measures, on this machine, with a randomly initialised cpu-tiny model (speed does not depend on
what the weights know; a random model rarely ends its turn, so every completion runs the full
128 tokens, the worst case):
  - rollouts through saessak's engine (batched KV cache), fp32 and bf16 weights;
  - side by side, what a user would otherwise write: the same batch sampled with a plain loop that
    re-runs the whole sequence each token (no KV cache; what a first GRPO script does);
  - one full GRPO step (rollout + grading + advantages + policy update) as the RL stage runs it.

Usage: python bench/rl_step.py [--quick]     (last stdout line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import saessak.tasks as tasks  # noqa: E402
from saessak.chat_format import prompt_ids  # noqa: E402
from saessak.model import Llama  # noqa: E402
from saessak.presets import model_config  # noqa: E402
from saessak.sft_data import prompt_messages  # noqa: E402


def task_tokenizer(vocab_size: int):
    """A tokenizer trained in seconds on task text (only its size matters for speed)."""
    from saessak.tokenizer import train_tokenizer

    texts = []
    for f in tasks.FAMILIES:
        for ex in tasks.sample(f, "train", 300, seed=0):
            texts += [ex["prompt"], tasks.solution(ex)]
    return train_tokenizer(texts, vocab_size)


def naive_sample(model, prompts, max_tokens, temperature, seed):
    """Left-padded batch, full forward over the whole sequence for every new token."""
    gen = torch.Generator().manual_seed(seed)
    T = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), T, dtype=torch.long)
    pad = torch.zeros(len(prompts), T, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):] = torch.tensor(p)
        pad[i, :T - len(p)] = True
    with torch.no_grad():
        for _ in range(max_tokens):
            L = ids.size(1)
            keep = ~pad
            pos = (keep.cumsum(1) - 1).clamp(min=0)
            causal = torch.ones(L, L, dtype=torch.bool).tril()
            mask = causal[None] & keep[:, None, :]
            mask = mask | torch.eye(L, dtype=torch.bool)[None]
            logits = model(ids, position_ids=pos, attn_mask=mask[:, None])[:, -1].float()
            probs = torch.softmax(logits / temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=gen)
            ids = torch.cat([ids, nxt], 1)
            pad = torch.cat([pad, torch.zeros(len(prompts), 1, dtype=torch.bool)], 1)
    return len(prompts) * max_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer prompts and steps (under a minute)")
    args = ap.parse_args()
    G, L = 8, 128
    n_prompts = 2 if args.quick else 8
    repeats = 1 if args.quick else 2
    torch.manual_seed(0)
    tok = task_tokenizer(4096)
    cfg = model_config("cpu-tiny", vocab_size=tok.vocab_size)
    model = Llama(cfg)
    model.init_weights(0)
    examples = [tasks.sample(f, "train", 1, seed=i)[0] for i, f in zip(range(n_prompts), tasks.FAMILIES * 4)]
    prompts = [prompt_ids(tok, prompt_messages(ex)) for ex in examples]
    flat = [p for p in prompts for _ in range(G)]

    from saessak.rollout import Sampler

    result = {"shape": "cpu-tiny", "params": cfg.num_parameters(), "G": G, "completion_tokens": L,
              "prompts": n_prompts, "threads": torch.get_num_threads()}
    for name, dtype in (("engine_fp32", None), ("engine_bf16", torch.bfloat16)):
        sampler = Sampler(model, tok, max_batch_size=64, dtype=dtype)
        sampler.sample(flat[:8], max_tokens=8, temperature=1.0)  # warm-up
        best = float("inf")
        for r in range(repeats):
            t0 = time.perf_counter()
            outs = sampler.sample(flat, max_tokens=L, temperature=1.0, seed=r)
            best = min(best, time.perf_counter() - t0)
        toks = sum(len(o.token_ids) for o in outs)
        result[f"{name}_tok_per_s"] = round(toks / best, 1)

    naive_flat = flat[: 2 * G]  # the baseline is slow; time a slice and report its rate
    t0 = time.perf_counter()
    toks = naive_sample(model, naive_flat, L if not args.quick else 48, 1.0, 0)
    result["naive_no_cache_tok_per_s"] = round(toks / (time.perf_counter() - t0), 1)
    result["rollout_speedup_vs_naive"] = round(result["engine_fp32_tok_per_s"] / result["naive_no_cache_tok_per_s"], 2)

    # One GRPO step as the stage runs it (dynamic sampling off: a random model's groups all score 0).
    from saessak.curriculum import Curriculum
    from saessak.rl_config import GRPOConfig
    from saessak.rl_rollouts import assign_advantages, collect
    from saessak.rl_update import local_counts, normaliser, sequences, update
    from saessak.training import build_optimizer

    rl_cfg = GRPOConfig(max_steps=1, prompts_per_step=n_prompts, num_generations=G, max_completion_length=L,
                        dynamic_sampling=False, mask_truncated_completions=False, micro_batch_size=32)
    sampler = Sampler(model, tok, max_batch_size=64)
    cur = Curriculum(tasks.FAMILIES, 1, 5, 0.8, 0.05, 32)
    opt = build_optimizer(model, 1e-4, 0.0)
    times = []
    for step in range(repeats):
        t0 = time.perf_counter()
        batch = collect(sampler, tok, tasks, rl_cfg, cur, n_prompts, step, 0, 0)
        t1 = time.perf_counter()
        assign_advantages(batch.kept, rl_cfg)
        seqs = sequences(batch.kept, False)
        norm = normaliser(local_counts(seqs), rl_cfg.loss_type, L)
        update(model, None, opt, seqs, rl_cfg, tok.pad_id, "cpu", norm, lambda m: None)
        t2 = time.perf_counter()
        times.append((t2 - t0, t1 - t0, t2 - t1, batch.completion_tokens))
    step_s, roll_s, train_s, ctoks = min(times)
    result.update(rl_step_s=round(step_s, 2), rl_rollout_s=round(roll_s, 2), rl_update_s=round(train_s, 2),
                  rl_completions=n_prompts * G, rl_completion_tokens=ctoks,
                  rl_train_tok_per_s=round(sum(len(s.prompt_ids) + len(s.completion_ids) for s in seqs) / train_s, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
