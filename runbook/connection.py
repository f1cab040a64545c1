"""Choose how SQL reaches PostgreSQL: psycopg over the network, or psql inside the db service."""

from __future__ import annotations

from runbook.database import Database
from runbook.psql import PsqlDatabase
from runbook.targets.base import DatabaseSettings, Target

PSQL_NOTE = ("SQL ran through psql in the db service (no network path to PostgreSQL);"
             " only the host lock guarded this run")


def open_database(target: Target, settings: DatabaseSettings, application_name: str = "runbook") -> Database:
    """Return the Database for the path the target found; connections open on first use."""
    if settings.via == "psql-in-container":
        return PsqlDatabase(target, settings)
    return Database(settings, application_name=application_name)
