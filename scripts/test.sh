#!/usr/bin/env bash
# The test command: installs and starts everything the tests need on a fresh Debian machine (as root),
# then runs the whole suite. Safe to run again: every step reuses what is already there.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${RUNBOOK_VENV:-$ROOT/.venv}

step() { printf '\n== %s\n' "$*"; }

step "PostgreSQL on 127.0.0.1:25431 for the local-target tests"
bash scripts/start-postgres.sh /var/tmp/runbook-pg 25431

if [ "${RUNBOOK_SKIP_DOCKER:-0}" != 1 ]; then
  step "Docker engine and the local test image"
  bash scripts/install-docker.sh
  bash scripts/build-images.sh
fi

step "Python environment in $VENV"
bash scripts/setup-venv.sh "$VENV" >/dev/null

step "ruff"
"$VENV/bin/ruff" check runbook tests scripts

step "import-linter: the layers import only downwards"
"$VENV/bin/lint-imports"

step "pytest"
export RUNBOOK_TEST_PG_PORT=25431
# Two workers, each running one whole test module at a time (--dist loadfile): every integration module's
# Compose stack has its own loopback port and project, and every local-target test its own database, so
# modules run side by side. --no-loadscope-reorder keeps the collection order, in which
# tests/integration/conftest.py puts the longest modules first. RUNBOOK_TEST_WORKERS=0 runs serially.
exec "$VENV/bin/pytest" -p no:cacheprovider -n "${RUNBOOK_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
