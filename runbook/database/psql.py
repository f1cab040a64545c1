"""SQL through `psql` inside the db service, for when no network path reaches PostgreSQL from this host.

Parameters are bound on the client with psycopg's own quoting (`sql.Literal`), so values are still
never pasted into SQL as text. A session advisory lock cannot outlive one psql call, so the run's lock is
held by one more psql that lives as long as the run: it reads its stdin from a FIFO this process keeps
open, and ends (releasing the lock) when the FIFO closes, on release or when this process dies.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any

from psycopg import sql

from runbook.database.postgres import (
    ADVISORY_LOCK,
    HOLDERS_SQL,
    Database,
    describe_holder,
    explain_connect_error,
)
from runbook.errors import EnvironmentNotReady, LockHeld, StepFailed
from runbook.targets.base import DatabaseSettings, Target

NULL_MARK = "\\N"
_PARAM = re.compile(r"%\((\w+)\)s|%%")
_STATUS = re.compile(r"^[A-Z][A-Z ]*[A-Z](?: \d+)*$")
_INTEGER = re.compile(r"^-?\d{1,18}$")


def compose_client_side(text: str, params: dict[str, Any] | None, identifiers: dict[str, str] | None) -> str:
    """Return the statement with `%(name)s` bound as literals and `{name}` as quoted identifiers."""
    params = params or {}
    if not identifiers:
        text = text.replace("{", "{{").replace("}", "}}")
    clash = set(params) & set(identifiers or {})
    if clash:
        raise StepFailed(f"SQL names {', '.join(sorted(clash))} both as a parameter and an identifier")

    def placeholder(match: re.Match) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(1) not in params:
            raise StepFailed(f"SQL uses %({match.group(1)})s but no such parameter is given")
        return "{" + match.group(1) + "}"

    # Without parameters psycopg sends the text as it is, `%%` included; so does this path.
    template = _PARAM.sub(placeholder, text) if params else text
    values: dict[str, sql.Composable] = {k: sql.Literal(v) for k, v in params.items()}
    values.update({k: sql.Identifier(v) for k, v in (identifiers or {}).items()})
    return sql.SQL(template).format(**values).as_string(None)  # type: ignore[arg-type]


def _value(text: str) -> Any:
    if text == NULL_MARK:
        return None
    return int(text) if _INTEGER.match(text) else text


def parse_csv_output(output: str) -> tuple[list[str], list[list[Any]], str]:
    """Split psql --csv output into columns, rows and the last command status line."""
    records = list(csv.reader(io.StringIO(output)))
    if not records:
        return [], [], ""
    if len(records[0]) == 1 and _STATUS.match(records[0][0]) and all(
            len(r) == 1 and _STATUS.match(r[0]) for r in records):
        return [], [], records[-1][0]
    columns, rows = records[0], [[_value(v) for v in r] for r in records[1:]]
    return columns, rows, f"SELECT {len(rows)}"


# runbook's own queries (history rows, counts) when no step's timeout applies.
DEFAULT_TIMEOUT = 600.0
# psql waits this long for the server before giving up, as psycopg does.
CONNECT_TIMEOUT = "5"


class PsqlDatabase(Database):
    """The Database interface over `psql` runs in the db service."""

    def __init__(self, target: Target, settings: DatabaseSettings, note: str = ""):
        super().__init__(settings)
        self.target = target
        # For the report: why SQL goes this way.
        self.note = note
        self._lock: LockSession | None = None

    def probe(self, why: str) -> None:
        """Prove psql in the db service reaches the server; else one line with both failures (exit 4)."""
        try:
            self.query("SELECT 1", timeout=30)
        except (EnvironmentNotReady, StepFailed) as exc:
            service = self.settings.extra.get("service", "db")
            said = str(exc.__cause__).removeprefix("psql: error: ") if exc.__cause__ else exc.message
            raise EnvironmentNotReady(
                f"{why}; psql inside the {service} service cannot connect either: {said}",
                hint=f"is PostgreSQL running in the {service} service? see `docker compose logs {service}`",
            ) from exc

    def connect(self):  # type: ignore[override]
        raise EnvironmentNotReady("no direct connection to the database on this path (psql in the db service)")

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def query(self, text: str, params: dict[str, Any] | None = None,
              identifiers: dict[str, str] | None = None,
              timeout: float | None = None) -> tuple[list[str], list[list[Any]], str]:
        if self._lock is not None and not self._lock.alive():
            raise EnvironmentNotReady("the psql session holding the run lock ended: runbook stopped rather than "
                                      f"go on unlocked ({self._lock.reason()})",
                                      hint="is PostgreSQL still running in the db service?")
        statement = compose_client_side(text, params, identifiers)
        env = self.client_env()
        if timeout:
            # The server cancels the statement too: killing psql alone would leave it running.
            env["PGOPTIONS"] = f"-c statement_timeout={max(1, int(timeout * 1000))}"
        limit = timeout + 5 if timeout else DEFAULT_TIMEOUT
        result = self.target.exec(
            "db",
            ["psql", "-X", "--csv", "-v", "ON_ERROR_STOP=1", "-P", f"null={NULL_MARK}",
             "-U", self.settings.user, "-d", self.settings.dbname, "-c", statement],
            env=env, timeout=limit,
        )
        if result.timed_out or "canceling statement due to statement timeout" in result.stderr:
            raise StepFailed(f"SQL timed out after {timeout or limit:g} s and was cancelled")
        if result.exit_code != 0:
            message = (result.stderr.strip().splitlines() or [f"psql exited {result.exit_code}"])[0]
            if result.exit_code == 2 or "connection to server" in message:
                raise explain_connect_error(self.settings, RuntimeError(message)) from RuntimeError(message)
            raise StepFailed(f"SQL failed: {message.removeprefix('ERROR:').strip()}")
        return parse_csv_output(result.stdout)

    def lock_run(self) -> None:
        """Take the advisory lock in a psql session that lasts as long as this run."""
        if not self.target.streams_stdin():
            # Over ssh:// or TLS the exec's stdin is uploaded whole first: no session can stay open.
            self.note += "; no database lock could be held on this Docker connection: only the host lock guarded it"
            return
        session = LockSession(self)
        session.start()
        self._lock = session

    def client_env(self, name: str | None = None) -> dict[str, str]:
        env = {"PGCONNECT_TIMEOUT": CONNECT_TIMEOUT}
        if self.settings.password:
            env["PGPASSWORD"] = self.settings.password
        if name:
            env["PGAPPNAME"] = name
        return env


# The block size in which the Docker exec pump reads a command's stdin (runbook/targets/compose/hijack.py).
STDIN_BLOCK = 256 * 1024
# How long the lock session may take to start and answer before the run gives up (exit 4).
LOCK_START_TIMEOUT = 30.0


class LockSession:
    """One psql in the db service holding the run's advisory lock; its stdin is a FIFO this process holds."""

    def __init__(self, db: PsqlDatabase):
        self.db = db
        self.name = f"runbook lock {uuid.uuid4().hex[:12]}"
        self._dir = tempfile.mkdtemp(prefix="runbook-lock-")
        self._fifo = os.path.join(self._dir, "stdin")
        self._writer: int | None = None
        self._thread: threading.Thread | None = None
        self._result: Any = None
        self._error: BaseException | None = None

    def _serve(self) -> None:
        try:
            self._result = self.db.target.exec_from_file(
                "db", ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", self.db.settings.user,
                       "-d", self.db.settings.dbname], self._fifo, env=self.db.client_env(self.name), timeout=None)
        except BaseException as exc:  # reported by alive()/reason(); a thread must not die silently
            self._error = exc

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def reason(self) -> str:
        if self._error is not None:
            return str(self._error) or type(self._error).__name__
        if self._result is not None:
            lines = [line for line in self._result.stderr.splitlines() if line.strip()]
            return lines[-1] if lines else f"psql exited {self._result.exit_code}"
        return "psql did not start"

    def start(self) -> None:
        os.mkfifo(self._fifo, 0o600)
        self._thread = threading.Thread(target=self._serve, name="runbook-lock", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + LOCK_START_TIMEOUT
        try:
            while self._writer is None:
                try:
                    # Non-blocking: fails with ENXIO until psql's side has the FIFO open for reading.
                    self._writer = os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    if not self.alive() or time.monotonic() > deadline:
                        raise EnvironmentNotReady(f"cannot start the psql session that holds the run lock: "
                                                  f"{self.reason()}") from None
                    time.sleep(0.05)
            os.set_blocking(self._writer, True)
            statement = f"SELECT pg_try_advisory_lock({ADVISORY_LOCK[0]}, {ADVISORY_LOCK[1]});\n".encode()
            # The exec's stdin pump reads whole blocks of STDIN_BLOCK bytes: fill one, or the statement would
            # wait in the pump until the FIFO closes. psql skips the blanks.
            padded = statement + b" " * (STDIN_BLOCK - len(statement) - 1) + b"\n"
            with os.fdopen(os.dup(self._writer), "wb") as handle:
                handle.write(padded)
            self._wait_for_answer(deadline)
        except BaseException:
            self.release()
            raise

    def _wait_for_answer(self, deadline: float) -> None:
        while True:
            holders = self.db.query(HOLDERS_SQL, {"a": ADVISORY_LOCK[0], "b": ADVISORY_LOCK[1]})[1]
            if any(h[0] == self.name for h in holders):
                return
            if holders:
                raise LockHeld(f"another runbook run holds the database lock on {self.db.settings.dbname}: "
                               + describe_holder(*holders[0]),
                               hint="wait for it to finish; the lock ends with that run's connection")
            if not self.alive() or time.monotonic() > deadline:
                raise EnvironmentNotReady(f"the psql session meant to hold the run lock never took it: "
                                          f"{self.reason()}")
            time.sleep(0.1)

    def release(self) -> None:
        """Close the FIFO: psql reads end of input and exits, and the lock ends with its session."""
        if self._writer is not None:
            with contextlib.suppress(OSError):
                os.close(self._writer)
            self._writer = None
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=15)
        shutil.rmtree(self._dir, ignore_errors=True)
