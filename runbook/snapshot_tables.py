"""What the database holds, read through SQL: every table's row count and checksum, the history rows."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from runbook.database import HISTORY_QUERIES, Database
from runbook.errors import SnapshotFailed

# Tables bigger than this get a row count but no checksum: hashing every row costs a full read.
CHECKSUM_MAX_BYTES = 512 * 1024 * 1024
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
        from runbook.database import explain_connect_error

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

