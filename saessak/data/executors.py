"""The datatrove executors a build runs its stages on: local processes, Slurm job arrays, a Ray cluster.

Each stage gets its own executor whose logging folder is RUN/work/data/logs/<stage>/ (task logs,
stats, completion markers), whatever the executor, so a rerun skips the finished tasks of any of them
and the logs end up in RUN/data/logs/. Imported once the stages are (datatrove loads here).
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor, SlurmPipelineExecutor
from datatrove.executor.base import PipelineExecutor

from saessak.errors import UserError


class QuietLocal(LocalPipelineExecutor):
    """datatrove's local executor; task logs go to their files only (stderr is kept for errors)."""

    def _run_for_rank(self, rank, local_rank=0, node_rank=-1):
        # datatrove prints every task's log to stderr for local rank 0; ours keeps stderr for errors
        # (each task's full log is in WORK/logs/<stage>/logs/).
        return super()._run_for_rank(rank, local_rank + 1, node_rank)

    def run(self):
        if self.workers > 1:
            import multiprocess

            # The fork server imports the pipeline once; each worker of each stage forks from it
            # instead of importing datatrove and saessak again (seconds per worker).
            multiprocess.get_context(self.start_method).set_forkserver_preload(["saessak.data.pipeline"])
            return super().run()
        # One at a time: in this process, without the manager process datatrove starts for a
        # pool (seconds per stage, most of a small build's time).
        from copy import deepcopy

        pipeline = self.pipeline
        for rank in self.get_incomplete_ranks():
            self.pipeline = deepcopy(pipeline)
            self._run_for_rank(rank)
        self.pipeline = pipeline


class RunFolderRay(RayPipelineExecutor):
    """datatrove's Ray executor, with each task's log written straight into WORK/logs/<stage>/logs/.

    datatrove's own Ray task logs into `$TMPDIR/ray_logs/logs/task_NNNNN.log` on the worker and copies
    the file over when the task ends: two builds on one node then write the same file, and a task
    killed before the copy leaves no log. The run folder has to be on a file system every node sees
    anyway (the task files are there), so the task logs where the local and Slurm executors' do."""

    def _run_for_rank(self, rank, local_rank=0, node_rank=-1):
        return PipelineExecutor._run_for_rank(self, rank, local_rank, node_rank)


def make_executor(kind: str, pipeline: list, tasks: int, workers: int, logs: Path, options: dict[str, Any],
                  name: str) -> PipelineExecutor:
    if kind == "local":
        return QuietLocal(pipeline, tasks=tasks, workers=max(1, min(workers, tasks)), logging_dir=str(logs))
    if kind == "slurm":
        activate = Path(sys.prefix) / "bin" / "activate"  # the jobs run this Python's venv, if it is one
        opts = {"time": "24:00:00", "partition": "cpu", "job_name": f"saessak-data-{name}",
                **({"venv_path": str(activate)} if activate.exists() else {}), **options}
        return _with_options(SlurmPipelineExecutor, pipeline, tasks, str(logs), opts)
    return _with_options(RunFolderRay, pipeline, tasks, str(logs), {"workers": workers, **options})


def _with_options(cls, pipeline: list, tasks: int, logs: str, options: dict[str, Any]) -> PipelineExecutor:
    try:
        return cls(pipeline, tasks=tasks, logging_dir=logs, **options)
    except TypeError as e:  # an --executor-option the executor does not take
        bad = re.search(r"argument '(\w+)'", str(e))
        raise UserError(f"--executor-option {bad.group(1) if bad else ''}: not an option of datatrove's "
                        f"{cls.__mro__[1].__name__ if cls is RunFolderRay else cls.__name__} ({e})") from None


@contextmanager
def ray_cluster(log) -> Iterator[int]:
    """Connected to Ray for the block: the cluster this process is already connected to, the one
    RAY_ADDRESS names (or `ray start --head` left on this machine), else a new instance on this
    machine, shut down after the block. Yields the cluster's CPU count."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray: the 'ray' package is not installed (pip install 'saessak[scale]')") from None
    import logging

    started = False
    if not ray.is_initialized():
        # Task logs are in the run folder; the workers' own stdout/stderr stay on the workers.
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
        started = True
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        log(f"Ray cluster: {cpus} CPU(s) on {len(ray.nodes())} node(s)")
        yield cpus
    finally:
        if started:
            ray.shutdown()


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def failed_tasks(logs: Path, ranks: list[int], limit: int = 3) -> str:
    """'task N: <the exception's last line>' for the first failed tasks, from their logs."""
    out = []
    for rank in ranks[:limit]:
        path = logs / "logs" / f"task_{rank:05d}.log"
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            out.append(f"task {rank}: no log")
            continue
        last = next((ln.strip() for ln in reversed(lines) if _EXCEPTION_LINE.match(ln.strip())), None)
        out.append(f"task {rank}: {last or 'did not finish (no error in its log)'}")
    return "; ".join(out) + (f"; and {len(ranks) - limit} more" if len(ranks) > limit else "")
