#!/usr/bin/env bash
# The demo: a Compose stack whose Django history is broken, repaired by runbook, the report shown.
# Installs what it needs (Docker engine, the local image, a virtualenv); safe to run again.
#   bash scripts/demo.sh            (stack left running in /var/tmp/runbook-demo; `bash scripts/demo.sh down` stops it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=${RUNBOOK_DEMO_DIR:-/var/tmp/runbook-demo}
PORT=55472
export NO_COLOR=${NO_COLOR:-}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

if [ "${1:-}" = down ]; then
  [ -d "$DEMO" ] && (cd "$DEMO" && compose down -v)
  exit 0
fi

say "Installing: Docker engine, the local image, runbook in .venv"
bash scripts/install-docker.sh
bash scripts/build-images.sh
VENV=$(bash scripts/setup-venv.sh)
RUNBOOK="$VENV/bin/runbook"

say "A demo stack in $DEMO: PostgreSQL (db) and a Django 5.2 shop (backend) on 127.0.0.1:$PORT"
mkdir -p "$DEMO"
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
cd "$DEMO"
compose down -v >/dev/null 2>&1 || true
compose up -d
backend=$(docker ps -q --filter label=com.docker.compose.project=runbook-demo --filter label=com.docker.compose.service=backend)
db=$(docker ps -q --filter label=com.docker.compose.project=runbook-demo --filter label=com.docker.compose.service=db)
for _ in $(seq 90); do
  docker exec "$db" pg_isready -q -h 127.0.0.1 -p "$PORT" && break
  sleep 1
done
docker exec "$backend" python manage.py migrate --noinput >/dev/null
docker exec "$backend" python manage.py seed --rows 200

say "Breaking it as in the InconsistentMigrationHistory guide: customer.0001_initial's row is gone"
docker exec "$db" psql -q -U runbook -d shop -c \
  "DELETE FROM django_migrations WHERE app = 'customer'"
echo "\$ docker compose exec backend python manage.py migrate"
docker exec "$backend" python manage.py migrate --noinput 2>&1 | tail -n 1 || true

say "runbook diagnose"
"$RUNBOOK" diagnose || true
# diagnose exits 3 when it finds something: that is the expected answer here.
fix=$({ "$RUNBOOK" diagnose --json || true; } | "$VENV/bin/python" -c \
  'import json, sys; found = json.load(sys.stdin)["findings"]; print(found[0]["command"] if found else "")')
[ -n "$fix" ] || { echo "demo: diagnose found nothing to repair" >&2; exit 1; }

say "$fix"
# Exactly the line diagnose printed, run with the installed runbook.
read -ra argv <<< "$fix"
"$VENV/bin/${argv[0]}" "${argv[@]:1}"

say "runbook diagnose, again"
"$RUNBOOK" diagnose

say "The report"
report=$(ls -t .runbook/reports/*.md | head -n 1)
echo "$DEMO/$report"
sed -n '1,/^## Output/p' "$report"
