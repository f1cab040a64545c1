#!/usr/bin/env bash
# The demo: a Compose stack whose Django history is broken, repaired by runbook, the report shown.
# Installs what it needs (Docker engine, the local image, a virtualenv without the test tools); safe to
# run again: every run starts from a fresh stack.
#   bash scripts/demo.sh          (stack left running in /var/tmp/runbook-demo; `bash scripts/demo.sh down` stops it)
# RUNBOOK_DEMO_DIR moves the stack; RUNBOOK_DEMO_PROJECT names its Compose project (default runbook-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=${RUNBOOK_DEMO_DIR:-/var/tmp/runbook-demo}
PROJECT=${RUNBOOK_DEMO_PROJECT:-runbook-demo}
PORT=25472

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
compose() {
  # Always -p: the containers are found by this project label, wherever the directory is.
  if docker compose version >/dev/null 2>&1; then docker compose -p "$PROJECT" "$@"; else docker-compose -p "$PROJECT" "$@"; fi
}
container() {
  docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1"
}
port_in_use() {
  "$VENV/bin/python" -c 'import socket, sys; s = socket.socket(); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

if [ "${1:-}" = down ]; then
  if [ -f "$DEMO/docker-compose.yml" ]; then (cd "$DEMO" && compose down -v); fi
  exit 0
fi

say "Installing: Docker engine, the local image, runbook in .venv"
bash scripts/install-docker.sh
bash scripts/build-images.sh
VENV=$(bash scripts/setup-venv.sh --no-test)
RUNBOOK="$VENV/bin/runbook"

say "A demo stack in $DEMO: PostgreSQL (db) and a Django 5.2 shop (backend) on 127.0.0.1:$PORT"
mkdir -p "$DEMO"
# The previous run's stack goes first, so that whatever still listens on the port is someone else's.
if [ -f "$DEMO/docker-compose.yml" ]; then (cd "$DEMO" && compose down -v >/dev/null 2>&1) || true; fi
if port_in_use "$PORT"; then
  die "127.0.0.1:$PORT is in use by another program; stop it (ss -ltnp 'sport = :$PORT' shows which) and run again"
fi
rm -rf "$DEMO/app" "$DEMO/.runbook"
cp -r tests/projects/shop "$DEMO/app"
"$VENV/bin/python" - "$ROOT/compose.test.yml" "$DEMO/docker-compose.yml" "$PORT" <<'PY'
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))
spec["services"]["db"]["environment"]["PGPORT"] = sys.argv[3]
spec["services"]["backend"]["environment"]["DB_PORT"] = sys.argv[3]
spec["services"]["backend"]["volumes"] = ["./app:/srv/app"]
open(sys.argv[2], "w").write(yaml.safe_dump(spec, sort_keys=False))
PY
# So that a bare `runbook ...` in this directory finds the same project as `compose -p` above.
printf 'compose: {project: %s}\n' "$PROJECT" > "$DEMO/runbook.yml"
cd "$DEMO"
compose up -d
backend=$(container backend)
db=$(container db)
[ -n "$backend" ] && [ -n "$db" ] || die "the containers of project $PROJECT did not start; see: docker-compose -p $PROJECT logs"
ready=no
for _ in $(seq 90); do
  if docker exec "$db" pg_isready -q -h 127.0.0.1 -p "$PORT"; then ready=yes; break; fi
  sleep 1
done
[ "$ready" = yes ] || die "PostgreSQL in the db container was not ready after 90 s; see: docker logs $db"
docker exec "$backend" python manage.py migrate --noinput >/dev/null
docker exec "$backend" python manage.py seed --rows 200

say "Breaking it as in the InconsistentMigrationHistory guide: customer.0001_initial's row is gone"
docker exec "$db" psql -q -U runbook -d shop -c \
  "DELETE FROM django_migrations WHERE app = 'customer'"
echo "\$ docker-compose exec backend python manage.py migrate"
docker exec "$backend" python manage.py migrate --noinput 2>&1 | tail -n 1 || true

say "runbook diagnose"
# Exit 3 means it found something: the expected answer here. Anything else is a real failure.
rc=0
"$RUNBOOK" diagnose || rc=$?
[ "$rc" = 3 ] || die "runbook diagnose exited $rc (3 was expected: a broken history)"
rc=0
findings=$("$RUNBOOK" diagnose --json) || rc=$?
[ "$rc" = 3 ] || die "runbook diagnose --json exited $rc (3 was expected)"
fix=$(printf '%s' "$findings" | "$VENV/bin/python" -c \
  'import json, sys; found = json.load(sys.stdin)["findings"]; print(found[0]["command"] if found else "")')
[ -n "$fix" ] || die "diagnose found nothing to repair"

say "$fix"
# Exactly the line diagnose printed, run with the installed runbook.
read -ra argv <<< "$fix"
rc=0
"$VENV/bin/${argv[0]}" "${argv[@]:1}" || rc=$?

say "The report"
report=$(ls -t .runbook/reports/*.md 2>/dev/null | head -n 1 || true)
[ -n "$report" ] || die "the run wrote no report (exit $rc)"
echo "$DEMO/$report"
# Everything above the commands' full output (which the run already echoed).
sed -n '/^## Output/q; p' "$report"
[ "$rc" = 0 ] || die "the repair exited $rc; the report above says why"

say "runbook diagnose, again"
rc=0
"$RUNBOOK" diagnose || rc=$?
case $rc in
  0) ;;
  3) die "the history is still not healthy after the repair (see the report above)" ;;
  *) die "runbook diagnose exited $rc" ;;
esac
say "Done. The stack is still up: cd $DEMO && . $VENV/bin/activate && runbook snapshots"
env=""
[ -z "${RUNBOOK_DEMO_DIR:-}" ] || env+="RUNBOOK_DEMO_DIR=$DEMO "
[ -z "${RUNBOOK_DEMO_PROJECT:-}" ] || env+="RUNBOOK_DEMO_PROJECT=$PROJECT "
echo "Stop it with: ${env}bash $ROOT/scripts/demo.sh down"
