#!/usr/bin/env bash
# Bring runbook's Docker Compose test stack (compose.test.yml) up from nothing, or tear it down.
#
#   scripts/stack.sh up       install/start Docker if needed, build the image if needed, start the
#                             stack and wait until PostgreSQL accepts connections on 127.0.0.1:25432
#   scripts/stack.sh down     stop and remove containers and the data volume (`down -v`)
#   scripts/stack.sh status   show the services and whether the database answers
#
# The Compose project is always `runbook-test` (-p): docker-compose v1 does not accept a top-level
# `name:` in the file. Containers are therefore runbook-test_db_1 / runbook-test_backend_1 with
# Compose v1 and runbook-test-db-1 / runbook-test-backend-1 with v2; look them up with
# `<compose> -p runbook-test -f compose.test.yml ps -q db` rather than by name.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPOSE_FILE=$ROOT_DIR/compose.test.yml
PROJECT=runbook-test
DB_PORT=25432
DB_USER=runbook
DB_NAME=shop
WAIT_SECONDS=${STACK_WAIT_SECONDS:-90}

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

# Compose v2 plugin if present, else v1 (the only one on the current test machines).
COMPOSE=()
compose() {
    if [ "${#COMPOSE[@]}" -eq 0 ]; then
        if docker compose version >/dev/null 2>&1; then
            COMPOSE=(docker compose)
        elif command -v docker-compose >/dev/null; then
            COMPOSE=(docker-compose)
        else
            die "neither 'docker compose' nor 'docker-compose' is installed (run scripts/install-docker.sh)"
        fi
    fi
    "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}

# By Compose labels (same in v1 and v2) through the docker CLI: ~50 ms, where `docker-compose ps -q`
# (v1) takes the best part of a second.
container_of() {
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n 1
}

db_ready() {
    local cid=$1
    docker exec "$cid" pg_isready -q -h 127.0.0.1 -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" 2>/dev/null
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_up() {
    "$ROOT_DIR/scripts/install-docker.sh"
    "$ROOT_DIR/scripts/build-images.sh"

    # With host networking a foreign server already on the port would make the db container fail
    # to bind while pg_isready below happily answers for the wrong server. Refuse instead.
    local db_cid
    db_cid=$(container_of db)
    if { [ -z "$db_cid" ] || [ "$(docker inspect -f '{{.State.Running}}' "$db_cid")" != true ]; } &&
        port_in_use "$DB_PORT"; then
        die "127.0.0.1:$DB_PORT is already in use by something outside this stack"
    fi

    compose up -d --remove-orphans

    db_cid=$(container_of db)
    [ -n "$db_cid" ] || die "db container was not created"
    local i
    for ((i = 0; i < WAIT_SECONDS * 4; i++)); do
        if db_ready "$db_cid"; then
            log "up: db $(docker inspect -f '{{.Name}}' "$db_cid" | tr -d /) accepts connections on 127.0.0.1:$DB_PORT," \
                "backend $(docker inspect -f '{{.Name}}' "$(container_of backend)" | tr -d /)"
            return 0
        fi
        if [ "$(docker inspect -f '{{.State.Running}}' "$db_cid")" != true ]; then
            docker logs --tail 30 "$db_cid" >&2 || true
            die "db container exited"
        fi
        sleep 0.25
    done
    docker logs --tail 30 "$db_cid" >&2 || true
    die "db did not accept connections within ${WAIT_SECONDS}s"
}

cmd_down() {
    if ! docker info >/dev/null 2>&1; then
        log "docker engine not running: nothing to take down"
        return 0
    fi
    compose down -v --remove-orphans --timeout 10
    log "down"
}

cmd_status() {
    docker info >/dev/null 2>&1 || die "docker engine not running"
    compose ps
    local db_cid
    db_cid=$(container_of db)
    if [ -n "$db_cid" ] && db_ready "$db_cid"; then
        log "db accepts connections on 127.0.0.1:$DB_PORT"
    else
        log "db is not accepting connections"
        return 1
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
