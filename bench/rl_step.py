"""RL step speed at the cpu-tiny shape: rollout tokens/s and GRPO step time, G=8, 128-token completions.

Measures, on this machine, with a randomly initialised cpu-tiny model (speed does not depend on
what the weights know; a random model rarely ends its turn, so every completion runs the full
128 tokens, the worst case):
  - rollouts through saessak's engine (batched KV cache), fp32 and bf16 weights;
  - side by side, what a user would otherwise write: the same batch sampled with a plain loop that
    re-runs the whole sequence each token (no KV cache; what a first GRPO script does);
  - one full GRPO step (rollout + grading + advantages + policy update) as the RL stage runs it;
  - the policy update alone on completions as long as an SFT model's (worked solutions), with each
    prompt run once for its G completions (the stage's layout) against one padded row per completion;
  - side by side, the same step in Hugging Face TRL's GRPOTrainer on the same model exported with
    `saessak export hf`: same prompts, G, completion length, reward (the task suite's graders),
    loss (dapo, no reference model), fp32 on the same threads. Skipped with a note when trl is not
    installed (`pip install -e .[bench]`) or with --no-trl.

Usage: python bench/rl_step.py [--quick | --smoke] [--no-trl] [--run DIR]   (last stdout line: one JSON object)
`--smoke` runs every part, TRL's included, at G=2 and 8 tokens in seconds (the test suite runs it).
`--run DIR`: record what the benchmark spent as a `bench` attempt in DIR's ledger (a run folder, or
a folder made for it), so `saessak bill` counts it with the project.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)
from bench._lib.step_timer import step_timer  # noqa: E402

import torch  # noqa: E402

import saessak.tasks as tasks  # noqa: E402
from saessak.model import Llama, model_config  # noqa: E402
from saessak.tasks.registry import prompt_messages  # noqa: E402
from saessak.tokenizer.chat_format import prompt_ids  # noqa: E402


def task_tokenizer(vocab_size: int, per_family: int = 300):
    """A tokenizer trained in seconds on task text (only its size matters for speed)."""
    from saessak.tokenizer import train_tokenizer

    texts = []
    for f in tasks.FAMILIES:
        for ex in tasks.sample(f, "train", per_family, seed=0):
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
    ap.add_argument("--no-trl", action="store_true", help="skip the side-by-side with TRL's GRPOTrainer")
    ap.add_argument("--smoke", action="store_true", help="every part at G=2, 8 tokens, in seconds (tests)")
    ap.add_argument("--run", default=None, metavar="DIR",
                    help="record the benchmark's cost as a `bench` attempt in DIR's ledger (saessak bill counts it)")
    add_record_args(ap)
    args = ap.parse_args()
    if args.run is None:
        measure(args)
        return
    from saessak.ledger import StageTimer, count_from_process_start

    count_from_process_start()  # this script is the process: its start-up and imports are part of the cost
    with StageTimer(args.run, "bench", facts={"bench": "rl_step.py", "smoke": args.smoke, "quick": args.quick,
                                              "unmeasured": "tokens and FLOPs (a benchmark times its work)"}):
        measure(args)


def measure(args) -> None:
    G, L = (2, 8) if args.smoke else (8, 128)
    n_prompts = 1 if args.smoke else 2 if args.quick else 8
    repeats = 1 if args.quick or args.smoke else 2
    torch.manual_seed(0)
    tok = task_tokenizer(1024, per_family=50) if args.smoke else task_tokenizer(4096)
    cfg = model_config("cpu-tiny", vocab_size=tok.vocab_size)
    model = Llama(cfg)
    model.init_weights(0)
    examples = [tasks.sample(f, "train", 1, seed=i)[0] for i, f in zip(range(n_prompts), tasks.FAMILIES * 4)]
    prompts = [prompt_ids(tok, prompt_messages(ex)) for ex in examples]
    flat = [p for p in prompts for _ in range(G)]

    from saessak.model.sampler import Sampler

    result = {"smoke": args.smoke, "quick": args.quick, "shape": "cpu-tiny", "params": cfg.num_parameters(), "G": G, "completion_tokens": L,
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
    toks = naive_sample(model, naive_flat, L if not args.quick else min(L, 48), 1.0, 0)
    result["naive_no_cache_tok_per_s"] = round(toks / (time.perf_counter() - t0), 1)
    result["rollout_speedup_vs_naive"] = round(result["engine_fp32_tok_per_s"] / result["naive_no_cache_tok_per_s"], 2)

    # One GRPO step as the stage runs it (dynamic sampling off: a random model's groups all score 0).
    from saessak.rl.config import GRPOConfig
    from saessak.rl.curriculum import Curriculum
    from saessak.rl.grpo import assign_advantages, local_counts, normaliser, sequences, update
    from saessak.rl.rollouts import collect
    from saessak.training.optim import build_optimizer

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
        update(model, None, opt, seqs, rl_cfg, tok.pad_id, "cpu", norm)
        t2 = time.perf_counter()
        times.append((t2 - t0, t1 - t0, t2 - t1, batch.completion_tokens))
    step_s, roll_s, train_s, ctoks = min(times)
    result.update(rl_step_s=round(step_s, 2), rl_rollout_s=round(roll_s, 2), rl_update_s=round(train_s, 2),
                  rl_completions=n_prompts * G, rl_completion_tokens=ctoks, rl_step_tok_per_s=round(ctoks / step_s, 1),
                  rl_train_tok_per_s=round(sum(len(s.prompt_ids) + len(s.completion_ids) for s in seqs) / train_s, 1))
    result.update(layout_side_by_side(model, tok, G, 1 if args.smoke else 3 if args.quick else 7))
    if args.no_trl:
        result["trl"] = "skipped (--no-trl)"
    else:
        result.update(trl_side_by_side(model, tok, examples, G, L, repeats + 1, result["rl_step_tok_per_s"]))
    emit("rl_step", result, args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    n = r["prompts"] * r["G"]
    rows = [["engine fp32, rollout tokens/s", f"{r['engine_fp32_tok_per_s']:,.0f}"],
            ["engine bf16 weights, rollout tokens/s", f"{r['engine_bf16_tok_per_s']:,.0f}"],
            ["no-KV-cache loop, tokens/s", f"{r['naive_no_cache_tok_per_s']:,.0f}"],
            ["engine speed-up over the no-cache loop", f"{r['rollout_speedup_vs_naive']:.1f}x"],
            [f"saessak RL step ({r['rl_completions']} completions)", f"**{r['rl_step_s']:.2f} s**"],
            ["of which rollout / update", f"{r['rl_rollout_s']:.2f} s / {r['rl_update_s']:.2f} s"],
            ["update, trained tokens/s (forward + backward)", f"{r['rl_train_tok_per_s']:,.0f}"],
            ["saessak, completion tokens per second of step", f"{r['rl_step_tok_per_s']:,.0f}"]]
    if "update_shared_s" in r:
        rows += [[f"update on SFT-length completions ({r['layout_completions']}, mean "
                  f"{r['layout_completion_len_mean']:.0f} tokens): one padded row per completion",
                  f"{r['update_padded_s']:.3f} s"],
                 ["the same update, each prompt run once for its completions (the stage's choice: "
                  f"{'shared' if all(r['update_auto_shares']) else 'mixed'})",
                  f"**{r['update_shared_s']:.3f} s ({r['update_speedup_shared']:.2f}x)**"]]
    if "trl_step_s" in r:
        rows += [[f"TRL {r['trl']} GRPOTrainer step, same batch", f"**{r['trl_step_s']:.2f} s**"],
                 ["TRL, completion tokens per second of step (mean completion "
                  f"{r['trl_completion_len_mean']:.0f} tokens)", f"{r['trl_step_tok_per_s']:,.0f}"],
                 ["**saessak step speed-up over TRL** (completion tokens per second of step)",
                  f"**{r['rl_step_speedup_vs_trl']:.2f}x**"]]
    else:
        rows.append(["TRL side by side", str(r["trl"])])
    return "\n".join([f"{r['shape']} shape ({r['params'] / 1e6:.1f} M parameters, random weights), {r['prompts']} prompts x "
                      f"G={r['G']} = {n} completions of up to {r['completion_tokens']} tokens, {r['threads']} torch threads"
                      + (" (--quick)" if r.get("quick") else "") + ".", "", md_table(["", "value"], rows)])


def layout_side_by_side(model, tok, G: int, repeats: int) -> dict:
    """The policy update (KL to a reference included, as cpu-tiny's recipe runs it) on completions
    of the lengths an SFT model writes: each of 8 josa and spacing prompts (levels 1-3) gets G
    worked solutions of its family and level as completions. Shared-prompt rows against one padded
    row per completion (saessak/rl/grpo.py MicroBatch), same batch, alternated; median of `repeats`."""
    import copy
    import statistics

    from saessak.rl.config import GRPOConfig
    from saessak.rl.grpo import Seq, local_counts, normaliser, shares_prompts, update
    from saessak.training.optim import build_optimizer

    seqs = []
    for i, (family, level) in enumerate([(f, lv) for f in ("josa", "spacing") for lv in (1, 2, 3, 3)]):
        exs = tasks.sample(family, "train", G, seed=100 + i, level=level)
        p = prompt_ids(tok, prompt_messages(exs[0]))
        seqs += [Seq(p, tok.encode(tasks.solution(ex)) + [tok.eot_id], 1.0 if j % 2 else -1.0, True)
                 for j, ex in enumerate(exs)]
    cfg = GRPOConfig(max_steps=1, prompts_per_step=8, num_generations=G, beta=0.2, micro_batch_size=32)
    norm = normaliser(local_counts(seqs), cfg.loss_type, cfg.max_completion_length)
    model = copy.deepcopy(model).train()
    ref = copy.deepcopy(model).eval()
    opt = build_optimizer(model, 1e-9, 0.0)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats + 1):  # the first round warms up
        for share in (True, False):
            t0 = time.perf_counter()
            update(model, ref, opt, seqs, cfg, tok.pad_id, "cpu", norm, share_prompts=share)
            times[share].append(time.perf_counter() - t0)
    shared, padded = (statistics.median(times[k][1:]) for k in (True, False))
    micro = [seqs[i:i + cfg.micro_batch_size] for i in range(0, len(seqs), cfg.micro_batch_size)]
    return {"layout_completions": len(seqs),
            "layout_tokens": sum(len(s.prompt_ids) + len(s.completion_ids) for s in seqs),
            "layout_completion_len_mean": round(sum(len(s.completion_ids) for s in seqs) / len(seqs), 1),
            "update_shared_s": round(shared, 3), "update_padded_s": round(padded, 3),
            "update_speedup_shared": round(padded / shared, 2),
            "update_auto_shares": [shares_prompts(m, model.config.hidden_size) for m in micro]}


def trl_side_by_side(model, tok, examples, G: int, L: int, steps: int, saessak_step_tok_per_s: float) -> dict:
    """The same GRPO step in TRL's GRPOTrainer, on the model exported as a Hugging Face folder."""
    try:
        import trl
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        return {"trl": f"skipped ({e.name} not installed: pip install -e .[bench])"}
    import tempfile
    import warnings

    from saessak.model.checkpoint import save_model
    from saessak.export.hf import export_hf
    from saessak.rl.config import GRPOConfig as SaessakGRPO
    from saessak.runfolder import RunFolder
    from saessak.tasks.registry import prompt_messages

    weights = SaessakGRPO(max_steps=1, prompts_per_step=1).reward_weights

    def reward(completions, example, **_):  # what saessak's rollouts score, per completion
        return [tasks.combine_rewards(tasks.grade(json.loads(ex), c[-1]["content"]), weights)
                for c, ex in zip(completions, example)]

    with tempfile.TemporaryDirectory() as tmp:
        rf = RunFolder(Path(tmp) / "run")
        tok.save(rf.tokenizer_json)
        rf.mark_done("tokenizer", {"vocab_size": tok.vocab_size})
        save_model(rf.final_checkpoint("sft"), model, meta={"preset": "cpu-tiny", "stage": "sft"})
        rf.mark_done("sft", {"steps": 0})
        hf_dir = export_hf(rf.root, Path(tmp) / "hf", stage="sft")
        hf_model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        hf_tok = AutoTokenizer.from_pretrained(hf_dir)
        hf_tok.padding_side = "left"
        rows = [{"prompt": prompt_messages(ex), "example": json.dumps(ex, ensure_ascii=False)} for ex in examples]
        dataset = Dataset.from_list(rows * steps)
        warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renames, not ours
        args = trl.GRPOConfig(
            output_dir=str(Path(tmp) / "trl"), num_generations=G, max_completion_length=L,
            per_device_train_batch_size=len(examples) * G, gradient_accumulation_steps=1, max_steps=steps,
            learning_rate=1e-4, beta=0.0, loss_type="dapo", scale_rewards="group", epsilon_high=0.28,
            temperature=1.0, use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
            logging_steps=1, shuffle_dataset=False, seed=0, dataloader_num_workers=0, disable_tqdm=True)
        timer = step_timer()
        trainer = trl.GRPOTrainer(model=hf_model, reward_funcs=reward, args=args, train_dataset=dataset,
                                  processing_class=hf_tok, callbacks=[timer])
        trainer.train()
        lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    # The first step pays for warm-up, as the first of ours does; steps are compared by completion
    # tokens per second of step, since a random model's completions stop early now and then.
    i = min(range(1, len(timer.times)) or [0], key=lambda j: timer.times[j])
    tok_per_s = len(examples) * G * lengths[i] / timer.times[i]
    return {"trl": trl.__version__, "trl_steps": len(timer.times), "trl_step_s": round(timer.times[i], 2),
            "trl_completion_len_mean": round(lengths[i], 1), "trl_step_tok_per_s": round(tok_per_s, 1),
            "rl_step_speedup_vs_trl": round(saessak_step_tok_per_s / tok_per_s, 2)}


if __name__ == "__main__":
    main()
