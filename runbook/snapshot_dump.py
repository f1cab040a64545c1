"""The database dump: `pg_dump -Fc` where the server's own tools are, proven readable and whole."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.database import Database
from runbook.errors import SnapshotFailed
from runbook.progress import Progress
from runbook.snapshot_manifest import DUMP, human_size
from runbook.snapshot_tables import DATA_SIZE_SQL, history_rows, reading, table_stats
from runbook.targets.base import DatabaseSettings, ExecResult, Target

DUMP_MAGIC = b"PGDMP"
# Kept free beside the dump, so a snapshot never fills the disk the database may live on.
FREE_SPACE_RESERVE = 256 * 1024 * 1024
LOCK_WAIT = "60s"


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
    if target.name == "local":
        env.update(PGHOST=settings.host, PGPORT=str(settings.port))
    return PgClient("db", env)


def first_error(result: ExecResult, what: str) -> str:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    detail = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return f"{what} exited {result.exit_code}" + (f": {detail[:300]}" if detail else "")



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


def take_database(target: Target, db: Database, directory: Path, snapshot_id: str, want_history: bool,
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

