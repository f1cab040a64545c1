"""Put a pg_dump archive back into a database, in one transaction, checked while it is read.

The dump goes into the db service on stdin. There `tee` hands it to pg_restore, whose script psql runs in
one transaction opened by the prelude (CLEAR_PUBLIC), and to sha256sum. COMMIT is sent only when
pg_restore read the whole archive and the sha256 of every byte it read is the manifest's: a damaged or
cut dump changes nothing, and no separate pass over the file is needed before the restore starts.

That needs a restore script with no transaction of its own. pg_restore writes one only around large
objects (BEGIN ... COMMIT, unless --single-transaction), and the snapshot records whether the dump has
any. A dump that has them, or a snapshot from before that record (manifest format 1), is restored with
--single-transaction, whose last line is pg_restore's own COMMIT: its sha256 must then be checked before.

pg_restore restores one table after another here. Its parallel mode (-j) opens a connection, and so a
transaction, per worker, and needs an archive with data offsets, which a dump streamed through a pipe
has not: it would give up the one transaction that lets a failed restore leave the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from runbook.artifacts.snapshot_dump import first_error, pg_client
from runbook.artifacts.snapshot_manifest import DUMP
from runbook.database.postgres import Database
from runbook.errors import RestoreFailed, SnapshotFailed
from runbook.progress import OnTransfer, Progress, Sampler, Transfer, human_size, no_progress, no_transfer
from runbook.targets.base import ExecResult, Target

# Runs first, in the restore's own transaction: without it, tables made after the snapshot would stay, and
# `--clean` would fail on anything of theirs that depends on a snapshotted object (a foreign key, a view).
# Extension members are left to the extension. The public schema itself (owner, grants) stays.
CLEAR_PUBLIC = r"""BEGIN;
SET LOCAL lock_timeout = '60s';
SET LOCAL statement_timeout = 0;
DO $runbook$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT format('DROP %s IF EXISTS public.%I CASCADE',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                  c.relname) AS stmt
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY c.relkind = 'S', c.relname
  LOOP
    EXECUTE r.stmt;
  END LOOP;
  FOR r IN
    SELECT format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure) AS stmt
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE r.stmt;
  END LOOP;
  FOR r IN
    SELECT format('DROP %s IF EXISTS %s CASCADE', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                  t.oid::regtype) AS stmt
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'c')
      AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                      AND d.objid = t.oid AND d.deptype = 'e')
  LOOP
    EXECUTE r.stmt;
  END LOOP;
END
$runbook$;"""


# `sh -c RESTORE_SCRIPT runbook-restore PRELUDE SHA256 LOADED_SQL [pg_restore options]`, the dump on stdin.
# An empty SHA256: --single-transaction, pg_restore opens with a BEGIN (inside ours: a warning, silenced
# here) and ends with the one COMMIT; ours then finds no transaction (silenced too). Otherwise COMMIT is
# ours, sent after the check and LOADED_SQL. On any failure a RAISE (or psql stopping at an error) makes
# the server roll it all back.
RESTORE_SCRIPT = r"""prelude=$1; expected=$2; loaded=$3; shift 3
fail() { printf '%s\n' "DO \$\$ BEGIN RAISE EXCEPTION 'runbook: $1'; END \$\$;"; }
if [ -z "$expected" ]; then
  {
    printf '%s\n' "$prelude" 'SET LOCAL client_min_messages = error;'
    if pg_restore --clean --if-exists --single-transaction "$@" --file=-; then
      printf '%s\n' 'SET client_min_messages = error;' 'COMMIT;'
    else
      fail 'pg_restore could not read the snapshot'
    fi
  } | psql -X -q -v ON_ERROR_STOP=1 --no-password
  exit
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/runbook-restore.XXXXXX") || exit 70
trap 'rm -rf "$dir"' EXIT
trap 'exit 143' HUP INT TERM
mkfifo -m 600 "$dir/sum" || exit 70
{
  printf '%s\n' "$prelude"
  sha256sum <"$dir/sum" >"$dir/sha256" &
  if tee "$dir/sum" | pg_restore --clean --if-exists "$@" --file=-; then
    wait $!
    if [ "$(cut -c1-64 "$dir/sha256")" = "$expected" ]; then
      printf '%s\n' '\pset tuples_only on' '\pset format unaligned' "$loaded" 'COMMIT;'
    else
      fail 'database.dump sha256 differs'
    fi
  else
    fail 'pg_restore could not read the snapshot'
  fi
} | psql -X -q -v ON_ERROR_STOP=1 --no-password
"""
DAMAGED = "runbook: database.dump sha256 differs"
# Read just before COMMIT: the rows the server inserted into each public table in this transaction. CLEAR_PUBLIC
# dropped every public table at its start, so each one now was created and filled by the restore: these are
# its rows, counted by the server as they were loaded, with no pass over them (and none, after COMMIT, that
# would set the hint bits of every row). Nothing when the server keeps no counts (track_counts off).
LOADED_SQL = ("SELECT 'runbook-loaded ' || coalesce(json_object_agg(relname, n_tup_ins - n_tup_del), '{}')"
              " FROM pg_stat_xact_user_tables WHERE schemaname = 'public' AND current_setting('track_counts')::bool;")


def checked_while_read(database: dict[str, object] | None) -> bool:
    """Whether a snapshot's dump can be restored with its sha256 checked as it is read (see above)."""
    return bool(database) and database.get("transaction_blocks") == 0  # type: ignore[union-attr]


def _is_superuser(db: Database) -> bool:
    rows = db.query("SELECT CASE WHEN rolsuper THEN 1 ELSE 0 END FROM pg_roles WHERE rolname = current_user")[1]
    return bool(rows) and int(rows[0][0]) == 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_dump(target: Target, db: Database, dump: Path, *, sha256: str | None = None,
              progress: Progress = no_progress, on_transfer: OnTransfer = no_transfer) -> dict[str, int] | None:
    """Replace db's public schema with a pg_dump archive in one transaction, streamed through the db service.

    With sha256 (a dump whose script has no transaction of its own), the restore commits only if the bytes
    pg_restore read have that sha256, and returns the rows it loaded into each public table (see
    LOADED_SQL); without it, the caller has checked the file, or trusts it, and None is returned.
    """
    client = pg_client(target, db.settings)
    # A superuser puts every object back with its owner; anyone else can only own what it restores.
    options = [] if _is_superuser(db) else ["--no-owner"]
    size = dump.stat().st_size
    progress(f"restoring the database from {DUMP} ({human_size(size)}) in one transaction"
             + (", its sha256 checked as it is read" if sha256 else ""))
    with dump.open("rb") as source:
        # The command reads this very file: its offset is how far the restore has read.
        def sample() -> Transfer:
            try:
                done = os.lseek(source.fileno(), 0, os.SEEK_CUR)
            except (OSError, ValueError):
                done = size
            # Past the last byte the server still builds indexes and constraints: say so, not "0 s left".
            return Transfer("restore", min(done, size), size,
                            "of the dump read" + ("; indexes and constraints next" if done >= size else ""))

        with Sampler(on_transfer, sample):
            result = target.exec_from_file(client.service, ["sh", "-c", RESTORE_SCRIPT, "runbook-restore",
                                                            CLEAR_PUBLIC, sha256 or "", LOADED_SQL, *options],
                                           source, env=client.env)
    if result.exit_code == 0:
        return loaded_rows(result.stdout) if sha256 else None
    # Name the cause: bytes that differ from the manifest (pg_restore may stumble on them first) or the rest.
    if sha256 and (DAMAGED in result.stderr or _sha256(dump) != sha256):
        raise SnapshotFailed(f"snapshot {dump.parent.name} is damaged: {DUMP} sha256 differs",
                             hint="the database was left as it was")
    failed = ExecResult(result.exit_code, result.stdout, result.stderr)
    raise RestoreFailed(first_error(failed, "the database restore") + "; the database was left as it was")


def loaded_rows(stdout: str) -> dict[str, int] | None:
    """Return {table: rows} from the restore's `runbook-loaded {json}` line; None without counts."""
    for line in stdout.splitlines():
        if line.startswith("runbook-loaded "):
            try:
                counts = json.loads(line.removeprefix("runbook-loaded "))
            except ValueError:
                return None
            return {str(name): int(rows) for name, rows in counts.items()} or None
    return None
