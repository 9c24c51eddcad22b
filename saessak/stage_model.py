"""Loading a model stage's output for the stages after pretraining (SFT, RL, eval).

Checks that what the run folder holds fits together (the stage is done, the tokenizer matches the
model's vocabulary) and finds the preset name the run was built with, so later stages pick their
own defaults for it.
"""

from __future__ import annotations

from saessak.errors import UserError
from saessak.io import read_json
from saessak.runfolder import RunFolder


def preset_of(rf: RunFolder, explicit: str | None = None) -> str:
    """`--preset` if given, else the preset recorded in RUN/base/final/meta.json."""
    if explicit:
        return explicit
    meta_path = rf.final_checkpoint("base") / "meta.json"
    if not meta_path.exists():
        raise UserError(f"{meta_path}: missing, so the preset is unknown; pass --preset")
    preset = read_json(meta_path).get("preset")
    if not preset:
        raise UserError(f"{meta_path}: has no 'preset' field; pass --preset")
    return str(preset)


def load_tokenizer(rf: RunFolder):
    from saessak.tokenizer import Tokenizer

    return Tokenizer.load(rf.tokenizer_json)


def check_vocab(model, tokenizer, where: str) -> None:
    """A model/tokenizer mismatch makes every id mean the wrong thing: refuse it."""
    vocab = model.config.vocab_size
    if tokenizer.vocab_size > vocab:
        raise UserError(f"{where}: model vocab_size {vocab} is smaller than the tokenizer's "
                        f"{tokenizer.vocab_size}: the tokenizer does not belong to this model")
    # Models may pad their vocabulary (to a multiple of 64, say), but not by more than that.
    if vocab - tokenizer.vocab_size >= 256:
        raise UserError(f"{where}: model vocab_size {vocab} differs from the tokenizer's "
                        f"{tokenizer.vocab_size}: the tokenizer does not belong to this model")


def load_stage(rf: RunFolder, stage: str, needed_by: str, device: str = "cpu"):
    """(model, tokenizer) of a finished model stage, checked against each other."""
    from saessak.checkpoint import load_model

    rf.require(stage, needed_by)
    tok = load_tokenizer(rf)
    model = load_model(rf.final_checkpoint(stage), device=device)
    check_vocab(model, tok, str(rf.final_checkpoint(stage)))
    return model, tok
