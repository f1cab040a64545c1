#!/usr/bin/env bash
# Create (or update) the project's virtualenv with runbook installed as a user gets it: `pip install .`.
#   bash scripts/setup-venv.sh [VENV]      (default: .venv at the top of the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${RUNBOOK_VENV:-$(pwd)/.venv}}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
# Non-editable on purpose: the tests and the demo drive the installed `runbook`, not the source tree.
"$VENV/bin/pip" install -q ".[test]"
"$VENV/bin/pip" install -q --no-deps --force-reinstall .
echo "$VENV"
