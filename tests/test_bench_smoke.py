"""Every benchmark in bench/ runs, in seconds, in its --smoke mode: a benchmark nobody can run is a
claim nobody can check. The figures of a smoke run mean nothing; the code paths, both sides of each
side-by-side included, are what is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHES = sorted(p.name for p in (REPO / "bench").glob("*.py"))
# What the last stdout line must hold beyond "smoke": the figures of each side of the comparison.
KEYS = {
    "data_scale.py": {"runs", "scaling_2_vs_1", "max_peak_rss_mb", "min_pii_recall", "per_core_mb_s"},
    "data_throughput.py": {"pii_scan_mb_s", "naive_regex_scan_mb_s", "minhash_numpy_docs_s",
                           "minhash_pure_python_docs_s", "full_build_s"},
    "engine_generate.py": {"ours_fp32", "hf_generate_fp32", "speedup_vs_hf"},
    "eval_speed.py": {"before", "now", "speedup"},
    "fsdp_memory.py": {"ddp_peak_mb", "fsdp_peak_mb", "ratio", "params"},
    "moe_vs_dense.py": {"contenders", "equal_flops", "equal_wall", "balance", "dtype", "budget"},
    "kv_latent.py": {"kv_bytes_per_token", "ratio_vs_gqa", "target_met", "wide_ratio_vs_gqa", "decode"},
    "import_vs_trl.py": {"saessak_grpo_full", "trl_grpo_full", "saessak_grpo_lora", "trl_grpo_lora",
                         "saessak_sft", "trl_sft", "speedup_grpo_full", "speedup_grpo_lora", "speedup_sft"},
    "ledger_heartbeat.py": {"stage_s_off", "stage_s_default", "stage_s_fast", "overhead_default_pct", "beat_cost_ms"},
    "pii_recall.py": {"recall_by_type", "overall_recall", "identifiers"},
    "pretrain_throughput.py": {"ours", "baseline", "ratio", "mfu_shape_tok_per_s", "precision"},
    "rl_step.py": {"engine_fp32_tok_per_s", "naive_no_cache_tok_per_s", "rl_step_s", "trl", "update_shared_s",
                   "update_padded_s"},
    "serve_throughput.py": {"ours", "hf_sequential", "speedup_at_2"},
    "serve_vs_vllm.py": {"shapes", "vllm", "failed_requests"},
    "speedrun_time.py": {"ok", "stages_wall_s", "cost_krw"},
    "tasks_crosscheck.py": {"josa_kiwi_dictionary_rate", "calendar_datetime_rate", "arith_expression_rate"},
}


def test_every_benchmark_is_covered():
    assert set(BENCHES) == set(KEYS)


@pytest.mark.parametrize("bench", BENCHES)
def test_benchmark_smoke(bench, request):
    args = [sys.executable, str(REPO / "bench" / bench), "--smoke"]
    if bench == "speedrun_time.py":
        # A finished micro run: every stage is skipped, the bench's own accounting still runs.
        args += ["--run", str(request.getfixturevalue("micro_run")[0])]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["smoke"] is True
    assert KEYS[bench] <= set(last), KEYS[bench] - set(last)
    if bench == "rl_step.py":
        assert not str(last["trl"]).startswith("skipped"), "the TRL side-by-side must run (setup installs the bench extra)"
    if bench == "speedrun_time.py":
        assert last["ok"] is True  # its figures reach the docs from the run folder (scripts/docs_figures.py --run)
    else:  # the docs draw a full run's record with the bench's own render(): it must draw this one too
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"_smoke_{bench[:-3]}", REPO / "bench" / bench)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        drawn = module.render(last)
        assert isinstance(drawn, str) and "|" in drawn


def _serve_vs_vllm():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_serve_vs_vllm_bench", REPO / "bench" / "serve_vs_vllm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serve_vs_vllm_draws_paired_repeats():
    """The side-by-side's table gives the ratio of the medians and, per level, how the repeats read as
    back-to-back pairs: their median ratio and how many of them saessak won."""
    module = _serve_vs_vllm()
    level = {"tok_s": 100.0, "tok_s_runs": [90.0, 100.0, 110.0], "ttft_p50_ms": 1, "ttft_p99_ms": 2,
             "itl_p50_ms": 1, "itl_p99_ms": 2}
    side = {"status": "ran", "startup_s": 1.0, "peak_rss_mb": 10, "levels": {"32": level}}
    shape = {"params_m": 3.2, "prompt_tokens": 64, "max_tokens": 64, "requests_per_client": 8,
             "saessak": side, "vllm": side, "ratio": {"32": 1.0},
             "paired_ratios": {"32": [0.99, 1.2, 1.3]}, "paired_ratio_median": {"32": 1.2}}
    drawn = module.render({"threads": 1, "vllm": "ran", "shapes": {"cpu-tiny": shape}, "failed_requests": 0})
    assert "1.0 (paired: median 1.2, 2 of 3 pairs >= 1)" in drawn


def test_serve_vs_vllm_sends_no_prompt_twice():
    """Every timed run and the warm-up get prompts of their own, each exactly the asked length in the
    chat template: a prompt sent again would let vLLM's prefix cache skip its prefill."""
    from saessak.tokenizer import train_tokenizer
    from saessak.tokenizer.chat_format import prompt_ids

    module = _serve_vs_vllm()
    tok = train_tokenizer([q * 3 for q in module.QUESTIONS] * 30, 600)
    by_level, warm = module.prompt_plan(tok, [1, 4], per_client=2, repeats=3, prompt_tokens=16)
    assert [len(runs) for runs in by_level.values()] == [3, 3]
    assert all(len(p) == c * 2 for c, runs in by_level.items() for p in runs)
    sent = [p for runs in by_level.values() for ps in runs for p in ps] + warm
    assert len(set(sent)) == len(sent) == 2 * 3 * (1 + 4) + 2
    assert {len(prompt_ids(tok, [{"role": "user", "content": p}])) for p in sent} == {16}


def test_serve_vs_vllm_reports_vllm_prefix_cache_hits():
    module = _serve_vs_vllm()
    level = {"tok_s": 100.0, "tok_s_runs": [100.0], "ttft_p50_ms": 1, "ttft_p99_ms": 2, "itl_p50_ms": 1, "itl_p99_ms": 2}
    shape = {"params_m": 3.2, "prompt_tokens": 64, "max_tokens": 64, "requests_per_client": 2,
             "saessak": {"startup_s": 1.0, "peak_rss_mb": 10, "levels": {"32": level}},
             "vllm": {"startup_s": 1.0, "peak_rss_mb": 10,
                      "levels": {"32": {**level, "prefix_cache_hit_rate_all_runs": 0.031}}},
             "ratio": {"32": 1.0}}
    drawn = module.render({"threads": 1, "vllm": "ran", "shapes": {"cpu-tiny": shape}, "failed_requests": 0})
    assert "prefix cache served at most 3.1 % of a level's timed prompt tokens" in drawn
