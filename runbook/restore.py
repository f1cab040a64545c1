"""Put a snapshot back: prove its parts, restore the database in one transaction, then the files, then check.

The order is the safety argument. Every part is checked against the manifest's sha256 before anything is
touched, so a damaged snapshot changes nothing. The database goes back in a single transaction that
first drops every object of the public schema (tables made after the snapshot too) and then replays the
dump, so it either ends exactly as snapshotted or stays as it was. Only then are the migration files
written back, and the result is compared with the manifest: history rows, every table's row count and
checksum, every file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.config import Config
from runbook.database import Database
from runbook.errors import EnvironmentNotReady, InputError, RestoreFailed, RunbookError, SnapshotFailed
from runbook.progress import Progress, no_progress
from runbook.snapshot import locked_session
from runbook.snapshot_dump import first_error, pg_client
from runbook.snapshot_files import find_files, read_archive
from runbook.snapshot_manifest import DUMP, FILES, HISTORY, file_entry, human_size, load_manifest
from runbook.snapshot_tables import history_rows, reading, table_stats
from runbook.targets.base import Target

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

# The dump arrives on stdin. psql applies the prelude, then pg_restore's script; COMMIT is sent only when
# pg_restore read the whole archive, otherwise an error makes psql stop and the server roll everything back.
# Without --single-transaction, pg_restore wraps large objects in a BEGIN/COMMIT of its own, and that
# COMMIT would end our transaction half way. With it, pg_restore opens with a BEGIN (inside ours: a
# warning, silenced here) and ends with the one COMMIT; ours then finds no transaction (silenced too).
RESTORE_SCRIPT = r"""prelude=$1; shift
{
  printf '%s\n' "$prelude" 'SET LOCAL client_min_messages = error;'
  if pg_restore --clean --if-exists --single-transaction "$@" --file=-; then
    printf '%s\n' 'SET client_min_messages = error;' 'COMMIT;'
  else
    printf '%s\n' "DO \$\$ BEGIN RAISE EXCEPTION 'runbook: pg_restore could not read the snapshot'; END \$\$;"
  fi
} | psql -X -q -v ON_ERROR_STOP=1 --no-password"""


@dataclass
class RestoreOutcome:
    """What a restore did and what its check found; `problems` empty means: exactly as snapshotted."""

    snapshot: str
    restored: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "status": "restored" if self.ok else "failed",
                "restored": "; ".join(self.restored), "checked": "; ".join(self.checked),
                "problems": list(self.problems)}


def verify_parts(snapshot_id: str, directory: Path, manifest: dict[str, Any]) -> None:
    """Raise SnapshotFailed unless every part is on disk with the manifest's size and sha256."""
    parts = manifest.get("parts") or []
    if not parts:
        raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: its manifest lists no parts")
    for part in parts:
        path = directory / part["file"]
        if not path.is_file():
            raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {part['file']} is missing")
        if path.stat().st_size != part["size"]:
            raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {part['file']} size differs "
                                 f"({path.stat().st_size} bytes, the manifest says {part['size']})")
        if file_entry(path)["sha256"] != part["sha256"]:
            raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {part['file']} sha256 differs")


PARTS = ("database", "history", "files")


def parse_only(text: str | None) -> frozenset[str]:
    """Return the parts `--only` names (comma-separated); every part when not given. Unknown: exit 2."""
    if text is None:
        return frozenset(PARTS)
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(PARTS))
    if unknown or not names:
        raise InputError(f"--only takes {', '.join(PARTS)} (comma-separated), not {text!r}",
                         hint="for example: --only history,files")
    return frozenset(names)


def restore_snapshot(target: Target, db: Database, config: Config, snapshot_id: str,
                     *, progress: Progress = no_progress, only: frozenset[str] = frozenset(PARTS)) -> RestoreOutcome:
    """Verify, restore and check one snapshot (or only some of its parts); the caller holds the run lock."""
    directory, manifest = load_manifest(config.artifacts_dir(), snapshot_id)
    verify_parts(snapshot_id, directory, manifest)
    parts = {p["file"] for p in manifest["parts"]}
    progress(f"snapshot {snapshot_id}: {len(parts)} parts match their sha256")
    outcome = RestoreOutcome(snapshot_id)
    if "database" in only and DUMP in parts:
        _restore_database(target, db, directory / DUMP, outcome, progress)
    elif "database" in only:
        outcome.notes.append("the snapshot has no database dump: the database was not restored")
    elif "history" in only and HISTORY in parts:
        _restore_history(db, json.loads((directory / HISTORY).read_text()), outcome, progress)
    elif "history" in only:
        raise InputError(f"snapshot {snapshot_id} holds no history rows", hint="restore it whole, without --only")
    if "files" in only and FILES in parts and manifest.get("files"):
        _restore_files(target, directory / FILES, manifest["files"], outcome, progress)
    checked = dict(manifest)
    if "database" not in only or DUMP not in parts:
        checked.pop("database", None)  # the data was left alone: its rows are not compared
    if "files" not in only:
        checked.pop("files", None)
    history = "history" in only or ("database" in only and DUMP in parts)
    _check(target, db, directory, checked, outcome, history=history)
    outcome.notes.extend(w for w in getattr(target, "warnings", []) if w not in outcome.notes)
    return outcome


def restore_now(config: Config, target: Target, snapshot_id: str,
                *, progress: Progress = no_progress, only: frozenset[str] = frozenset(PARTS)) -> RestoreOutcome:
    """`runbook restore ID`: the same restore under the run lock, so it cannot race a run."""
    load_manifest(config.artifacts_dir(), snapshot_id)  # an unknown id fails before any lock or connection
    with locked_session(config, target, f"restore {snapshot_id}") as db:
        return restore_snapshot(target, db, config, snapshot_id, progress=progress, only=only)


# The history rows as the snapshot holds them (django_migrations: app, name; alembic_version: the revision),
# written back by one statement each (one transaction): rows not in the snapshot go, missing ones come back,
# rows in both keep their id and time.
HISTORY_WRITE = {
    "django_migrations": (
        "WITH wanted AS (SELECT x->>0 AS app, x->>1 AS name FROM jsonb_array_elements(%(rows)s::jsonb) x),"
        " gone AS (DELETE FROM django_migrations d WHERE NOT EXISTS"
        " (SELECT 1 FROM wanted w WHERE w.app = d.app AND w.name = d.name) RETURNING 1)"
        " INSERT INTO django_migrations (app, name, applied) SELECT w.app, w.name, now() FROM wanted w"
        " WHERE NOT EXISTS (SELECT 1 FROM django_migrations d WHERE d.app = w.app AND d.name = w.name)"),
    "alembic_version": (
        "WITH wanted AS (SELECT x->>0 AS v FROM jsonb_array_elements(%(rows)s::jsonb) x),"
        " gone AS (DELETE FROM alembic_version a WHERE a.version_num NOT IN (SELECT v FROM wanted) RETURNING 1)"
        " INSERT INTO alembic_version (version_num) SELECT v FROM wanted"
        " WHERE v NOT IN (SELECT version_num FROM alembic_version)"),
}


def _restore_history(db: Database, history: dict[str, Any], outcome: RestoreOutcome, progress: Progress) -> None:
    """Write the snapshot's history rows back, leaving every data table alone; rows kept keep their time."""
    for table, rows in history.items():
        if table not in HISTORY_WRITE:
            continue
        if not db.table_exists(table):
            raise RestoreFailed(f"history table {table} does not exist any more; restore the snapshot whole")
        db.query(HISTORY_WRITE[table], {"rows": json.dumps(rows)})
    outcome.restored.append("history rows (" + ", ".join(f"{t} {len(r)}" for t, r in history.items()) + ")")
    progress("history rows written back; the data tables were not touched")


def _is_superuser(db: Database) -> bool:
    rows = db.query("SELECT CASE WHEN rolsuper THEN 1 ELSE 0 END FROM pg_roles WHERE rolname = current_user")[1]
    return bool(rows) and int(rows[0][0]) == 1


def _restore_database(target: Target, db: Database, dump: Path, outcome: RestoreOutcome,
                      progress: Progress) -> None:
    load_dump(target, db, dump, progress=progress)
    outcome.restored.append("database")


def load_dump(target: Target, db: Database, dump: Path, *, progress: Progress = no_progress) -> None:
    """Replace db's public schema with a pg_dump archive in one transaction, streamed through the db service."""
    client = pg_client(target, db.settings)
    # A superuser puts every object back with its owner; anyone else can only own what it restores.
    options = [] if _is_superuser(db) else ["--no-owner"]
    progress(f"restoring the database from {DUMP} ({human_size(dump.stat().st_size)}) in one transaction")
    result = target.exec_from_file(client.service, ["sh", "-c", RESTORE_SCRIPT, "runbook-restore",
                                                    CLEAR_PUBLIC, *options], dump, env=client.env)
    if result.exit_code != 0:
        raise RestoreFailed(first_error(result, "the database restore") + "; the database was left as it was")


def file_digests(target: Target, root: str, files: list[str]) -> dict[str, str]:
    """Return {relative path: sha256} of files in the backend: one sha256sum, or file by file without it."""
    if not files:
        return {}
    result = target.exec("backend", ["sha256sum", "--", *files], workdir=root, timeout=600)
    if result.exit_code == 0 and not result.truncated:
        digests = {}
        for line in result.stdout.splitlines():
            digest, _, name = line.partition("  ")
            if name:
                digests[posixpath.normpath(name)] = digest.strip()
        if sorted(digests) == sorted(files):
            return digests
    return {f: hashlib.sha256(target.read_file("backend", posixpath.join(root, f))).hexdigest() for f in files}


def _restore_files(target: Target, archive: Path, info: dict[str, Any], outcome: RestoreOutcome,
                   progress: Progress) -> None:
    root, wanted = info["root"], read_archive(archive)
    present = find_files(target, root, info["patterns"])
    digests = file_digests(target, root, present)
    written = deleted = 0
    try:
        for relative, data in sorted(wanted.items()):
            if digests.get(relative) != hashlib.sha256(data).hexdigest():
                target.write_file("backend", posixpath.join(root, relative), data)
                written += 1
        for relative in sorted(set(present) - set(wanted)):  # made after the snapshot
            target.delete_file("backend", posixpath.join(root, relative))
            deleted += 1
    except (RunbookError, OSError) as exc:
        raise RestoreFailed(f"the database is restored, but writing the migration files back failed "
                            f"after {written} written, {deleted} deleted: {exc}") from exc
    outcome.restored.append(f"migration files ({written} written, {deleted} deleted, "
                            f"{len(wanted) - written} unchanged)")
    progress(f"migration files: {written} written back, {deleted} made after the snapshot deleted")


def _check(target: Target, db: Database, directory: Path, manifest: dict[str, Any],
           outcome: RestoreOutcome, *, history: bool = True) -> None:
    """Read the live state back and compare it with the manifest; every difference is a problem."""
    history_path = directory / HISTORY
    history_then = json.loads(history_path.read_text()) if history and history_path.exists() else None
    now: dict[str, Any] = {}
    history_now: dict[str, Any] = {}
    try:
        with reading(db, f"runbook check {outcome.snapshot}") as (query, _):
            now = table_stats(query) if manifest.get("database") else {}
            if history_then is not None:
                history_now = history_rows(query)
    except EnvironmentNotReady:
        raise
    except RunbookError as exc:
        outcome.problems.append(f"could not read the database back: {exc}")
        return
    files = manifest.get("files")
    digests = None
    if files:
        digests = file_digests(target, files["root"], find_files(target, files["root"], files["patterns"]))
    problems, checked = differences(manifest, now, history_then, history_now, digests)
    outcome.problems += problems
    outcome.checked += checked


def differences(manifest: dict[str, Any], tables_now: dict[str, Any], history_then: dict[str, Any] | None,
                history_now: dict[str, Any], digests: dict[str, str] | None) -> tuple[list[str], list[str]]:
    """Compare what was read back with the manifest; return the differences and what was checked."""
    problems: list[str] = []
    checked: list[str] = []
    database = manifest.get("database")
    if database:
        before, now = database["tables"], tables_now
        extra, missing = sorted(set(now) - set(before)), sorted(set(before) - set(now))
        if extra:
            problems.append(f"tables not in the snapshot: {', '.join(extra)}")
        if missing:
            problems.append(f"tables missing: {', '.join(missing)}")
        summed = 0
        for name in sorted(set(now) & set(before)):
            if now[name]["rows"] != before[name]["rows"]:
                problems.append(f"{name}: {now[name]['rows']} rows, the snapshot had {before[name]['rows']}")
            elif before[name]["checksum"] and now[name]["checksum"] != before[name]["checksum"]:
                problems.append(f"{name}: same row count, different contents")
            summed += now[name]["rows"]
        hashed = sum(1 for t in before.values() if t["checksum"])
        checked.append(f"{len(before)} tables, {summed:,} rows ({hashed} checksummed)")
    if history_then is not None:
        for table in sorted(set(history_then) | set(history_now)):
            if history_then.get(table) != history_now.get(table):
                then, now_rows = history_then.get(table) or [], history_now.get(table) or []
                gone = [" ".join(map(str, r)) for r in then if r not in now_rows]
                new = [" ".join(map(str, r)) for r in now_rows if r not in then]
                detail = "; ".join(([f"missing {', '.join(gone[:3])}"] if gone else [])
                                   + ([f"extra {', '.join(new[:3])}"] if new else []))
                problems.append(f"{table} rows differ from the snapshot" + (f" ({detail})" if detail else ""))
        checked.append("history rows (" + ", ".join(f"{t} {len(r)}" for t, r in history_then.items()) + ")")
    files = manifest.get("files")
    if files and digests is not None:
        expected = {f["path"]: f["sha256"] for f in files["list"]}
        if digests != expected:
            differ = sorted(p for p in set(expected) | set(digests) if expected.get(p) != digests.get(p))
            problems.append(f"migration files differ: {', '.join(differ[:5])}")
        checked.append(f"{len(expected)} migration files")
    return problems, checked
