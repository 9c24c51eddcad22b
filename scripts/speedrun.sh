#!/usr/bin/env bash
# The main job (README): set-up, then the CPU speedrun on the embedded default corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/saessak speedrun --preset cpu-tiny --run "${RUN:-runs/cpu-tiny}" "$@"
