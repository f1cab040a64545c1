"""Choose how SQL reaches PostgreSQL: psycopg over the network, or psql inside the db service.

The address worked out from the db container is only a guess until a connection proves it: when psycopg
cannot reach it (refused, timed out, no route; not a wrong password), SQL goes through psql inside the db
container instead, and the report says why.
"""

from __future__ import annotations

import dataclasses

from runbook.database.postgres import Database, is_network_failure
from runbook.database.psql import PsqlDatabase
from runbook.errors import EnvironmentNotReady
from runbook.targets.base import DatabaseSettings, Target

PSQL_VIA = "psql-in-container"
PSQL_NOTE = ("SQL ran through psql in the db service (no network path to PostgreSQL);"
             " the run lock was held by one long-lived psql session")


def open_database(target: Target, settings: DatabaseSettings, application_name: str = "runbook") -> Database:
    """Return a Database on the path that works; a guessed network path is tried first, psql is the fallback."""
    if settings.via == PSQL_VIA:
        return PsqlDatabase(target, settings, note=PSQL_NOTE)
    database = Database(settings, application_name=application_name)
    if "container" not in settings.extra:
        return database  # an address from runbook.yml or the environment: what the user asked for, as it is
    try:
        database.connect()
    except EnvironmentNotReady as exc:
        if not is_network_failure(exc.__cause__ or exc):
            raise
        where = f"{settings.host}:{settings.port}"
        # psycopg says `connection failed: connection to server at "h", port p failed: Connection refused`.
        reason = (str(exc.__cause__ or exc).strip().splitlines() or ["?"])[0].rsplit(": ", 1)[-1]
        note = (f"no network path to PostgreSQL at {where} ({reason}); SQL ran through psql in the db "
                "service instead; the run lock was held by one long-lived psql session")
        fallback = PsqlDatabase(target, dataclasses.replace(settings, via=PSQL_VIA, extra=dict(settings.extra)),
                                note=note)
        fallback.probe(f"database unreachable at {where}/{settings.dbname} ({reason})")
        return fallback
    return database
