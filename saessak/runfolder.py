"""The run folder: the contract between stages (see docs/ARCHITECTURE.md).

    runs/<name>/
      data/                train.jsonl, val.jsonl (or .parquet), data_card.json, data_card.md
      tokenizer/           tokenizer.json, stats.json
      pretrain/ sft/ rl/   checkpoints, metrics.jsonl, final/ (config.json + model.safetensors)
      eval/                results_final.json (the sealed split the report reads), results_<split>.json,
                           results.json (the test split)
      ledger.jsonl         the finished record of every stage attempt (saessak/ledger.py)
      ledger/              one file per attempt, kept current while it runs (<attempt>.json)
      tag.json             what the run is for: experiment, final or ablation (optional; the bill groups by it)
      report.md, report.json, plots/*.png
      export/              hf/, model.gguf

A stage is complete when its `done.json` marker exists; the marker is written last and
atomically, so a killed stage is never mistaken for a complete one.

Each stage has one name, used for its folder, its command and its ledger records. Run folders
written before the pretraining stage had one name keep its model in `base/`; they are still read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from saessak.errors import UserError
from saessak.io import read_json, read_json_or_none, write_json

# Every stage, in pipeline order; the speedrun runs them in this order and `--from` takes these names.
STAGES = ("data", "tokenizer", "pretrain", "sft", "rl", "eval", "report", "export")
# The stages that leave a finished model in RUN/<stage>/final/, in training order.
MODEL_STAGES = ("pretrain", "sft", "rl")
# Older names still accepted on the command line and read from old run folders.
LEGACY_NAMES = {"base": "pretrain"}
# The task split whose eval results the report and the model card read (the sealed one, tasks/base.py).
REPORTED_SPLIT = "final"
# What a run is for (`--tag` on a stage command, `saessak bill tag RUN TAG`): the bill groups runs by it.
TAGS = ("experiment", "final", "ablation")
# The command that completes a stage, where it is not `saessak <stage> --run RUN`.
_COMMANDS = {"data": "data build --out RUN/data", "tokenizer": "tokenizer train --run RUN",
             "eval": "eval tasks --run RUN --stage STAGE", "export": "export hf --run RUN --out DIR"}


def stage_name(name: str) -> str:
    """The stage's one name for `name` (an older alias such as `base` gives `pretrain`)."""
    return LEGACY_NAMES.get(name, name)


def old_names(stage: str) -> list[str]:
    """The older names of a stage (`pretrain` -> ["base"]), under which old run folders hold it."""
    return [old for old, new in LEGACY_NAMES.items() if new == stage_name(stage)]


def command_for(stage: str) -> str:
    return "saessak " + _COMMANDS.get(stage, f"{stage} --run RUN")


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

    @property
    def attempts_dir(self) -> Path:
        """One file per stage attempt, rewritten while it runs (saessak/ledger.py)."""
        return self.root / "ledger"

    # what the run is for
    @property
    def tag_path(self) -> Path:
        return self.root / "tag.json"

    @property
    def tag(self) -> str | None:
        """The run's tag (one of TAGS), or None when it has none or its file is damaged."""
        data = read_json_or_none(self.tag_path)
        tag = data.get("tag") if isinstance(data, dict) else None
        return tag if tag in TAGS else None

    def set_tag(self, tag: str) -> None:
        if tag not in TAGS:
            raise UserError(f"tag {tag!r}: not one of {', '.join(TAGS)}")
        write_json(self.tag_path, {"tag": tag})

    def eval_results(self, split: str = "test") -> Path:
        """Where one task split's eval results are kept: results.json for `test` (its name since
        before the other splits existed), results_<split>.json for the others."""
        return self.stage_dir("eval") / ("results.json" if split == "test" else f"results_{split}.json")

    def stage_dir(self, stage: str) -> Path:
        stage = stage_name(stage)
        path = self.root / stage
        if not path.exists():
            for old in old_names(stage):
                if (self.root / old).is_dir():
                    return self.root / old
        return path

    def final_checkpoint(self, stage: str) -> Path:
        """The finished model of a model stage (pretrain, sft, rl): config.json + model.safetensors."""
        return self.stage_dir(stage) / "final"

    # completion markers
    def done_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / "done.json"

    def is_done(self, stage: str) -> bool:
        return self.done_path(stage).exists()

    def mark_done(self, stage: str, summary: dict[str, Any] | None = None) -> None:
        write_json(self.done_path(stage), summary or {})

    def done_summary(self, stage: str) -> dict[str, Any]:
        return read_json(self.done_path(stage))

    def require(self, stage: str, needed_by: str) -> None:
        if not self.is_done(stage):
            raise UserError(
                f"run folder {self.root}: stage '{stage_name(stage)}' is not complete (no {self.done_path(stage)}); "
                f"'{needed_by}' needs it. Run `{command_for(stage_name(stage)).replace('RUN', str(self.root))}` first."
            )

    def latest_model_stage(self) -> str | None:
        for stage in reversed(MODEL_STAGES):
            if self.is_done(stage):
                return stage
        return None

    def preset(self, explicit: str | None = None) -> str:
        """`--preset` if given, else the preset the run was pretrained with (its final model's meta.json)."""
        if explicit:
            return explicit
        meta_path = self.final_checkpoint("pretrain") / "meta.json"
        if not meta_path.exists():
            raise UserError(f"{meta_path}: missing, so the preset is unknown; pass --preset")
        preset = read_json(meta_path).get("preset")
        if not preset:
            raise UserError(f"{meta_path}: has no 'preset' field; pass --preset")
        return str(preset)
