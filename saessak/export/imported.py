"""Export of a run that started from an imported model (saessak/model/hf_import.py).

The folder is the family's own: its config.json (the imported keys, the shape kept in step, the
dtype the weights are stored in), the weights as saved (Hugging Face names; shards and their index
when the stage is the import itself), and the model's own tokenizer files and chat template as the
import copied them. transformers loads it with the same class it was imported from, vLLM serves
it. `--adapter-only` writes the LoRA adapter of a LoRA stage instead (adapter_config.json +
adapter_model.safetensors, as peft saves them), for peft's `PeftModel.from_pretrained` and
vLLM's `--lora-modules`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from saessak.errors import UserError
from saessak.model.loading import Finished

_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def is_imported(src: Finished) -> bool:
    """Whether the run's tokenizer is an imported model's (its own files beside tokenizer.json)."""
    folder = src.tokenizer_json.parent
    return (folder / "tokenizer_config.json").exists() or (folder / "chat_template.jinja").exists()


def stored_dtype(files: list[Path]) -> str:
    from saessak.model.hf_import import safetensors_header

    kinds = {t["dtype"] for t in safetensors_header(files[0]).values()}
    return _DTYPES.get(sorted(kinds)[0], "float32") if len(kinds) == 1 else "float32"


def write_model(src: Finished, tmp: Path) -> None:
    """The imported family's Hugging Face folder for `src` into `tmp`."""
    from saessak.model.checkpoint import load_config, weight_files
    from saessak.model.hf_config import to_hf
    from saessak.tokenizer.imported import TOKENIZER_FILES

    cfg = load_config(src.checkpoint)
    files = weight_files(src.checkpoint)
    for f in files:
        shutil.copyfile(f, tmp / f.name)
    index = src.checkpoint / "model.safetensors.index.json"
    if index.exists() and len(files) > 1:
        shutil.copyfile(index, tmp / index.name)
    (tmp / "config.json").write_text(json.dumps(to_hf(cfg, stored_dtype(files)), indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (src.tokenizer_json.parent / name).exists():
            shutil.copyfile(src.tokenizer_json.parent / name, tmp / name)


def write_adapter(src: Finished, tmp: Path) -> None:
    """The LoRA adapter of `src`'s stage into `tmp`."""
    from saessak.model.lora import ADAPTER_DIR

    adapter = src.run.stage_dir(src.stage) / ADAPTER_DIR
    if not (adapter / "adapter_config.json").exists():
        raise UserError(f"--adapter-only: stage '{src.stage}' of {src.run.root} was not trained with LoRA "
                        f"(no {adapter}); train it with --lora-r or export the whole model")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(adapter / name, tmp / name)
