#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the tests of runbook's "local" target (no Docker).
#
#   scripts/start-postgres.sh [DIR] [PORT]      (as root, on Debian)
#
#   DIR   cluster directory, default /var/tmp/runbook-pg (data in DIR/data, socket and log in DIR)
#   PORT  TCP port on 127.0.0.1, default 25431
#   RUNBOOK_PG_PASSWORD  password of the superuser "runbook" (default: runbook-secret)
#
# Installs the Debian "postgresql" package when no server binaries exist, runs initdb once, starts the
# server as the postgres user, and makes sure the superuser "runbook" and the database "shop" exist.
# Running it again is safe: a running cluster is only checked for its role and database.
# Progress goes to stderr; the last line on stdout is the DSN (without the password).
set -euo pipefail

DIR="${1:-/var/tmp/runbook-pg}"
PORT="${2:-25431}"
PASSWORD="${RUNBOOK_PG_PASSWORD:-runbook-secret}"
ROLE="runbook"
DATABASE="shop"
OS_USER="postgres"

log() { printf 'start-postgres: %s\n' "$*" >&2; }
die() { printf 'start-postgres: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "must run as root (it installs packages and switches to the $OS_USER user)"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "port must be a number, got '$PORT'"
[[ "$DIR" == /* ]] || DIR="$(pwd)/$DIR"
DATA="$DIR/data"

find_bindir() {
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -n "$found" && -x "$found/initdb" && -x "$found/pg_ctl" ]]; then
        printf '%s\n' "$found"
    fi
}

apt_install() {
    # Update the package lists only when installing without them fails.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 && return 0
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

install_postgresql() {
    log "no PostgreSQL server binaries under /usr/lib/postgresql; installing the Debian package"
    command -v apt-get >/dev/null || die "apt-get not found: install PostgreSQL server binaries by hand"
    # Keep the package from creating and starting its own cluster on port 5432 (as the official image does).
    apt_install postgresql-common
    if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
        sed -ri 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
            /etc/postgresql-common/createcluster.conf
    fi
    apt_install postgresql
}

BINDIR="$(find_bindir)"
if [[ -z "$BINDIR" ]]; then
    install_postgresql
    BINDIR="$(find_bindir)"
    [[ -n "$BINDIR" ]] || die "postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
fi
getent passwd "$OS_USER" >/dev/null || die "user '$OS_USER' does not exist (the postgresql package creates it)"

# fd 9 (the start lock, below) is closed for children: a postmaster that inherits it holds the lock forever.
as_pg() { (cd / && runuser -u "$OS_USER" -- "$@" 9>&-); }

# Never take over an unrelated directory (say /tmp): it must be new, empty, or one of ours.
if [[ -d "$DIR" && ! -e "$DIR/.start.lock" && ! -e "$DATA/PG_VERSION" ]] \
    && [[ -n "$(ls -A "$DIR" 2>/dev/null)" ]]; then
    die "$DIR exists, is not empty and holds no cluster of ours; pick a new directory"
fi
mkdir -p "$DIR"
chown "$OS_USER:" "$DIR"
chmod 0755 "$DIR"
as_pg test -w "$DIR" || die "$DIR is not writable by $OS_USER (is a parent directory private?)"

# Serialise concurrent starts of the same cluster (parallel test sessions).
exec 9>"$DIR/.start.lock"
flock 9

running() { as_pg "$BINDIR/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

if running; then
    log "cluster in $DATA already running"
else
    if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; then
        die "another server already listens on 127.0.0.1:$PORT (not the cluster in $DATA)"
    fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "initdb $DATA ($("$BINDIR/postgres" --version))"
        as_pg "$BINDIR/initdb" -D "$DATA" -U "$OS_USER" -E UTF8 --locale=C \
            --auth-local=peer --auth-host=scram-sha-256 >"$DIR/initdb.log" 2>&1 \
            || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
        printf "\ninclude_if_exists = 'runbook.conf'\n" >>"$DATA/postgresql.conf"
        # The OS user postgres administers through the socket; everybody else uses a password.
        cat >"$DATA/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
EOF
        chown "$OS_USER:" "$DATA/pg_hba.conf"
    fi
    # Rewritten on every start so that a new PORT applies to an existing cluster.
    cat >"$DATA/runbook.conf" <<EOF
# Written by scripts/start-postgres.sh; throwaway test cluster, durability traded for speed.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    chown "$OS_USER:" "$DATA/runbook.conf"
    log "starting PostgreSQL on 127.0.0.1:$PORT (log: $DIR/postgres.log)"
    as_pg "$BINDIR/pg_ctl" start -D "$DATA" -l "$DIR/postgres.log" -w -t 60 >/dev/null \
        || { tail -n 20 "$DIR/postgres.log" >&2 || true; die "pg_ctl start failed"; }
fi

# Create or update the role and the database. The password travels as a psql variable on stdin
# (:'pw' quotes it), so it never appears in argv.
as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -v pw="$PASSWORD" -v role="$ROLE" -v db="$DATABASE" \
    -h "$DIR" -p "$PORT" -d postgres >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN SUPERUSER PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL

log "ready: superuser $ROLE, database $DATABASE, socket dir $DIR"
printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$ROLE" "$PORT" "$DATABASE"
