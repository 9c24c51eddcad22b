#!/usr/bin/env bash
# A short FSDP2 check on a GPU machine: pretrain, SFT and GRPO of a GPU preset under torchrun
# with --fsdp, a few steps each, then MFU and peak memory per rank from the run's ledger.
#
#   scripts/gpu_check.sh                      # all GPUs of this machine, preset d12, runs/gpu-check
#   NGPU=2 PRESET=d20 RUN=runs/x AC=full scripts/gpu_check.sh
#
# Needs CUDA and the default corpus sources (`saessak data fetch`, or a network for the first
# build). It was written on a machine without a GPU and has not been run there (README,
# "Scaling to GPUs"): its first real run is also its test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NGPU=${NGPU:-$("$PY" -c 'import torch; print(torch.cuda.device_count())')}
PRESET=${PRESET:-d12}
RUN=${RUN:-runs/gpu-check}
STEPS=${STEPS:-20}
AC=${AC:-selective}
if [ "$NGPU" -lt 1 ]; then
  echo "gpu_check: no CUDA device visible (torch.cuda.device_count() == 0)" >&2
  exit 2
fi
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m saessak)
FSDP=(--fsdp --activation-checkpointing "$AC")

"$PY" -m saessak data build --out "$RUN/data" --max-docs "${MAX_DOCS:-20000}"
"$PY" -m saessak tokenizer train --run "$RUN" --preset "$PRESET"
"${TORCHRUN[@]}" pretrain --run-dir "$RUN" --preset "$PRESET" --max-steps "$STEPS" --ckpt-every 10 \
  --val-every 0 --force "${FSDP[@]}"
"${TORCHRUN[@]}" sft --run-dir "$RUN" --max-steps "$STEPS" --ckpt-every 10 --force "${FSDP[@]}"
"${TORCHRUN[@]}" rl --run-dir "$RUN" --max-steps 3 --beta 0.04 --force "${FSDP[@]}"

"$PY" - "$RUN" <<'PYEOF'
import sys

from saessak.ledger import read_ledger

recs = [r for r in read_ledger(sys.argv[1]) if r.get("stage") in ("pretrain", "sft", "rl") and r.get("status") == "done"]
# Pretraining measures the device's matmul peak; SFT and RL are measured against the same one
# (their FLOPs over their whole wall time, rollouts included for RL).
peak = next((r.get("peak_flops") for r in recs if r.get("peak_flops")), None)
for rec in recs:
    peaks = ", ".join(f"{b / 2**30:.2f} GiB" for b in rec.get("peak_memory_bytes_per_rank") or [])
    mfu = rec.get("mfu")
    if not mfu and peak and rec.get("flops") and rec.get("wall_s"):
        mfu = rec["flops"] / rec["wall_s"] / rec.get("world_size", 1) / peak
    print(f"{rec['stage']:>8}: {rec.get('parallel')} x{rec.get('world_size')}, "
          f"MFU {'%.1f %%' % (100 * mfu) if mfu else 'n/a'}, "
          f"peak memory per rank ({rec.get('peak_memory_kind')}): {peaks}")
PYEOF
