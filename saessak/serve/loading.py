"""Resolve `--model PATH` to a model and its tokenizer.

PATH is either a run folder (the latest finished model stage is served: rl > sft > base, with the
tokenizer from RUN/tokenizer) or a checkpoint folder (config.json + model.safetensors) whose
tokenizer.json lies beside it or in the run folder above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saessak.errors import UserError


@dataclass
class ServedModel:
    model: object  # saessak.model.Llama
    tokenizer: object  # saessak.tokenizer.Tokenizer
    name: str  # the id clients send as "model"
    source: str  # where it was loaded from (for /v1/models and logs)


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path, str]:
    """(checkpoint folder, tokenizer.json, default model name) for a run or checkpoint folder."""
    from saessak.runfolder import RunFolder

    path = Path(path)
    if not path.exists():
        raise UserError(f"--model {path}: no such file or folder")
    if (path / "config.json").exists():
        for cand in (path / "tokenizer.json", path.parent / "tokenizer.json",
                     path.parent / "tokenizer" / "tokenizer.json", path.parent.parent / "tokenizer" / "tokenizer.json"):
            if cand.exists():
                return path, cand, _name_for(path)
        raise UserError(f"--model {path}: checkpoint has no tokenizer.json beside it or in its run folder")
    run = RunFolder(path)
    stage = run.latest_model_stage()
    if stage is None:
        raise UserError(
            f"--model {path}: neither a checkpoint folder (config.json) nor a run folder with a finished "
            f"model stage (base/, sft/ or rl/ with done.json)"
        )
    ckpt = run.final_checkpoint(stage)
    if not (ckpt / "config.json").exists():
        raise UserError(f"--model {path}: stage '{stage}' is marked done but {ckpt} has no config.json")
    if not run.tokenizer_json.exists():
        raise UserError(f"--model {path}: run folder has no tokenizer ({run.tokenizer_json})")
    return ckpt, run.tokenizer_json, f"{path.resolve().name}-{stage}"


def _name_for(ckpt: Path) -> str:
    ckpt = ckpt.resolve()
    if ckpt.name == "final" and ckpt.parent.parent != ckpt.parent:
        return f"{ckpt.parent.parent.name}-{ckpt.parent.name}"
    return ckpt.name


def load_served_model(path: str | Path, name: str | None = None, device: str = "cpu") -> ServedModel:
    from saessak.checkpoint import load_model
    from saessak.stage_model import check_vocab
    from saessak.tokenizer import Tokenizer

    ckpt, tok_path, default_name = resolve_checkpoint(path)
    tokenizer = Tokenizer.load(tok_path)
    model = load_model(ckpt, device=device).eval()
    check_vocab(model, tokenizer, f"--model {path}")
    return ServedModel(model=model, tokenizer=tokenizer, name=name or default_name, source=str(ckpt))
