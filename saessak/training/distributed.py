"""Distribution applied from outside the model: the same script runs alone or under `torchrun`.

With WORLD_SIZE > 1, `init_distributed` starts a gloo (CPU) or NCCL (CUDA) process group and
`wrap_ddp` applies DDP; the collectives below are identities in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from saessak.errors import UserError


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_distributed(device: str | None = None, group: bool = False) -> DistInfo:
    """Read torchrun's environment; start the process group when there is more than one process
    (or when `group` asks for one: FSDP under torchrun with a single process).

    `device` None picks CUDA when available. Under torchrun on CUDA each process takes
    `cuda:LOCAL_RANK`; on CPU each process gets an equal share of the cores, so N processes do
    not oversubscribe the machine.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if world > 1 or group:
        import torch.distributed as dist

        if not device.startswith("cuda"):
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP over the ranks; a model FSDP has sharded already is returned as it is."""
    from torch.distributed.fsdp import FSDPModule

    if not info.distributed or isinstance(model, FSDPModule):
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(info.device).index] if info.device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few floats over ranks (identity in a single process)."""
    if not info.distributed:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_max(value: float, info: DistInfo) -> float:
    """The largest of one float over ranks."""
    if not info.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0])


def all_reduce_grads(model: torch.nn.Module, info: DistInfo) -> None:
    """Sum every parameter's gradient over ranks (a missing gradient counts as zeros), for loops that
    split the global batch unevenly and so cannot use DDP's averaging."""
    if not info.distributed:
        return
    import torch.distributed as dist

    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's value, in rank order, on every rank."""
    if not info.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value on every rank (e.g. an error message or a path decided by rank 0)."""
    if not info.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup_distributed(info: DistInfo) -> None:
    if "WORLD_SIZE" in os.environ:  # torchrun: the group this process started, even with one rank
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
