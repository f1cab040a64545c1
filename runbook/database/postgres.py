"""PostgreSQL through psycopg 3: queries with bound parameters, identifiers quoted, history rows.

Connection problems become EnvironmentNotReady (exit 4) with one line that names the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from runbook.errors import EnvironmentNotReady, LockHeld, StepFailed
from runbook.targets.base import DatabaseSettings

# pg_try_advisory_lock(int4, int4): the pair shows up as classid/objid in pg_locks.
ADVISORY_LOCK = (0x72756E62, 1)  # "runb"
# Who holds the run lock on this database. Advisory locks belong to one database: a run on another
# database of the same server holds a lock of its own, and is not the holder to name.
HOLDERS_SQL = (
    "SELECT a.application_name, host(a.client_addr),"
    " to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM pg_locks l"
    " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid = %(a)s AND l.objid = %(b)s AND l.granted"
)
HISTORY_QUERIES = {
    "django_migrations": "SELECT app, name FROM django_migrations ORDER BY app, name",
    "alembic_version": "SELECT version_num FROM alembic_version ORDER BY version_num",
}


def _plain(value: Any) -> Any:
    """Make a value JSON-friendly for reports and kept outputs."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


def libpq_environment(parameters: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Return the PG* variables that carry these libpq parameters to a client tool, and the parameters none
    carries (keepalives, sslpassword): pg_dump on the host must connect as runbook's own session does."""
    variables = {o.keyword.decode(): o.envvar.decode()
                 for o in psycopg.pq.Conninfo.get_defaults() if o.envvar is not None}
    env: dict[str, str] = {}
    left: list[str] = []
    for key, value in parameters.items():
        if key in variables:
            env[variables[key]] = value
        else:
            left.append(key)
    return env, sorted(left)


def explain_connect_error(settings: DatabaseSettings, exc: Exception) -> EnvironmentNotReady:
    """Turn a psycopg connection failure into a one-line error that says what to fix."""
    where = f"{settings.host}:{settings.port}/{settings.dbname} as {settings.user}"
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    lowered = str(exc).lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return EnvironmentNotReady(
            f"wrong or missing database password for {where}",
            hint="check POSTGRES_PASSWORD of the db service or `database:` in runbook.yml",
        )
    if "does not exist" in lowered and "database" in lowered:
        return EnvironmentNotReady(f"database {settings.dbname!r} does not exist at {where}",
                                   hint="set database.name in runbook.yml")
    return EnvironmentNotReady(f"database unreachable at {where}: {text}",
                               hint="is the db service running and accepting connections?")


def is_network_failure(exc: BaseException) -> bool:
    """Say whether a failed connect never reached a server that answered (refused, timed out, no route)."""
    lowered = str(exc).lower()
    answered = ("password", "authentication", "does not exist", "pg_hba.conf", "permission denied",
                "too many clients", "ssl")
    return not any(word in lowered for word in answered)


def run_application_name(pid: int, host: str, started: str, playbook: str) -> str:
    """The name a run's session shows in pg_stat_activity: pid, host and start first, cut at 63 bytes."""
    return f"runbook pid {pid} on {host} since {started} {playbook}".encode()[:63].decode(errors="ignore")


def describe_holder(application_name: str | None, client_addr: str | None, backend_start: str | None) -> str:
    """Name the session holding the run lock: what it calls itself, where it connects from, since when."""
    where = f"client {client_addr}" if client_addr else "a local socket client"
    return f"{application_name or 'a session with no name'} ({where}, connected at {backend_start or '?'})"


class Database:
    """One connection for a whole run, opened on first use, autocommit so each statement stands alone."""

    def __init__(self, settings: DatabaseSettings, application_name: str = "runbook"):
        self.settings = settings
        # Shown in pg_stat_activity, which is how a second run names the holder of the lock.
        self.application_name = application_name[:63]
        self._conn: psycopg.Connection | None = None
        self._timeout_ms: int | None = None  # the statement_timeout this session has; None: the server's
        self._locked = False  # this run holds the advisory lock: a new session must take it again

    def connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(**self.settings.conninfo(), autocommit=True,
                                       application_name=self.application_name)
            except psycopg.Error as exc:
                raise explain_connect_error(self.settings, exc) from exc
            self._conn, self._timeout_ms = conn, None
            if self._locked:
                self._relock(conn)
        return self._conn

    def _relock(self, conn: psycopg.Connection) -> None:
        """A lost session lost its advisory lock with it: take it again before any statement, or stop."""
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", ADVISORY_LOCK).fetchone()
        except psycopg.Error as exc:
            self._drop()
            raise explain_connect_error(self.settings, exc) from exc
        if not row or not row[0]:
            self._drop()
            raise LockHeld(f"the connection to {self.settings.dbname} was lost and another session took the "
                           "run lock meanwhile: runbook stopped rather than go on unlocked",
                           hint="check what that session did; the snapshot of this run is there to restore")

    def _drop(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def ensure_idle(self) -> None:
        """Drop a session left busy (a query cut by Ctrl-C); the next statement reconnects and relocks."""
        conn = self._conn
        if conn is not None and not conn.closed and \
                conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._drop()

    def close(self) -> None:
        self._drop()
        self._locked = False

    def query(
        self,
        text: str,
        params: dict[str, Any] | None = None,
        identifiers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[list[str], list[list[Any]], str]:
        """Run SQL; return column names, rows and the status line. Errors raise StepFailed.

        With timeout (seconds) the server cancels the statement after that long, and StepFailed says so.
        """
        statement: sql.Composable = sql.SQL(text)  # type: ignore[arg-type]
        if identifiers:
            statement = sql.SQL(text).format(**{k: sql.Identifier(v) for k, v in identifiers.items()})  # type: ignore[arg-type]
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                self._set_timeout(cur, timeout)
                cur.execute(statement, params or None)
                columns = [c.name for c in cur.description] if cur.description else []
                rows = [[_plain(v) for v in row] for row in cur.fetchall()] if cur.description else []
                return columns, rows, cur.statusmessage or ""
        except psycopg.errors.QueryCanceled as exc:
            raise StepFailed(f"SQL timed out after {timeout:g} s and was cancelled" if timeout
                             else f"SQL was cancelled: {str(exc).strip().splitlines()[0]}") from exc
        except psycopg.OperationalError as exc:
            if conn.closed:
                raise explain_connect_error(self.settings, exc) from exc
            raise StepFailed(f"SQL failed: {str(exc).strip().splitlines()[0]}") from exc
        except psycopg.Error as exc:
            raise StepFailed(f"SQL failed: {str(exc).strip().splitlines()[0]}") from exc

    def _set_timeout(self, cur: psycopg.Cursor, timeout: float | None) -> None:
        """Give this statement the step's time limit; statements of runbook's own keep the session's."""
        wanted = max(1, int(timeout * 1000)) if timeout else None
        if wanted == self._timeout_ms:
            return  # a round trip only when the limit changes, not for every statement
        if wanted is None:
            cur.execute("RESET statement_timeout")
        else:
            cur.execute("SELECT set_config('statement_timeout', %s, false)", (f"{wanted}ms",))
        self._timeout_ms = wanted

    def table_exists(self, name: str) -> bool:
        # 0/1, not a boolean: psql prints booleans as the strings t and f.
        _, rows, _ = self.query("SELECT CASE WHEN to_regclass(%(name)s) IS NULL THEN 0 ELSE 1 END", {"name": name})
        return bool(rows and rows[0][0] == 1)

    def history(self) -> dict[str, list[list[Any]]]:
        """Return the migration history tables that exist, row by row."""
        history: dict[str, list[list[Any]]] = {}
        for table, query in HISTORY_QUERIES.items():
            if self.table_exists(table):
                history[table] = self.query(query)[1]
        return history

    def lock_run(self) -> None:
        """Take the session advisory lock for the whole run; it ends with the connection, even on a crash."""
        _, rows, _ = self.query("SELECT pg_try_advisory_lock(%(a)s, %(b)s)",
                                {"a": ADVISORY_LOCK[0], "b": ADVISORY_LOCK[1]})
        if rows[0][0]:
            self._locked = True
            return
        _, holders, _ = self.query(HOLDERS_SQL, {"a": ADVISORY_LOCK[0], "b": ADVISORY_LOCK[1]})
        raise LockHeld(
            f"another runbook run holds the database lock on {self.settings.dbname}: "
            + (describe_holder(*holders[0]) if holders else "an unknown session"),
            hint="wait for it to finish; the lock ends with that run's connection",
        )

    def server_version(self) -> str:
        return str(self.query("SHOW server_version")[1][0][0])
