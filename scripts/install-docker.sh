#!/usr/bin/env bash
# Make sure a Docker engine, docker-compose (v1) and debootstrap are available, as root.
#
# Idempotent: on a machine where dockerd already answers and the packages are installed this is a
# quick no-op. On a fresh CI machine it installs the Debian packages and starts dockerd in the
# background (no systemd there), with networking features off: every test service uses
# `network_mode: host`, so dockerd needs no bridge, no iptables rules and no masquerading (and the
# CI sandbox would not allow them anyway).
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/runbook-dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/runbook-dockerd.pid}
DOCKERD_WAIT_SECONDS=${DOCKERD_WAIT_SECONDS:-60}

log() { printf 'install-docker: %s\n' "$*" >&2; }
die() { printf 'install-docker: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages and starts dockerd)"

# --- packages --------------------------------------------------------------------------------------
# Only touch apt when something is missing: `apt-get update` alone costs several seconds.
missing=()
for pkg in docker.io docker-compose debootstrap; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Skip the index refresh when the lists are already there and recent (< 1 day), otherwise
    # refresh them once; a retry after a stale-index 404 covers the remaining case.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]; then
        apt-get update -qq
    fi
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi

# --- engine ----------------------------------------------------------------------------------------
docker_ready() { docker info >/dev/null 2>&1; }

if docker_ready; then
    exit 0
fi

# A dockerd we started earlier may still be booting: wait for it rather than start a second one
# (two daemons on one /var/lib/docker corrupt each other's state).
if [ -s "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
    log "dockerd (pid $(cat "$DOCKERD_PIDFILE")) is running but not answering yet; waiting"
elif pgrep -x dockerd >/dev/null 2>&1; then
    log "a dockerd not started by this script is running; waiting for it to answer"
else
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")" "$(dirname "$DOCKERD_PIDFILE")"
    # dockerd writes its own pid file (--pidfile) and refuses to start if a live one exists.
    # setsid + nohup: the daemon must outlive this shell and the CI step that ran it.
    setsid nohup dockerd \
        --bridge=none --iptables=false --ip-masq=false \
        --pidfile="$DOCKERD_PIDFILE" \
        >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi

for ((i = 0; i < DOCKERD_WAIT_SECONDS * 2; i++)); do
    if docker_ready; then
        log "dockerd is ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        exit 0
    fi
    sleep 0.5
done

log "last lines of $DOCKERD_LOG:"
tail -n 20 "$DOCKERD_LOG" >&2 || true
die "dockerd did not answer within ${DOCKERD_WAIT_SECONDS}s (see $DOCKERD_LOG)"
