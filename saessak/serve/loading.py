"""Resolve `--model PATH` (a run folder or a checkpoint folder) to a model the server can hold.

Finding and checking is saessak.model.loading's; this adds the name clients send as "model".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saessak.model.loading import find, load


@dataclass
class ServedModel:
    model: object  # saessak.model.Llama
    tokenizer: object  # saessak.tokenizer.Tokenizer
    name: str  # the id clients send as "model"
    source: str  # where it was loaded from (for /v1/models and logs)


def load_served_model(path: str | Path, name: str | None = None, device: str = "cpu") -> ServedModel:
    found = find(path, needed_by="serve")
    model, tokenizer = load(found, device=device)
    return ServedModel(model=model.eval(), tokenizer=tokenizer, name=name or found.name, source=str(found.checkpoint))


def load_served_tokenizer(path: str | Path, name: str | None = None) -> ServedModel:
    """What the HTTP side of a server whose engine runs in another process needs: the tokenizer (for
    the chat template), the name and where the weights are; `model` is None."""
    from saessak.tokenizer.imported import load_tokenizer

    found = find(path, needed_by="serve")
    return ServedModel(model=None, tokenizer=load_tokenizer(found.tokenizer_json), name=name or found.name,
                       source=str(found.checkpoint))
