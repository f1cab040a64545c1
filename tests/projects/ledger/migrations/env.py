"""Alembic environment of the ledger sample: SQLAlchemy 2, psycopg 3, the URL from DB_* variables."""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# models.py (next to alembic.ini; prepend_sys_path = . puts it on the path) describes what the revisions
# create, so `alembic check` compares the live schema with it.
from models import metadata  # noqa: E402

target_metadata = metadata


def database_url() -> URL:
    return URL.create(
        "postgresql+psycopg",
        username=os.environ.get("DB_USER", "postgres"),
        password=os.environ.get("DB_PASSWORD") or None,
        host=os.environ.get("DB_HOST", "127.0.0.1"),
        port=int(os.environ.get("DB_PORT", "5432")),
        database=os.environ.get("DB_NAME", "ledger"),
    )


def run_migrations_offline() -> None:
    context.configure(
        url=database_url().render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
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
