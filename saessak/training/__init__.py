"""Training machinery the model stages share (pretrain, SFT, RL), applied from outside the model.

- distributed.py  torchrun: process group (gloo/NCCL), DDP, collectives
- parallel.py     FSDP2 sharding, activation checkpointing, gathering full weights, peak memory
- optim.py        AdamW, LR schedule, mixed precision, one optimizer step with accumulation
- checkpoints.py  resumable checkpoints RUN/<stage>/ckpt/step_N/ (sharded with DCP under FSDP), the final model
- metrics.py      metrics.jsonl, the progress line, the measured peak for MFU
- lifecycle.py    the one stage life-cycle: skip, force, resume or fresh start, finish, clean-up
"""

from saessak.training.checkpoints import (latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint,
                                          save_final)
from saessak.training.distributed import (DistInfo, all_reduce_grads, all_reduce_max, all_reduce_sum, barrier,
                                          broadcast_object, cleanup_distributed, init_distributed, wrap_ddp)
from saessak.training.lifecycle import StageRun, completed
from saessak.training.metrics import MetricsLog, Progress, peak_flops
from saessak.model.precision import PrecisionChoice, choose_dtype
from saessak.training.optim import autocast, build_optimizer, lr_at, precision_on_rank0, set_lr, train_step

__all__ = ["DistInfo", "MetricsLog", "PrecisionChoice", "Progress", "StageRun", "all_reduce_grads", "all_reduce_max", "all_reduce_sum",
           "autocast", "barrier", "broadcast_object", "build_optimizer", "choose_dtype", "cleanup_distributed",
           "completed", "init_distributed", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "lr_at",
           "peak_flops", "precision_on_rank0", "save_checkpoint", "save_final", "set_lr", "train_step", "wrap_ddp"]
