#!/usr/bin/env bash
# The test command (README). Runs set-up, then the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Exit code 5 means pytest collected no tests: that must fail, not pass silently (it does: 5 != 0).
exec .venv/bin/python -m pytest "$@"
