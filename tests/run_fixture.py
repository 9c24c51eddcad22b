"""A small finished run folder built by hand (no training): tokenizer, model stages, ledger, eval.

Used by the report and export tests, so they run in seconds without the pipeline.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import tiny_model, tiny_tokenizer


def make_run(root: Path, stages=("pretrain", "sft", "rl"), seed: int = 0, **model_overrides) -> Path:
    from saessak.model.checkpoint import save_model
    from saessak.io import append_jsonl, write_json
    from saessak.runfolder import RunFolder

    run = RunFolder(root)
    tok = tiny_tokenizer()
    tok.save(run.tokenizer_json)
    write_json(run.tokenizer_dir / "stats.json", {"vocab_size": tok.vocab_size, "hangul_chars_per_token": 1.7,
                                                 "byte_fallback_rate": 0.001})
    run.mark_done("tokenizer", {"vocab_size": tok.vocab_size})
    source = {"name": "kolaw", "origin": {"wheel": "konlpy-0.6.0.whl"}, "licence": {"name": "GPL-3.0 (konlpy)"},
              "documents_in": 14, "documents_out": 12, "characters_in": 40000, "characters_out": 34567,
              "hangul_syllables_out": 30000, "pii_masked": {"phone": 2, "rrn": 0}, "documents_dropped": {"short": 2},
              "dedup_removed": {"exact": 0}, "files": [{"path": "x", "sha256": "0" * 64}]}
    write_json(run.data / "data_card.json", {
        "sources": [source], "totals": {k: source[k] for k in source if k not in ("name", "origin", "licence", "files")},
        "split": {"method": "hash", "train": {"documents": 11, "characters": 1}, "val": {"documents": 1, "characters": 1}},
    })
    run.mark_done("data", {})
    device = {"type": "cpu", "cpu": "Test Xeon", "cpu_cores": 2}
    append_jsonl(run.ledger, {"stage": "data", "wall_s": 3.0, "cpu_s": 5.0, "device": device})
    append_jsonl(run.ledger, {"stage": "tokenizer", "wall_s": 2.0, "cpu_s": 2.0, "device": device})
    for i, stage in enumerate(stages):
        model = tiny_model(tok.vocab_size, seed=seed + i, **model_overrides)
        save_model(run.final_checkpoint(stage), model, meta={"preset": "test", "step": 10})
        run.mark_done(stage, {"val_bpb": 3.25} if stage == "pretrain" else {})
        append_jsonl(run.ledger, {"stage": stage, "wall_s": 60.0 * (i + 1),
                                  "cpu_s": 110.0, "device": device, "params": model.config.num_parameters(),
                                  "tokens": 10000, "flops": 1e12 / (i + 1), "mfu": 0.1})
        metrics = run.stage_dir(stage) / "metrics.jsonl"
        for step in range(1, 6):
            rec = {"step": step, "loss": 5.0 - 0.3 * step, "lr": 1e-3}
            if stage == "pretrain" and step % 2 == 0:
                rec["val_bpb"] = 4.0 - 0.1 * step
            if stage == "rl":
                rec = {"step": step, "reward/mean": 0.1 * step, "accuracy/josa": 0.05 * step, "loss": 0.01}
            append_jsonl(metrics, rec)
    write_json(run.root / "eval" / "results.json", {
        "pretrain": {"tasks": {"josa": 0.1, "numbers": {"accuracy": 0.05, "n": 200}}},
        "sft": {"tasks": {"josa": 0.4, "numbers": {"accuracy": 0.30, "n": 200}},
                "correct": {"josa": "1" * 8 + "0" * 12}, "items_sha": {"josa": "same20"}},
        "rl": {"tasks": {"josa": 0.55, "numbers": {"accuracy": 0.31, "n": 200}},
               "correct": {"josa": "1" * 11 + "0" * 9}, "items_sha": {"josa": "same20"},
               "samples": [{"task": "arith", "level": 1, "prompt": "사과 3개와 배 2개는 모두 몇 개?",
                            "answer": "5", "response": "3 + 2 = 5\n정답: 5", "correct": True}]},
    })
    return root
