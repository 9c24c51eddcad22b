"""Which model an export takes from a run folder, and the checks that it is complete."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from saessak.errors import UserError
from saessak.runfolder import MODEL_STAGES, RunFolder


@dataclass
class ExportSource:
    run: RunFolder
    stage: str
    checkpoint: Path  # RUN/<stage>/final
    tokenizer_json: Path


def resolve_source(run_dir: str | os.PathLike, stage: str | None = None) -> ExportSource:
    """The finished model of `stage` (default: the latest complete one, rl > sft > base)."""
    run = RunFolder(run_dir)
    if not run.root.is_dir():
        raise UserError(f"--run {run.root}: run folder not found")
    if stage is None:
        stage = run.latest_model_stage()
        if stage is None:
            raise UserError(
                f"--run {run.root}: no finished model stage ({', '.join(MODEL_STAGES)}); "
                "run `saessak pretrain` first"
            )
    elif stage not in MODEL_STAGES:
        raise UserError(f"--stage {stage!r}: not a model stage; choose one of {', '.join(MODEL_STAGES)}")
    run.require(stage, needed_by="export")
    ckpt = run.final_checkpoint(stage)
    for name in ("config.json", "model.safetensors"):
        if not (ckpt / name).exists():
            raise UserError(f"{ckpt}: finished model lacks {name}")
    if not run.tokenizer_json.exists():
        raise UserError(f"{run.tokenizer_json}: tokenizer not found (run `saessak tokenizer train` first)")
    return ExportSource(run, stage, ckpt, run.tokenizer_json)


def guard_output(out: Path, must_contain: str) -> None:
    """Refuse to replace an existing path that is not an earlier export (a typo must not wipe a folder)."""
    if not out.exists():
        return
    if out.is_dir():
        if any(out.iterdir()) and not (out / must_contain).exists():
            raise UserError(f"--out {out}: exists and is not an earlier export (no {must_contain}); choose another path")
    elif must_contain != "":
        raise UserError(f"--out {out}: exists and is a file, not an export folder")
