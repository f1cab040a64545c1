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

step "pytest"
export RUNBOOK_TEST_PG_PORT=25431
# Two workers, one test module each at a time: every module's Compose stack has its own loopback port and
# project, so modules run side by side. The two longest modules are named first so that they start first.
if [ "$#" -eq 0 ]; then
  set -- tests/integration/test_corpus_repairs.py tests/integration/test_atomic_faults.py tests
fi
exec "$VENV/bin/pytest" -p no:cacheprovider -n "${RUNBOOK_TEST_WORKERS:-2}" --dist loadfile "$@"
