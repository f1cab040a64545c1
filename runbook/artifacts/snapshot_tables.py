"""What the database holds, read through SQL: every table's row count and checksum, the history rows."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from runbook.database.postgres import HISTORY_QUERIES, Database
from runbook.errors import SnapshotFailed

# Tables bigger than this get a row count but no checksum: hashing every row costs a full read.
CHECKSUM_MAX_BYTES = 512 * 1024 * 1024
# The text of a row depends on these; a checksum must not change with the client's environment.
STABLE_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
                   "extra_float_digits": "3", "bytea_output": "hex"}
DATA_SIZE_SQL = (
    "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg_toast%'"
)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# How a table's checksum is computed, named by the prefix of the value in the manifest, so that a restore
# checks each table the way its snapshot summed it (snapshots of manifest format 1 have bare md5 values).
RECORD_HASH, TEXT_HASH, MD5 = "h", "t", "md5"
# Column types (after domains and arrays) whose values PostgreSQL hashes in binary: hashing the whole row
# then needs no text at all. Any other type (geometry, json, composite, range...) is hashed as text.
BINARY_HASHED = ("int2", "int4", "int8", "oid", "numeric", "float4", "float8", "bool", "char", "name", "text",
                 "varchar", "bpchar", "bytea", "uuid", "jsonb", "date", "time", "timestamp", "timestamptz",
                 "interval", "inet", "cidr", "macaddr")
TABLES_SQL = (
    "SELECT c.relname, pg_relation_size(c.oid), bool_and(a.attnum IS NULL OR b.typtype = 'e'"
    " OR b.oid = ANY (ARRAY[" + ", ".join(f"'{name}'" for name in BINARY_HASHED) + "]::regtype[]))"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    " LEFT JOIN pg_type t ON t.oid = a.atttypid"
    " LEFT JOIN pg_type e ON e.oid = CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END"
    " LEFT JOIN pg_type b ON b.oid = CASE WHEN e.typtype = 'd' THEN e.typbasetype ELSE e.oid END"
    # Ordinary tables only, leaf partitions included: pg_dump writes the rows of a partitioned table
    # under its partitions, and counting the parent too would count them twice.
    " WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY c.oid, c.relname ORDER BY c.relname"
)


def checksum_kind(value: str | None) -> str | None:
    """Return how a checksum in a manifest was computed: RECORD_HASH, TEXT_HASH, MD5, or None (no checksum)."""
    if not value:
        return None
    kind, colon, _ = value.partition(":")
    return kind if colon and kind in (RECORD_HASH, TEXT_HASH) else MD5


def _checksum(kind: str | None, table: str) -> tuple[str, str]:
    """Return the checksum expression and the FROM clause for one table, in constant memory and no sort."""
    if kind == RECORD_HASH:  # the sum of a 64-bit hash of every row, from its binary values
        return "'h:' || coalesce(sum(hash_record_extended(t, 0)), 0)", f"{table} t"
    if kind == TEXT_HASH:  # the same from each row's text, for types with no binary hash
        return "'t:' || coalesce(sum(hashtextextended(t::text, 0)), 0)", f"{table} t"
    if kind == MD5:  # format 1: the md5 of each row's text, added up as two 64-bit halves
        half = "coalesce(sum(('x' || substr(h, {0}, 16))::bit(64)::bigint::numeric), 0)::text"
        return f"md5({half.format(1)} || ':' || {half.format(17)})", f"(SELECT md5(t::text) AS h FROM {table} t) s"
    return "NULL::text", table


def stats_sql(tables: list[tuple[str, str | None]]) -> str:
    """One statement (one MVCC snapshot) counting every table, with an order-free checksum of its rows.

    `tables` pairs each name with how to checksum it (None: count only). A row-order-free sum needs
    constant memory and no sort, whatever the table's size.
    """
    parts = []
    for index, (name, kind) in enumerate(tables):
        checksum, source = _checksum(kind, f"public.{_ident(name)}")
        parts.append(f"SELECT {index} AS i, count(*) AS n, {checksum} AS checksum FROM {source}")
    return " UNION ALL ".join(parts)


Query = Callable[[str], list[list[Any]]]


def table_stats(query: Query, kinds: dict[str, str | None] | None = None,
                known: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Return {table: {rows, checksum}} for every table of the public schema.

    Without `kinds` (a snapshot), every table up to CHECKSUM_MAX_BYTES gets a checksum, hashed from its
    binary values where every column's type allows it. With `kinds` (a check against a manifest), each
    table is summed as named there and any other table is only counted, or not even read when `known`
    already holds its rows.
    """
    found = query(TABLES_SQL)
    if not found:
        return {}
    if kinds is None:
        # hash_record_extended came with PostgreSQL 14; hashtextextended with 11.
        version = int(query("SHOW server_version_num")[0][0])
        binary_kind = RECORD_HASH if version >= 140000 else TEXT_HASH if version >= 110000 else MD5
        text_kind = TEXT_HASH if version >= 110000 else MD5
        plan = [(str(name), (binary_kind if binary else text_kind) if int(size) <= CHECKSUM_MAX_BYTES else None)
                for name, size, binary in found]
    else:
        plan = [(str(name), kinds.get(str(name))) for name, _, _ in found]
    stats: dict[str, dict[str, Any]] = {name: {"rows": known[name], "checksum": None, "loaded": True}
                                        for name, kind in plan if kind is None and known and name in known}
    plan = [(name, kind) for name, kind in plan if name not in stats]
    for i, rows, checksum in query(stats_sql(plan)) if plan else []:
        stats[plan[int(i)][0]] = {"rows": int(rows), "checksum": None if checksum in (None, "") else str(checksum)}
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

