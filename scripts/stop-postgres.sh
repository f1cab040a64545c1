#!/usr/bin/env bash
# Stop the throwaway cluster started by scripts/start-postgres.sh.
#
#   scripts/stop-postgres.sh [DIR]      (as root; DIR defaults to /var/tmp/runbook-pg)
#
# Fast shutdown (open sessions are disconnected). The data stays in DIR; delete DIR to throw it away.
# Stopping a cluster that is not running is not an error.
set -euo pipefail

DIR="${1:-/var/tmp/runbook-pg}"
OS_USER="postgres"
[[ "$DIR" == /* ]] || DIR="$(pwd)/$DIR"
DATA="$DIR/data"

log() { printf 'stop-postgres: %s\n' "$*" >&2; }
die() { printf 'stop-postgres: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "must run as root"
[[ -f "$DATA/PG_VERSION" ]] || { log "no cluster in $DATA; nothing to stop"; exit 0; }

# Use the binaries of the cluster's own major version.
BINDIR="/usr/lib/postgresql/$(cat "$DATA/PG_VERSION")/bin"
[[ -x "$BINDIR/pg_ctl" ]] || BINDIR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[[ -x "$BINDIR/pg_ctl" ]] || die "pg_ctl not found under /usr/lib/postgresql/*/bin"

pg_ctl() { (cd / && runuser -u "$OS_USER" -- "$BINDIR/pg_ctl" "$@"); }

if pg_ctl status -D "$DATA" >/dev/null 2>&1; then
    pg_ctl stop -D "$DATA" -m fast -w -t 60 >/dev/null
    log "stopped the cluster in $DATA"
else
    log "cluster in $DATA is not running"
fi
