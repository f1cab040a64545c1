"""The snapshot stage: what is captured before any step changes anything.

A snapshot is a directory `.runbook/snapshots/<id>/` (0700; every file 0600):
  database.dump   `pg_dump -Fc`, run where the server's own tools are (in the db service; on the host
                  for the local target), streamed to disk in constant memory
  history.json    the migration history rows (django_migrations, alembic_version)
  files.tar.gz    the backend's migration files, paths relative to its working directory
  manifest.json   each part's size and sha256; every public table's row count and checksum; the server
It is built as `.<id>.partial` and renamed when whole, so a snapshot directory that exists is complete.
When the database is reachable over TCP, the dump, the counts and the history rows all come from one
exported transaction snapshot, so the manifest describes exactly what the dump holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from runbook.alembic_ini import read_config
from runbook.artifacts.lock import RunLock
from runbook.config import Config
from runbook.database.postgres import HISTORY_QUERIES, Database
from runbook.errors import EnvironmentNotReady, InputError, RunbookError, SnapshotFailed
from runbook.fsutil import ensure_private_dir, fsync_dir
from runbook.playbook.model import Snapshot
from runbook.targets.base import DatabaseSettings, ExecResult, Target

DUMP, HISTORY, FILES, MANIFEST = "database.dump", "history.json", "files.tar.gz", "manifest.json"
DUMP_MAGIC = b"PGDMP"
FORMAT = 1
# Tables bigger than this get a row count but no checksum: hashing every row costs a full read.
CHECKSUM_MAX_BYTES = 512 * 1024 * 1024
# Kept free beside the dump, so a snapshot never fills the disk the database may live on.
FREE_SPACE_RESERVE = 256 * 1024 * 1024
LOCK_WAIT = "60s"
MIGRATION_PATTERN = "**/migrations/*.py"
# Directories under the backend workdir that hold other people's migrations (virtualenvs, packages).
SKIP_DIRS = {"site-packages", "dist-packages", "node_modules", "__pycache__"}
# The text of a row depends on these; a checksum must not change with the client's environment.
STABLE_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
                   "extra_float_digits": "3", "bytea_output": "hex"}
TABLES_SQL = (
    "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    # Ordinary tables only, leaf partitions included: pg_dump writes the rows of a partitioned table
    # under its partitions, and counting the parent too would count them twice.
    " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname"
)
DATA_SIZE_SQL = (
    "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg_toast%'"
)

Progress = Callable[[str], None]


def no_progress(text: str) -> None:
    return None


def new_snapshot_id(playbook: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", playbook).strip(".-") or "run"
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{name}"


def snapshots_dir(artifacts_dir: Path) -> Path:
    return artifacts_dir / "snapshots"


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# --- reading snapshots back -----------------------------------------------------------------------------

def list_snapshots(artifacts_dir: Path) -> list[dict[str, Any]]:
    """Return the manifests of the complete snapshots, oldest first."""
    found = []
    base = snapshots_dir(artifacts_dir)
    if not base.is_dir():
        return []
    for directory in base.iterdir():
        if directory.name.startswith(".") or not (directory / MANIFEST).is_file():
            continue
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {"id": directory.name, "created": "?", "playbook": "?", "parts": [], "damaged": True}
        found.append(manifest)
    return sorted(found, key=lambda m: str(m.get("id", "")))


def load_manifest(artifacts_dir: Path, snapshot_id: str) -> tuple[Path, dict[str, Any]]:
    """Return the directory and manifest of a snapshot; an unknown id is bad input (exit 2)."""
    if not snapshot_id or "/" in snapshot_id or snapshot_id.startswith("."):
        raise InputError(f"no snapshot {snapshot_id!r}", hint="`runbook snapshots` lists them")
    directory = snapshots_dir(artifacts_dir) / snapshot_id
    if not (directory / MANIFEST).is_file():
        raise InputError(f"no snapshot {snapshot_id!r} in {snapshots_dir(artifacts_dir)}",
                         hint="`runbook snapshots` lists them")
    try:
        return directory, json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {MANIFEST} is unreadable ({exc})") from exc


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the few facts about a snapshot that a report shows."""
    facts: dict[str, Any] = {
        "id": manifest["id"],
        "path": manifest.get("path", ""),
        "created": manifest.get("created", ""),
        "size": human_size(sum(p["size"] for p in manifest.get("parts", []))),
        "parts": ", ".join(p["file"] for p in manifest.get("parts", [])),
    }
    database = manifest.get("database")
    if database:
        tables = database.get("tables", {})
        facts["tables"] = f"{len(tables)} tables, {sum(t['rows'] for t in tables.values()):,} rows"
        facts["server_version"] = database.get("server_version", "")
    files = manifest.get("files")
    if files:
        facts["migration_files"] = f"{len(files['list'])} files under {files['root']}"
    return facts


# --- where PostgreSQL's own tools run -------------------------------------------------------------------

@dataclass
class PgClient:
    """Where pg_dump, pg_restore and psql run, and the environment that points them at the database."""

    service: str
    env: dict[str, str]


def pg_client(target: Target, settings: DatabaseSettings) -> PgClient:
    """In the db service its own tools match the server and reach it over the local socket; locally, TCP."""
    env = {"PGUSER": settings.user, "PGDATABASE": settings.dbname, "PGCONNECT_TIMEOUT": "10",
           "PGOPTIONS": "-c client_min_messages=warning"}
    if settings.password:
        env["PGPASSWORD"] = settings.password
    if target.on_this_host:
        env.update(PGHOST=settings.host, PGPORT=str(settings.port))
    return PgClient("db", env)


def first_error(result: ExecResult, what: str) -> str:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    detail = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return f"{what} exited {result.exit_code}" + (f": {detail[:300]}" if detail else "")


# --- table counts and checksums -------------------------------------------------------------------------

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stats_sql(tables: list[tuple[str, int]]) -> str:
    """One statement (one MVCC snapshot) counting every table, with an order-free checksum of its rows.

    The checksum adds up the md5 of each row's text as two 64-bit halves: constant memory and no sort,
    whatever the table's size.
    """
    parts = []
    for index, (name, size) in enumerate(tables):
        if size <= CHECKSUM_MAX_BYTES:
            half = "coalesce(sum(('x' || substr(h, {0}, 16))::bit(64)::bigint::numeric), 0)::text"
            checksum = f"md5({half.format(1)} || ':' || {half.format(17)})"
            source = f"(SELECT md5(t::text) AS h FROM public.{_ident(name)} t) s"
        else:
            checksum, source = "NULL::text", f"public.{_ident(name)}"
        parts.append(f"SELECT {index} AS i, count(*) AS n, {checksum} AS checksum FROM {source}")
    return " UNION ALL ".join(parts)


Query = Callable[[str], list[list[Any]]]


def table_stats(query: Query) -> dict[str, dict[str, Any]]:
    """Return {table: {rows, checksum}} for every table of the public schema."""
    tables = [(str(name), int(size)) for name, size in query(TABLES_SQL)]
    if not tables:
        return {}
    stats: dict[str, dict[str, Any]] = {}
    for i, rows, checksum in query(stats_sql(tables)):
        stats[tables[int(i)][0]] = {"rows": int(rows), "checksum": None if checksum in (None, "") else str(checksum)}
    return dict(sorted(stats.items()))


def direct_connection(db: Database, name: str) -> psycopg.Connection | None:
    """A connection of our own beside the run's, or None when SQL only goes through psql in the db service."""
    if db.settings.via == "psql-in-container":
        return None
    try:
        return psycopg.connect(**db.settings.conninfo(), application_name=name[:63])
    except psycopg.Error as exc:
        from runbook.database.postgres import explain_connect_error

        raise explain_connect_error(db.settings, exc) from exc


@contextlib.contextmanager
def reading(db: Database, name: str) -> Iterator[tuple[Query, psycopg.Connection | None]]:
    """Yield a query function over one REPEATABLE READ transaction with stable text settings, if possible."""
    conn = direct_connection(db, name)
    if conn is None:
        yield (lambda text: db.query(text)[1]), None
        return
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            for key, value in STABLE_SETTINGS.items():
                conn.execute("SELECT set_config(%s, %s, true)", (key, value))

            def query(text: str) -> list[list[Any]]:
                return [list(r) for r in conn.execute(text.encode()).fetchall()]  # bytes: no %-placeholders

            yield query, conn
    except psycopg.Error as exc:
        raise SnapshotFailed(f"reading the database failed: {str(exc).strip().splitlines()[0]}") from exc
    finally:
        conn.close()


# --- migration files ------------------------------------------------------------------------------------

def backend_root(target: Target, config: Config) -> str:
    """Return the backend's working directory as an absolute path in the service."""
    result = target.exec("backend", ["pwd"], workdir=config.backend.workdir, timeout=60)
    root = result.stdout.strip()
    if result.exit_code != 0 or not root.startswith("/"):
        raise SnapshotFailed(first_error(result, "`pwd` in the backend"))
    return root


def file_patterns(target: Target, root: str, extra: list[str]) -> list[str]:
    """Django's migrations, Alembic's versions (from alembic.ini), and the playbook's own globs."""
    patterns = [MIGRATION_PATTERN]
    try:
        ini = target.read_file("backend", posixpath.join(root, "alembic.ini")).decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError):
        ini = None
    except RunbookError:
        ini = None
    if ini is not None:
        with contextlib.suppress(RunbookError):
            for location in read_config(ini, workdir=root).versions_dirs():
                relative = posixpath.relpath(posixpath.join(root, location), root)
                patterns.append(posixpath.join(relative, "*.py"))
    return list(dict.fromkeys([*patterns, *extra]))


def find_files(target: Target, root: str, patterns: list[str]) -> list[str]:
    """Return the paths (relative to root) of the files matching the patterns, outside virtualenvs."""
    found: set[str] = set()
    for pattern in patterns:
        directory, glob = root, pattern
        if pattern.startswith("../"):  # Alembic versions beside the workdir rather than under it
            directory = posixpath.normpath(posixpath.join(root, posixpath.dirname(pattern)))
            glob = posixpath.basename(pattern)
        for path in target.list_files("backend", directory, glob):
            relative = posixpath.relpath(path, root)
            folders = relative.split("/")[:-1]
            if any(f in SKIP_DIRS or (f.startswith(".") and f != "..") for f in folders):
                continue
            found.add(relative)
    return sorted(found)


def _archive_with_tar(target: Target, root: str, files: list[str], dest: Path) -> bool:
    """One `tar` in the backend for all files; False when the service has no tar."""
    result = target.exec_to_file("backend", ["tar", "-C", root, "-czf", "-", *(f"./{f}" for f in files)],
                                 dest, timeout=600)
    if result.exit_code in (126, 127):
        return False
    if result.exit_code != 0:
        raise SnapshotFailed(first_error(result, "tar of the migration files"))
    return True


def _archive_file_by_file(target: Target, root: str, files: list[str], dest: Path) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        for relative in files:
            data = target.read_file("backend", posixpath.join(root, relative))
            member = tarfile.TarInfo(relative)
            member.size, member.mode, member.mtime = len(data), 0o644, int(time.time())
            tar.addfile(member, io.BytesIO(data))
    os.chmod(dest, 0o600)


def read_archive(path: Path) -> dict[str, bytes]:
    """Return {relative path: bytes} of a files archive (migration files are small)."""
    contents = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                contents[posixpath.normpath(member.name)] = handle.read()
    return contents


def archive_files(target: Target, root: str, files: list[str], dest: Path) -> None:
    """Write the backend's files (relative to root) into the tar.gz dest: one tar, or file by file."""
    if not files or not _archive_with_tar(target, root, files, dest):
        _archive_file_by_file(target, root, files, dest)


def _take_files(target: Target, root: str, patterns: list[str], dest: Path) -> dict[str, Any]:
    files = find_files(target, root, patterns)
    archive_files(target, root, files, dest)
    contents = read_archive(dest)
    if sorted(contents) != files:
        missing = sorted(set(files) - set(contents))
        raise SnapshotFailed(f"the migration files archive lacks {', '.join(missing[:5]) or 'some files'}")
    listing = [{"path": p, "size": len(contents[p]), "sha256": hashlib.sha256(contents[p]).hexdigest()}
               for p in files]
    return {"root": root, "patterns": patterns, "list": listing}


# --- the database dump ----------------------------------------------------------------------------------

def dump_argv(snapshot: str | None) -> list[str]:
    argv = ["pg_dump", "--format=custom", "--no-password", f"--lock-wait-timeout={LOCK_WAIT}"]
    return argv + ([f"--snapshot={snapshot}"] if snapshot else [])


# Reads every data block back (a dump cut short or corrupted after its header fails here) and counts the
# rows of each COPY block: `rows N TABLE` per table, then pg_restore's exit status on the last line.
COUNT_ROWS_SCRIPT = r"""{ pg_restore --data-only --file=-; echo "runbook-exit $?"; } | awk '
  copying && $0 == "\." { print "rows", n, name; copying = 0; next }
  copying { n++; next }
  /^COPY .* FROM stdin;$/ { name = substr($0, 6); sub(/ \(.*\) FROM stdin;$/, "", name);
                            sub(/ FROM stdin;$/, "", name); copying = 1; n = 0; next }
  { last = $0 }
  END { print last }'"""


def _unquote(name: str) -> str:
    """Return a COPY target (public.'"Odd x"') as TABLES_SQL spells the table (Odd x)."""
    if name.startswith("public."):
        name = name[len("public."):]
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1].replace('""', '"')
    return name


def parse_row_counts(output: str) -> tuple[int | None, dict[str, int]]:
    """Return pg_restore's exit status and {table: rows} from COUNT_ROWS_SCRIPT's output."""
    counts: dict[str, int] = {}
    status: int | None = None
    for line in output.splitlines():
        if line.startswith("rows "):
            _, n, name = line.split(" ", 2)
            counts[_unquote(name)] = counts.get(_unquote(name), 0) + int(n)
        elif line.startswith("runbook-exit "):
            status = int(line.split()[1])
    return status, counts


def size_problems(size: int, tables: dict[str, Any], dumped: dict[str, int], consistent: bool) -> list[str]:
    """Say where the dump does not hold what the database held when it was written."""
    problems = []
    if size <= len(DUMP_MAGIC):
        problems.append(f"{DUMP} is empty ({size} bytes)")
    for name, stats in tables.items():
        got = dumped.get(name)
        if got is None:
            continue  # no COPY block: `pg_restore --list` already named the table
        # Without one exported snapshot, writes between the dump and the counts can differ; an empty dump
        # of a table that has rows cannot come from them.
        if (consistent and got != stats["rows"]) or (not consistent and got == 0 and stats["rows"]):
            problems.append(f"{DUMP} holds {got:,} rows of table {name}, the database had {stats['rows']:,}")
    return problems


def check_dump(target: Target, client: PgClient, path: Path, tables: dict[str, Any],
               consistent: bool = True) -> dict[str, Any]:
    """Prove the dump is readable and whole: header, `pg_restore --list`, every row read back and counted."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(len(DUMP_MAGIC))
    if magic != DUMP_MAGIC:
        raise SnapshotFailed(f"{DUMP} is not a pg_dump custom-format archive ({size} bytes, header {magic!r})")
    result = target.exec_from_file(client.service, ["pg_restore", "--list"], path, env=client.env, timeout=600)
    if result.exit_code != 0:
        raise SnapshotFailed(first_error(result, f"pg_restore --list on {DUMP}"))
    listing = result.stdout
    entries = [line for line in listing.splitlines() if line and not line.startswith(";")]
    if not result.truncated:
        missing = [name for name in tables if f" TABLE DATA public {name} " not in listing]
        if missing:
            raise SnapshotFailed(f"{DUMP} holds no data for table {', '.join(missing[:5])}")
    # --list reads only the table of contents at the head: read every data block too, so a dump cut short
    # or corrupted after its header is caught now and not on the day it is needed, and count its rows.
    result = target.exec_from_file(client.service, ["sh", "-c", COUNT_ROWS_SCRIPT], path, env=client.env)
    status, dumped = parse_row_counts(result.stdout)
    if result.exit_code != 0 or status != 0:
        failed = ExecResult(status if status else result.exit_code, result.stdout, result.stderr)
        raise SnapshotFailed(first_error(failed, f"reading all of {DUMP} back with pg_restore"))
    problems = size_problems(size, tables, dumped, consistent)
    if problems:
        raise SnapshotFailed("; ".join(problems[:3]), hint="the dump is not whole: take the snapshot again")
    match = re.search(r"Dumped by pg_dump version: (.+)", listing)
    return {"toc_entries": len(entries), "dumped_by": match.group(1).strip() if match else "",
            "dumped_rows": sum(dumped.values())}


def _check_free_space(directory: Path, data_bytes: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < data_bytes + FREE_SPACE_RESERVE:
        raise SnapshotFailed(
            f"not enough free space for a snapshot in {directory}: {human_size(free)} free, the tables hold "
            f"{human_size(data_bytes)} (and {human_size(FREE_SPACE_RESERVE)} stay free)",
            hint="free some space or set `artifacts:` in runbook.yml to a bigger disk")


def _take_database(target: Target, db: Database, directory: Path, snapshot_id: str, want_history: bool,
                   progress: Progress) -> tuple[dict[str, Any], dict[str, Any] | None]:
    settings = db.settings
    client = pg_client(target, settings)
    with reading(db, f"runbook snapshot {snapshot_id}") as (query, conn):
        _check_free_space(directory, int(query(DATA_SIZE_SQL)[0][0]))
        # pg_dump imports our transaction's snapshot: dump, counts and history rows see the same data.
        exported = str(query("SELECT pg_export_snapshot()")[0][0]) if conn is not None else None
        started = time.monotonic()
        result = target.exec_to_file(client.service, dump_argv(exported), directory / DUMP, env=client.env)
        if result.exit_code != 0:
            raise SnapshotFailed(first_error(result, "pg_dump"))
        elapsed = time.monotonic() - started
        size = (directory / DUMP).stat().st_size
        progress(f"database dump: {human_size(size)} in {elapsed:.1f} s")
        tables = table_stats(query)
        history = history_rows(query) if want_history else None
        server_version = str(query("SHOW server_version")[0][0])
    checked = check_dump(target, client, directory / DUMP, tables, consistent=exported is not None)
    progress(f"dump readable: pg_restore --list shows {checked['toc_entries']} entries; "
             f"{len(tables)} tables, {sum(t['rows'] for t in tables.values()):,} rows counted, "
             f"{checked['dumped_rows']:,} rows read back from the dump")
    database = {"name": settings.dbname, "user": settings.user, "server_version": server_version,
                "consistent": exported is not None, "dump_seconds": round(elapsed, 3), **checked,
                "tables": tables}
    return database, history


def history_rows(query: Query) -> dict[str, list[list[Any]]]:
    """Return the migration history tables that exist, row by row, as text."""
    history: dict[str, list[list[Any]]] = {}
    for table, text in HISTORY_QUERIES.items():
        exists = query(f"SELECT CASE WHEN to_regclass('{table}') IS NULL THEN 0 ELSE 1 END")[0][0]
        if int(exists) == 1:
            history[table] = plain_history({table: query(text)})[table]
    return history


def plain_history(history: dict[str, list[list[Any]]]) -> dict[str, list[list[Any]]]:
    return {t: [[None if v is None else str(v) for v in row] for row in rows] for t, rows in history.items()}


# --- the stage ------------------------------------------------------------------------------------------

def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"file": path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}


def take_snapshot(target: Target, db: Database, config: Config, playbook: str, spec: Snapshot,
                  *, progress: Progress = no_progress) -> dict[str, Any]:
    """Capture what spec asks for; return the manifest. Any failure leaves no snapshot and raises."""
    snapshot_id = new_snapshot_id(playbook)
    base = ensure_private_dir(snapshots_dir(config.artifacts_dir()))
    partial = base / f".{snapshot_id}.partial"
    directory = base / snapshot_id
    ensure_private_dir(partial)
    try:
        manifest: dict[str, Any] = {
            "format": FORMAT, "id": snapshot_id, "path": str(directory), "playbook": playbook,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "target": target.name,
        }
        history = None
        if spec.database:
            manifest["database"], history = _take_database(target, db, partial, snapshot_id, spec.history,
                                                           progress)
        if spec.history:
            if history is None:
                history = plain_history(db.history())
            write_private(partial / HISTORY, json.dumps(history, indent=2).encode())
            progress("history rows: " + (", ".join(f"{t} {len(r)}" for t, r in history.items()) or "none"))
        root = backend_root(target, config)
        manifest["files"] = _take_files(target, root, file_patterns(target, root, list(spec.files)),
                                        partial / FILES)
        progress(f"migration files: {len(manifest['files']['list'])} under {root}")
        manifest["parts"] = [file_entry(partial / name) for name in (DUMP, HISTORY, FILES)
                             if (partial / name).exists()]
        write_private(partial / MANIFEST, json.dumps(manifest, indent=2).encode())
        os.replace(partial, directory)
        fsync_dir(base)
    except BaseException as exc:
        # Whatever stopped it (a bug, SystemExit, a signal too), no half-written snapshot stays behind.
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, EnvironmentNotReady | SnapshotFailed):
            raise
        if isinstance(exc, RunbookError):
            raise SnapshotFailed(f"snapshot failed: {exc.message}", hint=exc.hint) from exc
        if isinstance(exc, OSError | tarfile.TarError | psycopg.Error):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
            raise SnapshotFailed(f"snapshot failed: {reason}") from exc
        raise
    return manifest



# --- a session outside a run: `runbook snapshot` and `runbook restore` ---------------------------------------

@contextlib.contextmanager
def locked_session(config: Config, target: Target, purpose: str) -> Iterator[Database]:
    """Hold the run lock (host and database) and yield the database, as a run does."""
    lock = RunLock(config.artifacts_dir(), purpose)
    lock.acquire()
    db: Database | None = None
    try:
        target.check_ready(["db", "backend"])
        from runbook.database.connection import open_database

        db = open_database(target, target.database_settings(), f"runbook {purpose} pid {os.getpid()}")
        db.lock_run()
        yield db
    finally:
        if db is not None:
            db.close()
        lock.release()


def snapshot_now(config: Config, target: Target, *, progress: Progress = no_progress) -> dict[str, Any]:
    """`runbook snapshot`: everything a playbook could ask for, under the playbook name "manual"."""
    with locked_session(config, target, "snapshot") as db:
        return take_snapshot(target, db, config, "manual", Snapshot(), progress=progress)
