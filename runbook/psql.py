"""SQL through `psql` inside the db service, for when no network path reaches PostgreSQL from this host.

Parameters are bound on the client with psycopg's own quoting (`sql.Literal`), so values are still
never pasted into SQL as text. A session advisory lock cannot outlive one psql call, so this path relies
on the host lock alone, and the report says so.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from psycopg import sql

from runbook.database import Database, explain_connect_error
from runbook.errors import EnvironmentNotReady, StepFailed
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
        return None

    def query(self, text: str, params: dict[str, Any] | None = None,
              identifiers: dict[str, str] | None = None,
              timeout: float | None = None) -> tuple[list[str], list[list[Any]], str]:
        statement = compose_client_side(text, params, identifiers)
        env = {"PGCONNECT_TIMEOUT": CONNECT_TIMEOUT}
        if self.settings.password:
            env["PGPASSWORD"] = self.settings.password
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
        return None
