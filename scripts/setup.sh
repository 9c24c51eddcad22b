#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: .venv, torch (pinned first), saessak with its
# extras, the Debian packages the tests use, and the default corpus sources (cached .debs).
# Re-running is fast: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0
export SAESSAK_CACHE=${SAESSAK_CACHE:-$HOME/.cache/saessak}

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

# 1. Python packages. torch first and pinned: a bare `torch` would pull a multi-GB CUDA build.
stamp="$VENV/.saessak-setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing Python packages"
  "$VPY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$VPY" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
  "$VPY" -m pip install -q --disable-pip-version-check -e ".[all,dev]" "torch==$TORCH_VERSION"
  echo "$want" > "$stamp"
else
  log "Python packages up to date"
fi

# 2. Debian packages the tests need: headless Chromium for the web chat page test, and a Korean
#    font (Nanum) so its screenshot shows Hangul rather than empty boxes.
need_apt=()
for pkg in chromium chromium-driver fonts-nanum; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
#    Not root: sudo, if it works without a password prompt. In CI (CI=true) a package that cannot be
#    installed stops set-up here: the browser tests would otherwise fail later (tests/conftest.py).
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root=()
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  fi
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ ${#as_root[@]} -gt 0 ]; }; then
    log "installing Debian packages: ${need_apt[*]}"
    "${as_root[@]}" apt-get update -qq >/dev/null
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  elif [ "${CI:-}" = true ]; then
    log "error: cannot install ${need_apt[*]}: not root, no password-less sudo, or no apt-get."
    log "       CI runs the browser tests; install them first: sudo apt-get install ${need_apt[*]}"
    exit 1
  else
    log "warning: cannot install ${need_apt[*]} (not root, no password-less sudo, or no apt-get);"
    log "         the browser tests will be skipped here (in CI, where CI=true, they fail instead)"
  fi
fi

# 3. Corpus sources for the embedded default corpus (Debian .debs and the konlpy wheel), cached.
"$VENV/bin/saessak" data fetch
log "done"
