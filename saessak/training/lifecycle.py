"""The life-cycle every training stage shares (pretrain, SFT, RL, and whatever trains later).

One rule for all of them:

1. Complete: a stage whose `done.json` exists is skipped (`completed` gives its summary),
   unless --force.
2. --force starts over: the stage's folder is emptied first (checkpoints, metrics, samples, final
   model, done marker, and what the stage keeps between attempts, such as pretraining's shards).
3. Resume: otherwise a stage that finds a resumable checkpoint continues from the latest one,
   exactly (weights, optimizer, RNG, the loop's data position); its metrics are cut back to that
   step. A killed stage therefore costs at most the steps since its last checkpoint, and rerunning
   the same command is all it takes. --resume insists on this case: with nothing to resume it is
   an error.
4. Fresh start: otherwise the leftovers of an earlier attempt (metrics, samples, a final model
   whose done marker never came) are removed, keeping only what the stage names in `keep`.
5. Finish: the final model is saved, the ledger record closed (`done`), `done.json` written last,
   and the checkpoints dropped (they exist only to resume).
6. Always, on success, error or Ctrl-C: the attempt's ledger record is closed (`failed` with the
   error class, `interrupted` on Ctrl-C or SIGTERM), the process group is torn down and the torch
   thread count put back as it was.

Every attempt is in the ledger from its start (saessak/ledger.py): the record is written on entry
and rewritten every heartbeat with the time so far and what the loop reported through `progress`
(tokens, FLOPs, steps), so an attempt killed outright is still there, read as `killed`. A resumed
attempt records the step it resumed from.

Inputs are checked before anything is deleted: a stage calls `begin()` once its inputs have
loaded, so a bad input never costs the previous attempt's work. Only rank 0 writes or deletes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from saessak.errors import UserError
from saessak.ledger import StageTimer, heartbeat_interval, peak_memory_bytes
from saessak.runfolder import RunFolder
from saessak.training.checkpoints import (ckpt_root, latest_checkpoint, load_checkpoint, save_checkpoint, save_final,
                                          save_sharded_checkpoint)
from saessak.training.distributed import DistInfo, barrier, cleanup_distributed, gather_objects, init_distributed
from saessak.training.metrics import MetricsLog
from saessak.training.parallel import Parallel, full_state_dict, is_fsdp


def completed(run: RunFolder, stage: str, force: bool, log=None) -> dict[str, Any] | None:
    """The summary of a complete stage, marked `skipped` (rule 1); None when the stage must run."""
    if force or not run.is_done(stage):
        return None
    if log is not None:
        log(f"{stage}: {run.done_path(stage)} exists; skipping (use --force to redo)")
    return {**run.done_summary(stage), "skipped": True}


class StageRun:
    """One attempt at a training stage; use as `with StageRun(...) as st:` (rule 6 on exit)."""

    def __init__(self, run: RunFolder, stage: str, *, force: bool = False, resume: bool = False,
                 device: str | None = None, threads: int | None = None, keep: tuple[str, ...] = (),
                 parallel: Parallel | None = None):
        self.run = run
        self.parallel = parallel or Parallel()
        self.stage = stage
        self.dir: Path = run.stage_dir(stage)
        self.force, self.resume = force, resume
        self.device, self.threads, self.keep = device, threads, keep
        self.resume_from: Path | None = None
        self.info: DistInfo | None = None
        self._threads_before = torch.get_num_threads()

    def __enter__(self) -> "StageRun":
        heartbeat = heartbeat_interval()  # a bad $SAESSAK_HEARTBEAT_S is an error before anything starts
        self.parallel.validate()  # --fsdp without torchrun, ...: before any process group starts
        self.info = init_distributed(self.device, group=self.parallel.fsdp)
        try:
            if self.threads and self.info.device == "cpu" and self.info.world == 1:
                torch.set_num_threads(self.threads)
            self.metrics = MetricsLog(self.dir / "metrics.jsonl", enabled=self.info.is_main)
            self.timer = StageTimer(self.run.root, self.stage, device=self.info.device, heartbeat_s=heartbeat)
        except BaseException:
            cleanup_distributed(self.info)
            torch.set_num_threads(self._threads_before)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None:
                self.timer.fail(exc)
            elif not self.timer.ended:
                self.timer.finish()  # left without `finish` (no model): the attempt still ended normally
        finally:
            try:
                if self.info is not None:
                    cleanup_distributed(self.info)
            finally:
                torch.set_num_threads(self._threads_before)

    def parallel_facts(self, peaks: list[int]) -> dict[str, Any]:
        """How the attempt was spread over its ranks, and each rank's peak memory (bytes: CUDA
        peak allocated, or the process's peak RSS on CPU)."""
        par = self.parallel
        mode = "fsdp" if par.fsdp else ("ddp" if self.info.distributed else "single")
        return {"parallel": mode, "world_size": self.info.world, "activation_checkpointing": par.activation_checkpointing,
                "fsdp_cpu_offload": par.cpu_offload, "peak_memory_bytes_per_rank": peaks,
                "peak_memory_kind": "cuda_max_allocated" if self.info.device.startswith("cuda") else "cpu_max_rss"}

    def progress(self, **facts: Any) -> None:
        """This attempt's counts so far (tokens, flops, steps): the ledger's next heartbeat writes them."""
        self.timer.progress(**facts)

    def begin(self) -> Path | None:
        """Rules 2-4: empty the folder (--force), or find the checkpoint to resume, or clear the
        leftovers. Returns the checkpoint the stage continues from, or None."""
        ckpt = None if self.force else latest_checkpoint(self.dir)
        if self.resume and ckpt is None:
            raise UserError(f"{self.dir}: --resume given but there is no checkpoint to resume from"
                            + (" (--force starts over)" if not self.force else ""))
        if self.info.is_main and ckpt is None and self.dir.is_dir():
            for entry in self.dir.iterdir():
                if self.force or entry.name not in self.keep:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        barrier(self.info)
        self.resume_from = ckpt
        return ckpt

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Load the checkpoint `begin` found into model and optimizer (and the RNG); its loop state,
        or None on a fresh start. The metrics log is cut back to the checkpoint's step."""
        if self.resume_from is None:
            return None
        state = load_checkpoint(self.resume_from, model, optimizer)
        self.metrics.truncate_after(state["step"])
        self.timer.progress(resumed_from_step=state["step"])
        return state

    def checkpoint(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   loop_state: dict[str, Any], keep: int = 2, meta: dict[str, Any] | None = None) -> None:
        """A resumable checkpoint at `step` (rank 0 writes it; every rank writes its shards under FSDP)."""
        if is_fsdp(model):
            save_sharded_checkpoint(self.dir, step, model, optimizer, self.info, loop_state, keep=keep, meta=meta)
        elif self.info.is_main:
            save_checkpoint(self.dir, step, model, optimizer, loop_state, keep=keep, meta=meta)

    def finish(self, model: torch.nn.Module, meta: dict[str, Any], summary: dict[str, Any],
               **ledger_facts: Any) -> dict[str, Any]:
        """Rule 5: final model, ledger record (status done), done.json (last), checkpoints dropped.
        `ledger_facts` are this attempt's own (tokens and FLOPs since it started or resumed).
        A sharded model is gathered one tensor at a time into rank 0's host memory and saved as
        one ordinary safetensors file; the ledger gets every rank's peak memory."""
        state = full_state_dict(model) if is_fsdp(model) else None  # every rank takes part
        peaks = gather_objects(peak_memory_bytes(self.info.device), self.info)
        if self.info.is_main:
            save_final(self.dir, model, meta, state=state)
            self.timer.finish(**ledger_facts, **self.parallel_facts(peaks))
            self.run.mark_done(self.stage, summary)
            shutil.rmtree(ckpt_root(self.dir), ignore_errors=True)
        barrier(self.info)
        return summary

