#!/usr/bin/env bash
# Create (or update) the project's virtualenv with runbook installed as a user gets it: `pip install .`.
#   bash scripts/setup-venv.sh [--no-test] [VENV]   (default: .venv at the top of the checkout)
# --no-test leaves out the test tools (pytest, ruff, Django, Alembic): what the demo needs.
# On a fresh Debian (as root) it first installs python3 and python3-venv when `python3 -m venv` cannot work.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="[test]"
if [ "${1:-}" = --no-test ]; then
  extras=""
  shift
fi
VENV=${1:-${RUNBOOK_VENV:-$(pwd)/.venv}}
# Debian splits venv's ensurepip into python3-venv; without it `python3 -m venv` fails half-way.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup-venv: installing python3 and python3-venv" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
  else
    echo "setup-venv: python3 with the venv module is needed (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
  fi
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "setup-venv: runbook needs Python 3.11 or newer; python3 is $(python3 -V 2>&1)" >&2; exit 1; }
# pip, not python: a venv made while ensurepip was missing has a python and no pip.
if [ ! -x "$VENV/bin/pip" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
fi
# Non-editable on purpose: the tests and the demo drive the installed `runbook`, not the source tree.
"$VENV/bin/pip" install -q ".$extras" >&2
"$VENV/bin/pip" install -q --no-deps --force-reinstall . >&2
echo "$VENV"
