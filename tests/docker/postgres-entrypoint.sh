#!/usr/bin/env bash
# PostgreSQL entrypoint for the locally built runbook-test image (installed as
# /usr/local/bin/postgres-entrypoint by scripts/build-images.sh).
#
# It mimics the parts of the official `postgres` image that runbook relies on, because zero-config
# runbook reads the db container's POSTGRES_* environment and runs `psql`/`pg_dump` in it:
#   - first start with an empty $PGDATA: initdb with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB,
#     scram-sha-256 for TCP, trust for the local unix socket (so `docker exec ... psql` needs no
#     password), then run /docker-entrypoint-initdb.d/*.sql|*.sh if any;
#   - then `exec postgres` in the foreground as PID 1 so `docker stop` signals reach the postmaster.
# Unlike the official image it listens on 127.0.0.1 only: test stacks use `network_mode: host` and
# must never open a port on another address.
#
# Extra arguments are passed to postgres (e.g. `postgres-entrypoint -c log_statement=all`); a leading
# literal `postgres` is accepted and dropped, like `command: postgres -c ...` in official-image stacks.
set -euo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGPORT=${PGPORT:-5432}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
SOCKET_DIR=/var/run/postgresql
LISTEN_ADDRESSES=127.0.0.1

log() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }
die() { printf 'postgres-entrypoint: ERROR: %s\n' "$*" >&2; exit 1; }

if [ "${1:-}" = postgres ]; then
    shift
fi

# --- as root: prepare directories, then re-exec this script as the postgres user -----------------
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$SOCKET_DIR"
    # A fresh named volume is owned by root; initdb insists on an owner-only data directory.
    # (find instead of chown -R: a restart with a big cluster should not rewrite every inode.)
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    chown postgres:postgres "$SOCKET_DIR"
    chmod 2775 "$SOCKET_DIR"
    export HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres
    # setpriv (util-linux, always present) drops privileges without forking, so postgres stays PID 1.
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi

# --- first start: create the cluster, the role and the database ------------------------------------
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        die "database is uninitialized and POSTGRES_PASSWORD is not set"
    fi
    log "initializing $PGDATA for user '$POSTGRES_USER', database '$POSTGRES_DB'"

    # Password through a private temp file, never on a command line (visible in `ps`).
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    # Like the official image: any TCP client may try, but must present the password.
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

    # A temporary server on the unix socket only, so nothing (healthchecks, tests) can connect over
    # TCP before the database exists; pg_isready against 127.0.0.1 therefore means "fully ready".
    pg_ctl --pgdata="$PGDATA" --wait --silent \
        -o "-c listen_addresses='' -p $PGPORT -c unix_socket_directories=$SOCKET_DIR" start

    psql_init=(psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --host="$SOCKET_DIR" --port="$PGPORT"
        --username="$POSTGRES_USER" --no-password)
    if [ "$POSTGRES_DB" != postgres ]; then
        # psql's :"var" quotes the name as an identifier, whatever characters it holds.
        "${psql_init[@]}" --dbname=postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi

    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) log "running $f"; "${psql_init[@]}" --dbname="$POSTGRES_DB" -f "$f" ;;
            *.sh) log "running $f"; bash "$f" ;;
            *) log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob

    pg_ctl --pgdata="$PGDATA" --wait --silent -m fast stop
    log "initialization complete"
fi

# --- run ---------------------------------------------------------------------------------------------
log "starting postgres on $LISTEN_ADDRESSES:$PGPORT"
exec postgres -D "$PGDATA" -p "$PGPORT" \
    -c listen_addresses="$LISTEN_ADDRESSES" \
    -c unix_socket_directories="$SOCKET_DIR" \
    "$@"
