"""What the same recipe would cost on GPUs: a FLOPs-based projection for the GPU presets.

Assumptions (stated in the report next to the numbers):
- Pretraining tokens = preset max_steps x per-process tokens per step x GPUS_PER_RUN processes
  (one 8-GPU node, data parallel).
- Pretraining FLOPs = ModelConfig.flops_per_token(seq_len) x tokens (6N + attention, the same
  count the pretrain stage logs).
- SFT + RL add the same fraction of pretraining FLOPs as they did in this run's ledger
  (so "same recipe" means same stage proportions), or nothing when the run has no such record.
- GPU time = FLOPs / (peak dense BF16 FLOP/s x ASSUMED_MFU); money = GPU-hours x hourly price.
"""

from __future__ import annotations

from typing import Any

from saessak import recipes
from saessak.model import model_config
from saessak.pretrain.config import PretrainConfig

ASSUMED_MFU = 0.40  # typical of well-tuned dense LLM training on H100-class GPUs
GPUS_PER_RUN = 8


def _recipe_overhead(ledger: dict[str, Any]) -> float:
    stages = ledger.get("stages", {})
    pre = float(stages.get("pretrain", {}).get("flops") or 0.0)
    post = sum(float(stages.get(s, {}).get("flops") or 0.0) for s in ("sft", "rl"))
    return post / pre if pre > 0 else 0.0


def _active(cfg) -> int:
    """Parameters a token runs through: all of a dense model's; shared + routed top-k of a MoE's."""
    return cfg.num_active_parameters() if hasattr(cfg, "num_active_parameters") else cfg.num_parameters()


def kv_bytes_per_token(cfg, dtype_bytes: int = 2) -> int:
    """Generation cache per token in bf16, all layers: MLA's latent + rope key, or GQA's keys and values."""
    if hasattr(cfg, "kv_cache_bytes_per_token"):
        return int(cfg.kv_cache_bytes_per_token(dtype_bytes))
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * dtype_bytes


def project(prices, ledger: dict[str, Any]) -> dict[str, Any]:
    overhead = _recipe_overhead(ledger)
    rows = []
    for recipe in recipes.RECIPES.values():
        if not recipe.gpu:
            continue
        cfg = model_config(recipe.name)
        pre = recipes.stage_config(PretrainConfig, recipe.name, "pretrain")
        seq_len = recipe.shape.seq_len
        tokens = pre.max_steps * pre.tokens_per_step(seq_len) * GPUS_PER_RUN
        flops = cfg.flops_per_token(seq_len) * tokens * (1.0 + overhead)
        per_gpu = {}
        for gpu, row in prices.data["gpu"].items():
            gpu_hours = flops / (float(row["peak_bf16_tflops"]) * 1e12 * ASSUMED_MFU) / 3600.0
            usd = gpu_hours * float(row["usd_per_hour"])
            per_gpu[gpu] = {"gpu_hours": gpu_hours, "wall_hours_8gpu": gpu_hours / GPUS_PER_RUN,
                            "cost_usd": usd, "cost_krw": usd * prices.usd_to_krw}
        rows.append({"preset": recipe.name, "params": cfg.num_parameters(),
                     "active_params": _active(cfg), "flops_per_token": cfg.flops_per_token(seq_len),
                     "kv_bytes_per_token": kv_bytes_per_token(cfg), "tokens": tokens,
                     "flops": flops, "gpus": per_gpu})
    ref = prices.data.get("reference", {}).get("deepseek_v3", {})
    return {
        "assumptions": {
            "mfu": ASSUMED_MFU,
            "gpus_per_run": GPUS_PER_RUN,
            "sft_rl_flops_fraction_of_pretrain": overhead,
            "tokens": "preset max_steps x per-process batch x seq_len x gpus_per_run",
            "flops": "ModelConfig.flops_per_token (6N + attention) x tokens x (1 + SFT/RL fraction)",
        },
        "presets": rows,
        "reference": {
            "name": "DeepSeek-V3 (final training run)",
            "gpu_hours": ref.get("gpu_hours"),
            "gpu": ref.get("gpu"),
            "cost_usd": ref.get("usd"),
            "cost_krw": (ref.get("usd") or 0) * prices.usd_to_krw,
            "source": ref.get("source"),
        },
    }
