"""A finished model and its tokenizer, found from a run folder or a checkpoint folder, and loaded.

The one loader for everything that starts from a finished model: SFT, RL and eval (a stage of the
run), the server and the terminal chat (`--model PATH`) and export. A path is either

- a run folder: the named model stage, or the latest finished one (rl > sft > pretrain), with
  the tokenizer from RUN/tokenizer/; or
- a checkpoint folder (config.json + model.safetensors) whose tokenizer.json lies beside it or in
  the run folder above it (RUN/<stage>/final/).

What is found is checked to fit together before anything is loaded: the stage is done, its files
exist, and the tokenizer belongs to the model's vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from saessak.errors import UserError
from saessak.runfolder import MODEL_STAGES, RunFolder, stage_name


@dataclass(frozen=True)
class Finished:
    checkpoint: Path  # config.json + model.safetensors (+ meta.json)
    tokenizer_json: Path
    name: str  # the model's default id: <run>-<stage>, or the checkpoint folder's name
    stage: str | None  # the model stage, when found through a run folder
    run: RunFolder | None


def find(path: str | os.PathLike, stage: str | None = None, *, needed_by: str,
         option: str = "--model", checkpoint_ok: bool = True) -> Finished:
    """The finished model at `path` (see the module doc); `option` names the path in messages."""
    path = Path(path)
    # A missing run folder asked for a named stage is reported as that stage missing (`require` below):
    # the message then says which command makes it.
    if not path.exists() and (checkpoint_ok or stage is None):
        raise UserError(f"{option} {path}: " + ("no such file or folder" if checkpoint_ok else "run folder not found"))
    if checkpoint_ok and (path / "config.json").exists():
        for cand in (path / "tokenizer.json", path.parent / "tokenizer.json",
                     path.parent / "tokenizer" / "tokenizer.json", path.parent.parent / "tokenizer" / "tokenizer.json"):
            if cand.exists():
                return Finished(path, cand, _checkpoint_name(path), None, None)
        raise UserError(f"{option} {path}: checkpoint has no tokenizer.json beside it or in its run folder")
    run = RunFolder(path)
    if stage is None:
        stage = run.latest_model_stage()
        if stage is None:
            what = "neither a checkpoint folder (config.json) nor a run folder" if checkpoint_ok else "no run folder"
            raise UserError(f"{option} {path}: {what} with a finished model stage ({', '.join(MODEL_STAGES)} with "
                            f"done.json); run `saessak pretrain` first")
    elif stage_name(stage) not in MODEL_STAGES:
        raise UserError(f"--stage {stage!r}: not a model stage; choose one of {', '.join(MODEL_STAGES)}")
    stage = stage_name(stage)
    run.require(stage, needed_by)
    ckpt = run.final_checkpoint(stage)
    if not (ckpt / "config.json").exists():
        raise UserError(f"{ckpt}: stage '{stage}' is marked done but has no config.json")
    if not any((ckpt / n).exists() for n in ("model.safetensors", "model.safetensors.index.json")):
        raise UserError(f"{ckpt}: stage '{stage}' is marked done but has no model.safetensors")
    if not run.tokenizer_json.exists():
        raise UserError(f"{run.tokenizer_json}: tokenizer not found (run `saessak tokenizer train` first)")
    return Finished(ckpt, run.tokenizer_json, f"{path.resolve().name}-{stage}", stage, run)


def _checkpoint_name(ckpt: Path) -> str:
    ckpt = ckpt.resolve()
    if ckpt.name == "final" and ckpt.parent.parent != ckpt.parent:
        return f"{ckpt.parent.parent.name}-{stage_name(ckpt.parent.name)}"
    return ckpt.name


def check_vocab(model, tokenizer, where: str) -> None:
    """A model/tokenizer mismatch makes every id mean the wrong thing: refuse it."""
    vocab = model.config.vocab_size
    if tokenizer.vocab_size > vocab:
        raise UserError(f"{where}: model vocab_size {vocab} is smaller than the tokenizer's "
                        f"{tokenizer.vocab_size}: the tokenizer does not belong to this model")
    # Models may pad their vocabulary (to a multiple of 64, say; Qwen 2.5 by 271 rows of 151,936),
    # but not by more than that.
    if vocab - tokenizer.vocab_size >= max(256, vocab // 64):
        raise UserError(f"{where}: model vocab_size {vocab} differs from the tokenizer's "
                        f"{tokenizer.vocab_size}: the tokenizer does not belong to this model")


def load(found: Finished, device: str = "cpu", dtype=None):
    """(model, tokenizer) of what `find` found, checked against each other; the model in its stored
    dtype unless `dtype` is given (an imported bf16 model stays bf16)."""
    from saessak.model.checkpoint import load_model
    from saessak.tokenizer.imported import load_tokenizer

    tokenizer = load_tokenizer(found.tokenizer_json)
    model = load_model(found.checkpoint, device=device, dtype=dtype)
    check_vocab(model, tokenizer, str(found.checkpoint))
    return model, tokenizer


def load_stage(run: RunFolder, stage: str, needed_by: str, device: str = "cpu", dtype=None):
    """(model, tokenizer) of a finished model stage of a run."""
    return load(find(run.root, stage, needed_by=needed_by, option="--run", checkpoint_ok=False), device, dtype)
