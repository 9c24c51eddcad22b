"""`saessak import hf PATH --run RUN`: a local Hugging Face checkpoint becomes a run's base model.

Everything is checked before anything is written: config.json (a supported family, no key that
would change the maths unimplemented: saessak/model/hf_config.py), the tokenizer and its chat
template (saessak/tokenizer/imported.py), the vocabulary against the embedding, and every weight
file's header against the shapes the config gives (a truncated shard is caught by its size, with
no tensor read). Then, each part written atomically:

    RUN/pretrain/final/   config.json (the model's own) + the safetensors files as they are
                          (+ model.safetensors.index.json) + meta.json (where it came from)
    RUN/pretrain/done.json
    RUN/tokenizer/        tokenizer.json, tokenizer_config.json, chat_template.jinja (if any),
                          generation_config.json with every end-of-reply id of config.json too

so that sft, rl, eval, serve, chat, export and report read it as a pretrained run. PATH is only
read; weights are copied byte for byte (a bf16 checkpoint stays bf16, never loaded whole).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from saessak.errors import UserError
from saessak.io import atomic_dir, read_json_or_none, write_json
from saessak.ledger import StageTimer
from saessak.runfolder import RunFolder

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors_header(path: Path) -> dict[str, dict]:
    """The tensors a safetensors file declares ({name: {dtype, shape, data_offsets}}), checked
    against the file's size so that a truncated file is refused without reading its data."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise UserError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", raw)
        if 8 + n > size:
            raise UserError(f"{path}: truncated safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: damaged safetensors header ({e})") from None
    header.pop("__metadata__", None)
    end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if 8 + n + end > size:
        raise UserError(f"{path}: truncated safetensors file: its tensors need {8 + n + end} bytes, "
                        f"the file has {size}")
    return header


def check_folder(src: Path):
    """(raw config, ModelConfig, tokenizer, weight files) of a Hugging Face folder, all checked."""
    import torch

    from saessak.model import build_model
    from saessak.model.checkpoint import check_shapes, weight_files, without_missing_mtp
    from saessak.model.hf_config import from_hf, is_hf_config
    from saessak.model.loading import check_vocab
    from saessak.tokenizer.imported import ImportedTokenizer

    if not src.is_dir():
        raise UserError(f"{src}: no such folder")
    cfg_path = src / "config.json"
    if not cfg_path.exists():
        raise UserError(f"{cfg_path}: missing; not a Hugging Face model folder")
    raw = read_json_or_none(cfg_path)
    if not isinstance(raw, dict) or not is_hf_config(raw):
        raise UserError(f"{cfg_path}: not a Hugging Face model config (no architectures / model_type)")
    cfg = from_hf(raw, str(cfg_path))
    tok = ImportedTokenizer.from_folder(src, model_config=raw)
    check_vocab(type("M", (), {"config": cfg})(), tok, str(cfg_path))
    files = weight_files(src)
    found: dict[str, tuple[tuple, Path]] = {}
    for f in files:
        for name, t in safetensors_header(f).items():
            if t.get("dtype") not in _DTYPE_BYTES:
                raise UserError(f"{f}: tensor {name} has dtype {t.get('dtype')!r}, which saessak does not load")
            found[name] = (tuple(t["shape"]), f)
    with torch.device("meta"):  # a DeepSeek save without its MTP modules (transformers') is one without MTP
        expected = {k: tuple(v.shape) for k, v in build_model(without_missing_mtp(cfg, found)).state_dict().items()}
    if cfg.tie_word_embeddings:
        expected.pop("lm_head.weight")
    if cfg.tie_word_embeddings:
        found.pop("lm_head.weight", None)
    check_shapes(expected, {k: v[0] for k, v in found.items()}, {k: v[1] for k, v in found.items()}, src)
    return raw, cfg, tok, files


def import_hf(path: str, run: str, preset: str = "cpu-tiny", force: bool = False, log=print) -> dict:
    from saessak.tokenizer.imported import TOKENIZER_FILES, _ids

    src = Path(path)
    rf = RunFolder(run)
    if not force and (rf.is_done("pretrain") or rf.tokenizer_json.exists()):
        raise UserError(f"--run {rf.root}: already has a base model or tokenizer; use --force to replace them")
    raw, cfg, tok, files = check_folder(src)  # nothing is written before this passes
    with StageTimer(rf.root, "import", facts={"source": str(src.resolve()), "architecture": cfg.architecture}) as timer:
        final = rf.final_checkpoint("pretrain")
        if force:
            shutil.rmtree(rf.stage_dir("pretrain"), ignore_errors=True)
        with atomic_dir(final) as tmp:
            shutil.copyfile(src / "config.json", tmp / "config.json")
            for f in files:
                shutil.copyfile(f, tmp / f.name)
            if (src / "model.safetensors.index.json").exists():
                shutil.copyfile(src / "model.safetensors.index.json", tmp / "model.safetensors.index.json")
            write_json(tmp / "meta.json", {"preset": preset, "stage": "pretrain", "imported_from": str(src.resolve()),
                                           "architecture": cfg.architecture})
        with atomic_dir(rf.tokenizer_dir) as tmp:
            for name in TOKENIZER_FILES:
                if (src / name).exists():
                    shutil.copyfile(src / name, tmp / name)
            gen = read_json_or_none(tmp / "generation_config.json") or {}
            stops = list(dict.fromkeys([*_ids(gen.get("eos_token_id")), *_ids(raw.get("eos_token_id"))]))
            gen["eos_token_id"] = stops if len(stops) != 1 else stops[0]
            write_json(tmp / "generation_config.json", gen)
        params = cfg.num_parameters()
        summary = {"imported_from": str(src.resolve()), "architecture": cfg.architecture, "params": params,
                   "preset": preset, "weight_files": [f.name for f in files], "vocab_size": cfg.vocab_size,
                   "tokenizer_vocab": tok.vocab_size, "stop_ids": sorted(tok.stop_ids)}
        timer.finish(params=params, trainable_params=0, bytes_copied=sum(f.stat().st_size for f in files))
        rf.mark_done("pretrain", summary)
    log(f"import: {cfg.architecture} with {params:,} parameters from {src} -> {rf.root} "
        f"(stops on ids {sorted(tok.stop_ids)})")
    return summary
