"""Plots and the before/after table for docs/RESULTS.md from one run folder.

    python scripts/plot_post_training.py runs/dev-rl [--out docs/img]

Writes sft_curve.png (SFT train/val loss), rl_reward.png (reward and zero-std share per step),
rl_accuracy.png (train accuracy and curriculum level per family) and prints the markdown table of
held-out greedy accuracy for pretrain, SFT and RL from RUN/eval/results.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from saessak.evals.results import read_results  # noqa: E402
from saessak.io import read_jsonl  # noqa: E402
from saessak.runfolder import MODEL_STAGES, RunFolder  # noqa: E402


def smooth(values: list[float], k: int = 5) -> list[float]:
    out = []
    for i in range(len(values)):
        window = values[max(0, i - k + 1): i + 1]
        out.append(sum(window) / len(window))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", default="docs/img")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sft = read_jsonl(run / "sft" / "metrics.jsonl")
    if sft:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in sft], [r["loss"] for r in sft], label="train loss", alpha=0.6)
        val = [r for r in sft if "val_loss" in r]
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss (held-out chats)")
        ax.set_xlabel("SFT step")
        ax.set_ylabel("loss (assistant tokens)")
        ax.set_title("SFT learning curve")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "sft_curve.png", dpi=110)
    rl = read_jsonl(run / "rl" / "metrics.jsonl")
    if rl:
        steps = [r["step"] for r in rl]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name in ("total", "correctness", "format"):
            ax.plot(steps, smooth([r[f"reward/{name}/mean"] for r in rl]), label=f"reward {name}")
        ax.plot(steps, smooth([r["frac_reward_zero_std"] for r in rl]), "--", label="frac_reward_zero_std")
        ax.set_xlabel("RL step")
        ax.set_title("GRPO rewards (5-step moving mean)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "rl_reward.png", dpi=110)
        families = sorted({k.split("/", 1)[1] for r in rl for k in r if k.startswith("level/")})
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True)
        for f in families:
            pts = [(r["step"], r[f"accuracy/{f}"]) for r in rl if f"accuracy/{f}" in r]
            a1.plot([p[0] for p in pts], smooth([p[1] for p in pts]), label=f)
            lv = [(r["step"], r[f"level_mean/{f}"]) for r in rl if f"level_mean/{f}" in r]
            if lv:  # learnability curriculum: the mean level of the prompts drawn
                a2.plot([p[0] for p in lv], smooth([p[1] for p in lv], 25), label=f)
            else:
                a2.plot(steps, [r[f"level/{f}"] for r in rl], label=f)
        a1.set_ylabel("train accuracy")
        a1.legend(fontsize=8)
        a2.set_ylabel("level of prompts drawn")
        a2.set_xlabel("RL step")
        fig.tight_layout()
        fig.savefig(out / "rl_accuracy.png", dpi=110)
    res = read_results(RunFolder(run))  # old run folders' "base" entries read as "pretrain"
    if res:
        stages = [s for s in MODEL_STAGES if s in res]
        families = list(res[stages[-1]]["tasks"])
        print("| family | " + " | ".join(stages) + (" | RL - SFT |" if {"sft", "rl"} <= set(stages) else " |"))
        print("|---" * (len(stages) + 1 + ({"sft", "rl"} <= set(stages))) + "|")
        for f in families:
            cells = [f"{100 * res[s]['tasks'].get(f, float('nan')):.1f}" for s in stages]
            diff = ""
            if {"sft", "rl"} <= set(stages):
                diff = f" | {100 * (res['rl']['tasks'][f] - res['sft']['tasks'][f]):+.1f}"
            print(f"| {f} | " + " | ".join(cells) + diff + " |")
        for s in stages:
            if res[s].get("pass_at_k"):
                print(f"\n{s} pass@{res[s]['k']}: " + ", ".join(f"{f} {100 * v:.1f}" for f, v in res[s]["pass_at_k"].items()))


if __name__ == "__main__":
    main()
