"""The run folder: the contract between stages (see docs/ARCHITECTURE.md).

    runs/<name>/
      data/        data_card.json, data_card.md, train/val text
      tokenizer/   tokenizer.json, stats.json
      base/ sft/ rl/   checkpoints, metrics.jsonl, final/ (config.json + model.safetensors)
      eval/        results.json
      ledger.jsonl one record per stage run
      report.md, report.json, plots/*.png
      export/      hf/, gguf/

A stage is complete when its `done.json` marker exists; the marker is written last and
atomically, so a killed stage is never mistaken for a complete one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from saessak.errors import UserError
from saessak.io import read_json, write_json

STAGES = ["data", "tokenizer", "base", "sft", "rl", "eval", "report", "export"]
MODEL_STAGES = ["base", "sft", "rl"]


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.root = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    # paths
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokenizer_json(self) -> Path:
        return self.tokenizer_dir / "tokenizer.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.jsonl"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def final_checkpoint(self, stage: str) -> Path:
        """The finished model of a model stage (base, sft, rl): config.json + model.safetensors."""
        return self.root / stage / "final"

    # completion markers
    def done_path(self, stage: str) -> Path:
        return self.root / stage / "done.json"

    def is_done(self, stage: str) -> bool:
        return self.done_path(stage).exists()

    def mark_done(self, stage: str, summary: dict[str, Any] | None = None) -> None:
        write_json(self.done_path(stage), summary or {})

    def done_summary(self, stage: str) -> dict[str, Any]:
        return read_json(self.done_path(stage))

    def require(self, stage: str, needed_by: str) -> None:
        if not self.is_done(stage):
            raise UserError(
                f"run folder {self.root}: stage '{stage}' is not complete (no {self.done_path(stage)}); "
                f"'{needed_by}' needs it. Run `saessak {_command_for(stage)} --run {self.root}` first."
            )

    def latest_model_stage(self) -> str | None:
        for stage in reversed(MODEL_STAGES):
            if self.is_done(stage):
                return stage
        return None


def _command_for(stage: str) -> str:
    return {"data": "data build --out RUN/data", "tokenizer": "tokenizer train", "base": "pretrain"}.get(
        stage, stage
    )
