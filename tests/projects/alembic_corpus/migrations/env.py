"""A minimal Alembic environment for a real project's revision folder: no application, no models.

The corpus projects' own env.py files build their engine from the application's settings; the revision
files only need `op` and a connection. Without target_metadata, `alembic check` has nothing to compare.

Some projects' revisions rely on the naming convention of their models' MetaData (Alembic names
unnamed constraints with it): naming_convention.json beside alembic.ini, when present, gives it. It is
made the default of every MetaData in this process, since there is no target_metadata to carry it.
"""

import json
import os

import sqlalchemy.sql.schema
from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

target_metadata = None
NAMING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "naming_convention.json")
if os.path.exists(NAMING):
    with open(NAMING) as handle:
        sqlalchemy.sql.schema.DEFAULT_NAMING_CONVENTION = json.load(handle)


def database_url() -> URL:
    return URL.create(
        "postgresql+psycopg",
        username=os.environ.get("DB_USER", "postgres"),
        password=os.environ.get("DB_PASSWORD") or None,
        host=os.environ.get("DB_HOST", "127.0.0.1"),
        port=int(os.environ.get("DB_PORT", "5432")),
        database=os.environ.get("DB_NAME", "corpus"),
    )


def run_migrations_offline() -> None:
    context.configure(url=database_url().render_as_string(hide_password=False), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
