"""Task definitions for lm-evaluation-harness shipped with saessak (YAML + local data); see lm_eval_runner."""
