"""Run EleutherAI lm-evaluation-harness on an exported Hugging Face folder (`saessak eval lm-eval`).

`run(args)` takes args.model (a folder from `saessak export hf`), args.tasks (comma-separated names
or a list), args.limit, args.output, args.batch_size and args.run (the run folder whose ledger
records the evaluation's cost; by default the one the model was exported into, RUN/export/DIR;
with neither, nothing is recorded and the command says so). It runs offline (HF_HUB_OFFLINE=1): the
model comes from the folder and the tasks' data must be local. Besides lm-eval's own tasks
(Korean: kmmlu, haerae, kobest_* — these need their datasets cached or a network), the project
ships `saessak_ko_mc` (saessak/evals/lm_eval_tasks/), a small Korean multiple-choice task with its data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from saessak.errors import UserError

LOCAL_TASKS = Path(__file__).with_name("lm_eval_tasks")


def _task_list(tasks) -> list[str]:
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks or [])
    names = [t.strip() for t in names if t and t.strip()]
    if not names:
        raise UserError("--tasks: give at least one lm-eval task name (e.g. saessak_ko_mc)")
    return names


def _check_model_folder(path: Path) -> None:
    if not path.is_dir():
        raise UserError(f"--model {path}: folder not found (make one with `saessak export hf`)")
    for name in ("config.json", "tokenizer.json"):
        if not (path / name).exists():
            raise UserError(f"--model {path}: not a Hugging Face model folder (no {name}); "
                            "make one with `saessak export hf --run RUN --out DIR`")


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe part of lm-eval's output: per-task metrics, sample counts, versions, config."""
    from lm_eval.utils import handle_non_serializable

    keep = {k: results[k] for k in ("results", "groups", "n-samples", "versions", "n-shot", "higher_is_better")
            if k in results}
    keep["config"] = {k: v for k, v in (results.get("config") or {}).items()
                      if k in ("model", "model_args", "batch_size", "device", "limit")}
    return json.loads(json.dumps(keep, default=handle_non_serializable))


def evaluate(model_dir: str | os.PathLike, tasks, limit: int | float | None = None,
             batch_size: int | str | None = 1) -> dict[str, Any]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model_dir = Path(model_dir)
    _check_model_folder(model_dir)
    names = _task_list(tasks)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("lm-eval is not installed: pip install 'saessak[eval]'") from None
    import torch

    # Indexing lm-eval's thousands of task files takes ~15 s; skip it when only local tasks are asked.
    local_only = all((LOCAL_TASKS / f"{t}.yaml").exists() for t in names)
    manager = TaskManager(include_path=str(LOCAL_TASKS), include_defaults=not local_only)
    known = set(manager.all_tasks)
    unknown = [t for t in names if t not in known]
    if unknown:
        raise UserError(f"--tasks {','.join(unknown)}: unknown lm-eval task (project task: saessak_ko_mc; "
                        "see `lm_eval --tasks list`)")
    if limit is not None and limit <= 0:
        raise UserError(f"--limit {limit}: must be positive")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_dir.resolve()), "dtype": "float32"},
        tasks=names,
        limit=limit,
        batch_size=batch_size or 1,
        device=device,
        task_manager=manager,
        log_samples=False,
    )
    if results is None:  # non-zero ranks under torchrun
        return {}
    return summarize(results)


def ledger_run(model_dir: str | os.PathLike, run: str | os.PathLike | None) -> Path | None:
    """The run folder whose ledger records an lm-eval run: `run` if given, else the run folder an
    export made with `saessak export hf --run RUN --out RUN/export/DIR` sits in, else None."""
    from saessak.ledger import is_run_folder

    if run is not None:
        if not Path(run).is_dir():
            raise UserError(f"--run {run}: run folder not found")
        return Path(run)
    parent = Path(model_dir).resolve().parent
    return parent.parent if parent.name == "export" and is_run_folder(parent.parent) else None


def run(args) -> int:
    import contextlib
    import sys

    import torch

    from saessak.io import write_json
    from saessak.ledger import StageTimer

    _check_model_folder(Path(args.model))
    names = _task_list(args.tasks)
    where = ledger_run(args.model, getattr(args, "run", None))
    if where is None:
        print(f"lm-eval: {args.model} is not in a run folder and no --run was given: its cost is not recorded "
              "in any ledger", file=sys.stderr)
        timer = contextlib.nullcontext()
    else:
        # lm-eval reports no token counts: the record has the time and the device, and says what it lacks.
        timer = StageTimer(where, "eval", device="cuda" if torch.cuda.is_available() else "cpu",
                           facts={"harness": "lm-eval", "model": str(args.model), "tasks": names,
                                  "unmeasured": "tokens and FLOPs (lm-evaluation-harness does not report them)"})
    with timer:
        out = evaluate(args.model, names, limit=getattr(args, "limit", None),
                       batch_size=getattr(args, "batch_size", None) or 1)
    for task, metrics in (out.get("results") or {}).items():
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "stderr" not in k)
        print(f"lm-eval {task}: {shown}")
    if getattr(args, "output", None):
        write_json(args.output, out)
        print(f"lm-eval: results in {args.output}")
    return 0
