#!/usr/bin/env bash
# Build the single local image used by both test services (`db` and `backend` in compose.test.yml):
# Debian bookworm + PostgreSQL 15 + a Python venv (/opt/venv) with Django 5.2, Alembic, SQLAlchemy 2,
# psycopg 3, and Wagtail, django-oscar and django-allauth for the corpus project.
#
# No container registry is reachable on the test machines, so the image is made from scratch:
#   debootstrap (Debian mirror from this machine's apt sources) -> pip install in a chroot
#   -> `tar | docker import`.
#
# Image name: runbook-test:<TAG> and runbook-test:latest, where TAG is the first 12 hex digits of the
# sha256 of this script and tests/docker/postgres-entrypoint.sh. If runbook-test:<TAG> already exists
# nothing is built (a second run takes well under a second); editing either file changes TAG and
# triggers a rebuild. RUNBOOK_REBUILD=1 forces a rebuild.
#
# Environment knobs:
#   RUNBOOK_DEBIAN_MIRROR   Debian mirror URL (default: the bookworm entry of the apt sources)
#   RUNBOOK_REBUILD=1       rebuild even if the tagged image exists
#   RUNBOOK_BUILD_TMPFS=0   build on disk instead of a tmpfs mounted over the build dir
set -euo pipefail

IMAGE=runbook-test
SUITE=bookworm                      # PostgreSQL 15, Python 3.11
PG_MAJOR=15
VENV=/opt/venv
PY_PACKAGES=('Django>=5.2,<5.3' 'alembic>=1.13' 'SQLAlchemy>=2' 'psycopg[binary]>=3.1'
             # The real-world corpus (tests/projects/corpus): hundreds of third-party migrations, squashed
             # ones, data migrations. django-haystack (oscar's search) is pinned: its newest wheel
             # (3.2.dev0, which pip would pick) imports django.utils.datetime_safe, gone since Django 5.0;
             # 3.3.0 works with 5.2 but is published as an sdist only (pure Python, built by pip).
             'wagtail==8.0.1' 'django-oscar==4.2.1' 'django-allauth==65.22.1' 'django-haystack==3.3.0')
# Wheels only, except these pure-Python packages that publish no wheel of the pinned version.
PIP_SDIST_ONLY=django-haystack
# Depends only (debootstrap does not follow Recommends). python3-venv brings ensurepip, so the venv
# gets its own pip without python3-pip; procps for `ps` when debugging a container.
DEB_PACKAGES=postgresql-$PG_MAJOR,postgresql-client-$PG_MAJOR,python3,python3-venv,ca-certificates,procps
# Keeps downloaded .debs between builds on this machine (checksums are verified on reuse).
DEB_CACHE=/var/cache/runbook-debootstrap
LOCK=/var/lock/runbook-build-images.lock

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENTRYPOINT_SRC=$ROOT_DIR/tests/docker/postgres-entrypoint.sh

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { printf 'build-images: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
command -v docker >/dev/null || die "docker CLI missing: run scripts/install-docker.sh first"
docker info >/dev/null 2>&1 || die "docker engine not answering: run scripts/install-docker.sh first"
[ -f "$ENTRYPOINT_SRC" ] || die "missing $ENTRYPOINT_SRC"

TAG=$(cat "${BASH_SOURCE[0]}" "$ENTRYPOINT_SRC" | sha256sum | cut -c1-12)

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Point :latest at :TAG (cheap, and repairs a :latest left behind by an older build).
tag_latest() {
    if [ "$(docker image inspect -f '{{.Id}}' "$IMAGE:$TAG")" != \
         "$(docker image inspect -f '{{.Id}}' "$IMAGE:latest" 2>/dev/null || true)" ]; then
        docker tag "$IMAGE:$TAG" "$IMAGE:latest"
    fi
}

# Fast path before taking the lock: the common case is "already built".
if [ "${RUNBOOK_REBUILD:-0}" != 1 ] && image_exists "$IMAGE:$TAG"; then
    tag_latest
    log "up to date: $IMAGE:$TAG (= $IMAGE:latest)"
    exit 0
fi

# Serialize concurrent builds (several engineers/CI jobs on one machine); whoever waits will find
# the image built by the first one.
exec 9>"$LOCK"
if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
fi
if [ "${RUNBOOK_REBUILD:-0}" != 1 ] && image_exists "$IMAGE:$TAG"; then
    tag_latest
    log "up to date: $IMAGE:$TAG (built concurrently)"
    exit 0
fi

# --- Debian mirror -----------------------------------------------------------------------------------
# The first enabled `deb` source that carries the plain $SUITE suite (not -updates/-security), from
# one-line *.list files or deb822 *.sources files. Never a hard-coded host: CI machines may only
# reach their own mirror.
detect_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$SUITE" '
            /^[[:space:]]*deb[[:space:]]/ {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }   # skip [options]
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822: blank-line separated stanzas; RS="" makes each stanza one record.
        awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (n = 1; n <= NF; n++) {
                    line = $n
                    if (line ~ /^[[:space:]]*#/) continue
                    key = tolower(line); sub(/:.*/, "", key)
                    val = line; sub(/^[^:]*:[[:space:]]*/, "", val)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                if (enabled == "no" || (" " types " ") !~ / deb /) next
                if ((" " suites " ") ~ (" " suite " ")) { split(uris, u, /[[:space:]]+/); print u[1]; exit }
            }' "$f"
    done
}
MIRROR=${RUNBOOK_DEBIAN_MIRROR:-$(detect_mirror | head -n 1)}
[ -n "$MIRROR" ] || die "no '$SUITE' Debian mirror in /etc/apt/sources.list{,.d}; set RUNBOOK_DEBIAN_MIRROR"
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/install-docker.sh first"

# --- pip settings for the chroot -----------------------------------------------------------------------
# Reuse the host's package index (pip config files and PIP_* variables, as merged by `pip config
# list`), keeping only http(s) URLs: file:// indexes and find-links directories exist on the host,
# not in the chroot. A custom CA bundle is copied in so a TLS-intercepting proxy keeps working.
declare -a PIP_ENV=()
HOST_PIP_CERT=""
host_pip_settings() {
    local py line key val url index="" extra="" trusted=""
    py=$(command -v python3 || true)
    [ -n "$py" ] && "$py" -m pip --version >/dev/null 2>&1 || return 0
    while IFS= read -r line; do
        key=${line%%=*}; key=${key#*.}          # global.index-url / :env:.index-url -> index-url
        val=${line#*=}; val=${val#\'}; val=${val%\'}
        case "$key" in
            index-url|extra-index-url)
                for url in $val; do
                    case "$url" in
                        http://*|https://*)
                            if [ "$key" = index-url ]; then index=$url; else extra="$extra $url"; fi ;;
                    esac
                done ;;
            trusted-host) trusted="$trusted $val" ;;
            cert) HOST_PIP_CERT=$val ;;
        esac
    done < <("$py" -m pip config list 2>/dev/null)
    [ -n "$index" ] && PIP_ENV+=("PIP_INDEX_URL=$index")
    [ -n "${extra# }" ] && PIP_ENV+=("PIP_EXTRA_INDEX_URL=${extra# }")
    [ -n "${trusted# }" ] && PIP_ENV+=("PIP_TRUSTED_HOST=${trusted# }")
    return 0
}
host_pip_settings
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_DEFAULT_TIMEOUT; do
    [ -n "${!v:-}" ] && PIP_ENV+=("$v=${!v}")
done

# --- build ---------------------------------------------------------------------------------------------
log "building $IMAGE:$TAG (mirror $MIRROR)"
T_TOTAL=$(now)
mkdir -p /var/tmp "$DEB_CACHE"
WORK=$(mktemp -d /var/tmp/runbook-build.XXXXXX)
ROOTFS=$WORK/rootfs
TMPFS_MOUNTED=0

cleanup() {
    local rc=$?
    # Unmount anything left inside the rootfs (a failed debootstrap or chroot step), deepest first.
    if [ -d "$WORK" ]; then
        awk -v w="$WORK" '$2 ~ "^" w "/" { print $2 }' /proc/mounts | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
        if [ "$TMPFS_MOUNTED" = 1 ]; then umount -l "$WORK" 2>/dev/null || true; fi
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# dpkg fsyncs every file it unpacks; on a tmpfs those syncs are free. The rootfs is ~0.5 GB and only
# lives until `docker import` has read it.
if [ "${RUNBOOK_BUILD_TMPFS:-1}" = 1 ] && mount -t tmpfs -o size=3g,mode=0755 runbook-build "$WORK" 2>/dev/null; then
    TMPFS_MOUNTED=1
fi

t=$(now)
debootstrap --variant=minbase --include="$DEB_PACKAGES" --cache-dir="$DEB_CACHE" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK.debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK.debootstrap.log" >&2
    die "debootstrap failed (full log: $WORK.debootstrap.log)"
}
rm -f "$WORK.debootstrap.log"
log "debootstrap: $(since "$t") s"

# Files the image needs from this repo.
install -m 0755 "$ENTRYPOINT_SRC" "$ROOTFS/usr/local/bin/postgres-entrypoint"
# The Debian package created a "main" cluster (pg_createcluster in postinst); the entrypoint makes
# its own in $PGDATA, so drop it. An empty, postgres-owned data dir in the image means a fresh named
# volume mounted there starts with the right owner.
rm -rf "$ROOTFS/var/lib/postgresql/$PG_MAJOR" "$ROOTFS/etc/postgresql/$PG_MAJOR"
chroot "$ROOTFS" install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
chroot "$ROOTFS" install -d -o postgres -g postgres -m 2775 /var/run/postgresql

t=$(now)
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"        # DNS for pip inside the chroot
if [ -n "$HOST_PIP_CERT" ] && [ -f "$HOST_PIP_CERT" ]; then
    cp -L "$HOST_PIP_CERT" "$ROOTFS/tmp/host-ca.crt"
    PIP_ENV+=("PIP_CERT=/tmp/host-ca.crt")
fi
mount -t proc proc "$ROOTFS/proc"
in_chroot() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore "${PIP_ENV[@]}" \
        chroot "$ROOTFS" "$@"
}
in_chroot python3 -m venv "$VENV"
in_chroot "$VENV/bin/pip" install --quiet --only-binary=:all: --no-binary="$PIP_SDIST_ONLY" "${PY_PACKAGES[@]}"
in_chroot "$VENV/bin/python" -c 'import django, alembic, sqlalchemy, psycopg; print("venv: Django", django.get_version(), "| alembic", alembic.__version__, "| SQLAlchemy", sqlalchemy.__version__, "| psycopg", psycopg.__version__)' >&2
umount "$ROOTFS/proc"
rm -f "$ROOTFS/tmp/host-ca.crt"
: >"$ROOTFS/etc/resolv.conf"     # docker provides its own at run time; do not bake in the host's DNS
log "pip: $(since "$t") s"

# Trim what a test container never reads: smaller tar, faster import (~680 MB -> ~370 MB).
# The JIT provider goes too: libLLVM + libz3 are ~135 MB, and PostgreSQL silently runs without JIT
# when llvmjit.so is absent (documented for jit_provider), which is what short test queries want.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/i18n "$ROOTFS"/var/log/*.log "$ROOTFS"/root/.cache \
    "$ROOTFS"/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit* "$ROOTFS"/usr/lib/postgresql/$PG_MAJOR/lib/bitcode \
    "$ROOTFS"/usr/lib/*-linux-gnu/libLLVM-*.so* "$ROOTFS"/usr/lib/*-linux-gnu/libz3.so*

t=$(now)
OLD_ID=$(docker image inspect -f '{{.Id}}' "$IMAGE:$TAG" 2>/dev/null || true)   # RUNBOOK_REBUILD=1
# --numeric-owner: ownership must be the rootfs's uids (postgres), not names mapped through the host.
tar --numeric-owner -C "$ROOTFS" --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -c . |
    docker import \
        --change "ENV PATH=$VENV/bin:/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV VIRTUAL_ENV=$VENV" \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PGDATA=/var/lib/postgresql/data' \
        --change "LABEL org.runbook.build-hash=$TAG" \
        --change 'CMD ["/usr/local/bin/postgres-entrypoint"]' \
        --message "runbook test image ($SUITE, PostgreSQL $PG_MAJOR, build $TAG)" \
        - "$IMAGE:$TAG" >/dev/null
log "import: $(since "$t") s"
tag_latest

# Drop images of older builds (other runbook-test tags, and the image a forced rebuild replaced);
# ones still used by a container stay.
docker image ls --format '{{.Repository}}:{{.Tag}}' "$IMAGE" | grep -vx -e "$IMAGE:$TAG" -e "$IMAGE:latest" |
    xargs -r docker image rm >/dev/null 2>&1 || true
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$IMAGE:$TAG")" ]; then
    docker image rm "$OLD_ID" >/dev/null 2>&1 || true
fi

log "built $IMAGE:$TAG (= $IMAGE:latest) in $(since "$T_TOTAL") s"
