"""The database dump: `pg_dump -Fc` streamed to disk and proven readable while it is written.

One command runs where the server's own tools are (in the db service; on the host for the local target).
pg_dump's output goes through `tee` to three readers at once: stdout (the snapshot's file, here), a
`pg_restore` that reads every block back as it arrives, and `sha256sum`. pg_restore writes out the whole
restore script and `grep -n` keeps only the lines that open and close each table's rows, so every table's
rows are counted from line numbers, at the speed grep reads. Here, beside the stream, the file is hashed
as it grows (snapshot_stream) and the exporter connection counts and checksums every table in the same
exported snapshot. When the two sha256 agree, the file on disk holds exactly the bytes pg_restore read
whole; when the rows read back equal the rows counted, the dump holds every row.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.artifacts.snapshot_manifest import DUMP
from runbook.artifacts.snapshot_stream import Beside, CopyProgress, FileHasher
from runbook.artifacts.snapshot_tables import DATA_SIZE_SQL, Query, history_rows, reading, table_stats
from runbook.database.postgres import Database, libpq_environment
from runbook.errors import RunbookError, SnapshotFailed
from runbook.progress import OnTransfer, Progress, Sampler, Transfer, human_size, no_transfer
from runbook.targets.base import DatabaseSettings, ExecResult, Target, create_output_file

DUMP_MAGIC = b"PGDMP"
# Kept free beside the dump, so a snapshot never fills the disk the database may live on.
FREE_SPACE_RESERVE = 256 * 1024 * 1024
LOCK_WAIT = "60s"
# gzip level 1: on a 2-core server pg_dump's compression is half the work of a dump, and level 1 costs
# about half of the default level 6 for a dump a little bigger (1.7% on pgbench data; see the README).
COMPRESSION = 1


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
    if target.on_this_host:  # over TCP, with database.url's sslmode and the like, as runbook's own session
        env.update(PGHOST=settings.host, PGPORT=str(settings.port))
        carried, left = libpq_environment(settings.parameters)
        if "PGOPTIONS" in carried:
            carried["PGOPTIONS"] = f"{carried['PGOPTIONS']} {env['PGOPTIONS']}"
        env.update(carried)
        if left:
            target.warnings.add(f"database.url's {', '.join(left)} cannot reach pg_dump, pg_restore and psql on "
                                "this host (no PG* variable carries them): they connect without")
    return PgClient("db", env)


def first_error(result: ExecResult, what: str) -> str:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    detail = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return f"{what} exited {result.exit_code}" + (f": {detail[:300]}" if detail else "")


def dump_argv(snapshot: str | None) -> list[str]:
    argv = ["pg_dump", "--format=custom", f"--compress={COMPRESSION}", "--no-password",
            f"--lock-wait-timeout={LOCK_WAIT}"]
    return argv + ([f"--snapshot={snapshot}"] if snapshot else [])


# Run as `sh -c DUMP_SCRIPT runbook-dump pg_dump ARGS...`. stdout is the dump; stderr ends with the
# `runbook-*` lines that parse_report reads. The lines grep keeps: each COPY (schema-qualified name only),
# each end of a COPY's rows, the large objects, any transaction of the script's own, pg_dump's version.
# Past 256 KiB (thousands of tables) they stay in a file for read_report to fetch, not on stderr.
DUMP_SCRIPT = r"""set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/runbook-dump.XXXXXX") || exit 70
keep=
trap '[ -n "$keep" ] || rm -rf "$dir"' EXIT
trap 'exit 143' HUP INT TERM
mkfifo -m 600 "$dir/read" "$dir/sum" || exit 70
{ pg_restore --file=- <"$dir/read"; echo $? >"$dir/read.exit"; } | LC_ALL=C grep -a -n -o -E \
  -e '^COPY ("([^"]|"")*"|[a-z_][a-z0-9_]*)\.("([^"]|"")*"|[a-z_][a-z0-9_]*) ' -e '^\\\.$' -e '^BEGIN;$' \
  -e '^SELECT pg_catalog\.lo_open\(' -e '^-- Dumped by pg_dump version .*' >"$dir/lines" &
sha256sum <"$dir/sum" >"$dir/sha256" &
{ "$@"; echo $? >"$dir/dump.exit"; } | tee "$dir/read" "$dir/sum"
wait
printf 'runbook-dump-exit %s\nrunbook-read-exit %s\nrunbook-sha256 %s\n' "$(cat "$dir/dump.exit")" \
  "$(cat "$dir/read.exit")" "$(cut -c1-64 "$dir/sha256")" >&2
if [ "$(wc -c <"$dir/lines")" -le 262144 ]; then
  sed 's/^/runbook-line /' "$dir/lines" >&2
else
  keep=1
  echo "runbook-lines-file $dir/lines" >&2
fi
"""


@dataclass
class DumpReport:
    """What the command in the service said about the dump it streamed."""

    exit_code: int = 0  # the command's own: not 0 when it could not start its pipeline, or was stopped
    dump_exit: int | None = None
    read_exit: int | None = None
    sha256: str = ""
    lines: list[str] = field(default_factory=list)
    lines_file: str | None = None
    stderr: str = ""  # pg_dump's and pg_restore's own messages, without the runbook-* lines


def parse_report(stderr: str) -> DumpReport:
    report, other = DumpReport(), []
    for line in stderr.splitlines():
        key, _, value = line.partition(" ")
        if key == "runbook-line":
            report.lines.append(value)
        elif key in ("runbook-dump-exit", "runbook-read-exit"):
            number = int(value) if value.strip().isdigit() else None
            setattr(report, key.removeprefix("runbook-").replace("-", "_"), number)
        elif key == "runbook-sha256":
            report.sha256 = value.strip()
        elif key == "runbook-lines-file":
            report.lines_file = value.strip()
        else:
            other.append(line)
    report.stderr = "\n".join(other)
    return report


def read_report(target: Target, client: PgClient, report: DumpReport) -> list[str]:
    """Return grep's lines, from stderr or, for a big schema, from the file the command left."""
    if report.lines_file is None:
        return report.lines
    directory = report.lines_file.rsplit("/", 1)[0]
    try:
        return target.read_file(client.service, report.lines_file).decode("utf-8", "replace").splitlines()
    finally:
        with contextlib.suppress(RunbookError):
            target.exec(client.service, ["rm", "-rf", "--", directory], timeout=60)


def _identifier(text: str, at: int) -> tuple[str, int]:
    """Read one identifier as pg_dump writes it (bare, or double-quoted with "" inside) from text[at:]."""
    if text.startswith('"', at):
        name, i = [], at + 1
        while i < len(text):
            if text[i] == '"':
                if text.startswith('""', i):
                    name.append('"')
                    i += 2
                    continue
                return "".join(name), i + 1
            name.append(text[i])
            i += 1
        return "".join(name), i
    end = at
    while end < len(text) and text[end] not in ". ":
        end += 1
    return text[at:end], end


def copy_target(line: str) -> tuple[str, str]:
    """Return (schema, table) of a `COPY schema.table ` line."""
    schema, at = _identifier(line, len("COPY "))
    table, _ = _identifier(line, at + 1)
    return schema, table


@dataclass
class ReadBack:
    """What reading the dump back found: rows per public table, large objects, pg_dump's version."""

    rows: dict[str, int] = field(default_factory=dict)
    large_objects: int = 0
    transaction_blocks: int = 0  # BEGIN in the script itself: restoring it must leave them to pg_restore
    dumped_by: str = ""


def parse_read_back(lines: list[str]) -> ReadBack:
    """Count each public table's rows from grep's `N:text` lines: rows lie between a COPY and its `\\.`."""
    found = ReadBack()
    opened: tuple[int, str | None] | None = None
    for line in lines:
        number, _, text = line.partition(":")
        if not number.isdigit():
            continue
        at = int(number)
        if opened is not None:  # inside a COPY's rows only its end counts: the rest is data
            if text == "\\.":
                start, table = opened
                if table is not None:
                    found.rows[table] = found.rows.get(table, 0) + at - start - 1
                opened = None
        elif text.startswith("COPY "):
            schema, table = copy_target(text)
            opened = (at, table if schema == "public" else None)
        elif text == "BEGIN;":
            found.transaction_blocks += 1
        elif text.startswith("SELECT pg_catalog.lo_open("):
            found.large_objects += 1
        elif text.startswith("-- Dumped by pg_dump version ") and not found.dumped_by:
            found.dumped_by = text.removeprefix("-- Dumped by pg_dump version ").strip()
    return found


def stream_problem(report: DumpReport, size: int, sha256: str, head: bytes) -> str | None:
    """Say why the streamed dump cannot be trusted, or None: pg_dump, the file, pg_restore, the two sha256."""
    if report.dump_exit is None or report.read_exit is None:
        return first_error(ExecResult(report.exit_code or 1, "", report.stderr), "the dump command")
    tools = report.stderr.splitlines()
    # A pg_restore that gave up makes tee, and then pg_dump, die of SIGPIPE (141): pg_restore said why.
    if report.dump_exit != 0 and not (report.dump_exit == 141 and report.read_exit != 0):
        own = "\n".join(line for line in tools if not line.startswith("pg_restore:"))
        return first_error(ExecResult(report.dump_exit, "", own), "pg_dump")
    if head != DUMP_MAGIC:
        return f"{DUMP} is not a pg_dump custom-format archive ({size} bytes, header {head!r})"
    if report.read_exit != 0:
        # --list would read only the table of contents at the head: every data block is read here, so a
        # dump cut short or corrupted after its header is caught now and not on the day it is needed.
        own = "\n".join(line for line in tools if line.startswith("pg_restore:"))
        return first_error(ExecResult(report.read_exit, "", own), f"reading all of {DUMP} back with pg_restore")
    if report.sha256 != sha256:
        return (f"{DUMP} on disk is not what pg_restore read back (sha256 {sha256[:12]}, the stream's "
                f"{report.sha256[:12] or 'missing'})")
    return None


def size_problems(size: int, tables: dict[str, Any], dumped: dict[str, int], consistent: bool) -> list[str]:
    """Say where the dump does not hold what the database held when it was written."""
    problems = []
    if size <= len(DUMP_MAGIC):
        problems.append(f"{DUMP} is empty ({size} bytes)")
    missing = [name for name in tables if name not in dumped]
    if missing:
        problems.append(f"{DUMP} holds no data for table {', '.join(missing[:5])}")
    for name, stats in tables.items():
        got = dumped.get(name)
        if got is None:
            continue
        # Without one exported snapshot, writes between the dump and the counts can differ; an empty dump
        # of a table that has rows cannot come from them.
        if (consistent and got != stats["rows"]) or (not consistent and got == 0 and stats["rows"]):
            problems.append(f"{DUMP} holds {got:,} rows of table {name}, the database had {stats['rows']:,}")
    return problems


def _check_free_space(directory: Path, data_bytes: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < data_bytes + FREE_SPACE_RESERVE:
        raise SnapshotFailed(
            f"not enough free space for a snapshot in {directory}: {human_size(free)} free, the tables hold "
            f"{human_size(data_bytes)} (and {human_size(FREE_SPACE_RESERVE)} stay free)",
            hint="free some space or set `artifacts:` in runbook.yml to a bigger disk")


def stream_dump(target: Target, client: PgClient, path: Path, snapshot: str | None, name: str,
                settings: DatabaseSettings | None, on_transfer: OnTransfer) -> tuple[DumpReport, int, str]:
    """Run the dump command into path, hashing the file as it grows; return its report, size and sha256."""
    create_output_file(path).close()  # there before the hasher opens it; the command only refills it
    hasher = FileHasher(path)
    copy = CopyProgress(settings, name) if settings is not None else None

    def sample() -> Transfer:
        done = copy.read() if copy is not None else None
        if done is None or copy is None:
            return Transfer("snapshot", hasher.size, None, "of dump written")
        return Transfer("snapshot", done, copy.total, "of the tables read")

    try:
        with Sampler(on_transfer, sample):
            result = target.exec_to_file(client.service, ["sh", "-c", DUMP_SCRIPT, "runbook-dump",
                                                          *dump_argv(snapshot)], path,
                                         env={**client.env, "PGAPPNAME": name})
        size, sha256 = hasher.finish()
    finally:
        hasher.close()
        if copy is not None:
            copy.close()
    report = parse_report(result.stderr)
    report.exit_code = result.exit_code
    return report, size, sha256


def _tables_and_history(query: Query, want_history: bool) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    tables = table_stats(query)
    history = history_rows(query) if want_history else None
    return tables, history, str(query("SHOW server_version")[0][0])


def _stop(counting: Beside[Any] | None, conn: Any) -> None:
    """Cancel the counting query (the dump failed): the transaction cannot end while it runs."""
    if counting is None or conn is None:
        return
    with contextlib.suppress(Exception):
        conn.cancel_safe() if hasattr(conn, "cancel_safe") else conn.cancel()
    counting.wait(30)


def take_database(target: Target, db: Database, directory: Path, snapshot_id: str, want_history: bool,
                  progress: Progress, on_transfer: OnTransfer = no_transfer
                  ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Dump the database into directory, proven readable and whole; return the manifest's part and history."""
    settings = db.settings
    client = pg_client(target, settings)
    path = directory / DUMP
    with reading(db, f"runbook snapshot {snapshot_id}") as (query, conn):
        _check_free_space(directory, int(query(DATA_SIZE_SQL)[0][0]))
        # pg_dump imports our transaction's snapshot: dump, counts and history rows see the same data.
        exported = str(query("SELECT pg_export_snapshot()")[0][0]) if conn is not None else None
        counting = None
        if conn is not None:
            # Counted on this connection, in that snapshot, while pg_dump reads the same data: on one core,
            # since parallel workers would only take cores from pg_dump, which the snapshot waits for anyway.
            query("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
            counting = Beside(lambda: _tables_and_history(query, want_history), "count")
        started = time.monotonic()
        try:
            report, size, sha256 = stream_dump(target, client, path, exported, f"runbook dump {snapshot_id}"[:63],
                                               settings if conn is not None else None, on_transfer)
        except BaseException:
            _stop(counting, conn)
            raise
        elapsed = time.monotonic() - started
        with path.open("rb") as fh:
            head = fh.read(len(DUMP_MAGIC))
        problem = stream_problem(report, size, sha256, head)
        if problem is not None:
            _stop(counting, conn)
            raise SnapshotFailed(problem)
        tables, history, server_version = (counting.result() if counting is not None
                                           else _tables_and_history(query, want_history))
    read_back = parse_read_back(read_report(target, client, report))
    problems = size_problems(size, tables, read_back.rows, consistent=exported is not None)
    if problems:
        raise SnapshotFailed("; ".join(problems[:3]), hint="the dump is not whole: take the snapshot again")
    dumped_rows = sum(read_back.rows.values())
    progress(f"database dump: {human_size(size)} in {elapsed:.1f} s, read back whole by pg_restore as it "
             f"was written (sha256 agrees)")
    progress(f"{len(tables)} tables, {sum(t['rows'] for t in tables.values()):,} rows counted"
             + (" in the same snapshot" if exported else "") + f"; {dumped_rows:,} rows read back from the dump")
    database = {"name": settings.dbname, "user": settings.user, "server_version": server_version,
                "consistent": exported is not None, "dump_seconds": round(elapsed, 3),
                "compression": f"gzip {COMPRESSION}", "dumped_by": read_back.dumped_by, "dumped_rows": dumped_rows,
                "large_objects": read_back.large_objects, "transaction_blocks": read_back.transaction_blocks,
                "tables": tables, "size": size, "sha256": sha256}
    return database, history
