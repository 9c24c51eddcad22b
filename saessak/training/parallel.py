"""FSDP2 and activation checkpointing, applied to a single-device model from outside it.

`--fsdp` shards every transformer block (`model.model.layers[i]`), the untied embeddings and
head, and the root (norm, and a tied embedding/head) with `torch.distributed.fsdp.fully_shard`
over one mesh of all ranks, as torchtitan's parallelize step does; the model code is untouched.
The names follow what users of the neighbouring tools type: `--fsdp` as in Hugging Face
Trainer/TRL, `--activation-checkpointing none|selective|full` as torchtitan's
`activation_checkpoint.mode` (docs/TRAINING.md).

- Mixed precision on CUDA with bf16: parameters all-gathered and computed in bf16, gradients
  reduced in fp32, fp32 master weights in the sharded optimizer state. On CPU (gloo) the
  parameters stay fp32 (the stage's autocast still applies).
- `--fsdp-cpu-offload`: sharded parameters, gradients and optimizer state live in host memory
  (CUDA only: on a CPU run they are there already).
- Activation checkpointing (with or without FSDP): `full` recomputes each block's forward in the
  backward pass; `selective` keeps the matmul and attention outputs and recomputes the cheap
  elementwise ops around them (norms, rotary, SiLU). Composable hooks, so parameter names and
  checkpoints do not change.
- `build_model`: a new model built on the meta device under FSDP, so that no rank allocates all
  of it; its seeded init gives the same weights as one process.
- `full_weights(model)`: every rank gathers the whole model for a while (rollouts, samples) so
  that one rank may run the generation engine with no collectives in between;
  `full_state_dict(model)` gathers it one tensor at a time into rank 0's host memory (final save).
- this rank's peak memory for the ledger: `saessak.ledger.peak_memory_bytes`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from saessak.errors import UserError
from saessak.training.distributed import DistInfo

AC_MODES = ("none", "selective", "full")


@dataclass(frozen=True)
class Parallel:
    """How a training stage spreads over its ranks (the command line's --fsdp options)."""
    fsdp: bool = False
    cpu_offload: bool = False
    activation_checkpointing: str = "none"

    def validate(self) -> None:
        """Checked before any process group starts: a bad combination is a clear error."""
        if self.activation_checkpointing not in AC_MODES:
            raise UserError(f"--activation-checkpointing {self.activation_checkpointing!r}: "
                            f"must be one of {', '.join(AC_MODES)}")
        if self.cpu_offload and not self.fsdp:
            raise UserError("--fsdp-cpu-offload: offloads FSDP shards; give --fsdp as well")
        if self.fsdp and "WORLD_SIZE" not in os.environ:
            raise UserError("--fsdp shards the model over the processes torchrun starts: run it as "
                            "`torchrun --nproc_per_node=N -m saessak <stage> --run-dir RUN --fsdp ...` "
                            "(one process trains without --fsdp)")


def add_parallel_options(parser) -> None:
    """The options every training stage takes for FSDP and activation checkpointing."""
    parser.add_argument("--fsdp", action="store_true",
                        help="shard parameters, gradients and optimizer state over the torchrun processes "
                             "(FSDP2; needs torchrun)")
    parser.add_argument("--fsdp-cpu-offload", dest="fsdp_cpu_offload", action="store_true",
                        help="with --fsdp on CUDA: keep the shards and optimizer state in host memory")
    parser.add_argument("--activation-checkpointing", dest="activation_checkpointing", choices=AC_MODES,
                        default="none", help="recompute activations in the backward pass: none, selective "
                                             "(keep matmul outputs) or full (every block) (default: none)")


def parallel_from_args(args) -> Parallel:
    return Parallel(fsdp=bool(getattr(args, "fsdp", False)),
                    cpu_offload=bool(getattr(args, "fsdp_cpu_offload", False)),
                    activation_checkpointing=getattr(args, "activation_checkpointing", None) or "none")


def blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a Hugging Face-named causal LM (`model.model.layers`)."""
    return list(model.model.layers)


# ----------------------------------------------------------------------------- activation checkpointing


def _save_matmuls_policy():
    from torch.utils.checkpoint import CheckpointPolicy

    aten = torch.ops.aten
    keep = {aten.mm.default, aten.bmm.default, aten.addmm.default}
    for name in ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu"):
        if hasattr(aten, name):
            keep.add(getattr(aten, name).default)

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in keep else CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def apply_activation_checkpointing(model: torch.nn.Module, mode: str) -> None:
    """Checkpoint each block's forward (`full`), or all but its matmul outputs (`selective`)."""
    if mode == "none":
        return
    from torch.distributed._composable import checkpoint

    if mode == "full":
        for block in blocks(model):
            checkpoint(block)
        return
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    policy = _save_matmuls_policy()
    for block in blocks(model):
        checkpoint(block, context_fn=lambda: create_selective_checkpoint_contexts(policy))


# ----------------------------------------------------------------------------- FSDP2


def is_fsdp(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_model(model: torch.nn.Module, info: DistInfo, par: Parallel, dtype: str = "fp32") -> torch.nn.Module:
    """Activation checkpointing, then FSDP2 over all ranks when `par.fsdp`; in place, same object.

    Call before the optimizer is built (it must see the sharded parameters) and before a
    checkpoint is restored into it. `dtype` is the stage's resolved compute dtype.
    """
    apply_activation_checkpointing(model, par.activation_checkpointing)
    if not par.fsdp:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    cuda = info.device.startswith("cuda")
    if par.cpu_offload and not cuda:
        raise UserError("--fsdp-cpu-offload: only for CUDA runs (on CPU the shards are in host memory already)")
    if not cuda:
        _fixed_mmap_threshold()
    mesh = init_device_mesh("cuda" if cuda else "cpu", (info.world,), mesh_dim_names=("dp_shard",))
    # gloo reduces in the parameters' dtype and CPU runs keep fp32 parameters under autocast.
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
          if cuda and dtype == "bf16" else MixedPrecisionPolicy())
    kw = {"mesh": mesh, "mp_policy": mp, "offload_policy": CPUOffloadPolicy() if par.cpu_offload else OffloadPolicy()}
    for block in blocks(model):
        fully_shard(block, **kw)
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    if not tied:  # a tied matrix is used first and last: it stays in the root's group
        fully_shard(model.model.embed_tokens, **kw)
        fully_shard(model.lm_head, **kw)
    fully_shard(model, **kw)
    # Only `forward` gathers the root's parameters (norm, tied embeddings): code that calls
    # `hidden_states` and `lm_head` itself does so inside `full_weights` or calls the model instead
    # (registering `hidden_states` as a forward method would nest it in `forward` and reshard the
    # root before the head runs).
    return model


def build_model(make: Callable[[], torch.nn.Module], init: Callable[[torch.nn.Module], None], info: DistInfo,
                par: Parallel, dtype: str = "fp32") -> torch.nn.Module:
    """A new model, initialised by `init`, on the device, sharded as `par` says.

    Under FSDP it is built on the meta device and sharded there, and only this rank's shards are
    ever allocated: `init` runs on the sharded model with every full tensor it writes cut to this
    rank's shard (DTensor implicit replication), so no rank holds the whole model and the weights
    equal a one-process init with the same seed.
    """
    if not par.fsdp:
        model = make()
        init(model)
        return shard_model(model.to(info.device), info, par, dtype)
    from torch.distributed.tensor.experimental import implicit_replication

    with torch.device("meta"):
        model = make()
    if any(True for _ in model.buffers()):  # `init` sets parameters only: buffers would stay uninitialised
        raise NotImplementedError(f"{type(model).__name__} has buffers; build_model initialises parameters only")
    shard_model(model, info, par, dtype)
    model.to_empty(device=info.device)
    with implicit_replication(), torch.no_grad():
        init(model)
    return model


_MMAP_THRESHOLD = 1 << 20


def _fixed_mmap_threshold() -> None:
    """On CPU, FSDP allocates and frees a block's gathered parameters and gradients (tens of MB)
    several times per step. glibc raises its mmap threshold to the size of each freed mapping, so
    these buffers soon come from the heap, interleaved with long-lived gradients and optimizer
    state, and the fragmented heap's peak grows with the number of blocks (1.8x the steady state on
    a 16-block model: docs/BENCHMARKS.md). A fixed 1 MiB threshold keeps them mmapped: returned to
    the system when freed, at the price of a page fault per page on each allocation."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD; fixing it turns off the dynamic rise
    except (OSError, AttributeError):  # not glibc: nothing to set
        pass


def fsdp_modules(model: torch.nn.Module) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def set_gradient_sync(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Gradient accumulation: reduce only on the last micro-batch (DDP `no_sync`, FSDP2's switch)."""
    if is_fsdp(model):
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if not sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def clip_grad_norm(params, max_norm: float) -> float:
    """Clip the total gradient norm (over all shards under FSDP); returns the norm before clipping."""
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
        norm = norm.full_tensor()
    return float(norm)


@contextlib.contextmanager
def full_weights(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Every rank enters: FSDP gathers each group's parameters once and keeps them until the end,
    so the model runs on any one rank with no collectives (rollouts, samples). One full copy on
    each rank for that while (in the compute dtype), beside its shard; outside FSDP a no-op."""
    if not is_fsdp(model):
        yield model
        return
    # The root's lazy set-up (which its first forward would do): a rollout may come before any forward.
    model._get_fsdp_state()._lazy_init()  # no public call for it in torch 2.13
    mods = fsdp_modules(model)
    before = [_reshards_after_forward(m) for m in mods]
    for m in mods:
        m.unshard()
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield model
    finally:
        for m, was in zip(mods, before):
            m.set_reshard_after_forward(was, recurse=False)
        # Reshard everything and forget the forward order those calls recorded on this rank alone
        # (the backward prefetches by it: ranks must agree on it).
        model.reset_iter_state()


def _reshards_after_forward(m) -> bool:
    groups = m._get_fsdp_state()._fsdp_param_groups  # no public getter in torch 2.13
    return bool(groups and groups[0]._reshard_after_forward)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on rank 0's host memory, gathered one tensor at a time (other
    ranks get an empty dict); every rank must call it. No device ever holds more than one full
    tensor beyond its own shard."""
    if not is_fsdp(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


