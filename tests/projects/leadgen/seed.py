"""Insert sample rows into the leadgen tables that exist, so a test can check that data survives a repair.

    python seed.py [--rows N]

Reads DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD like alembic/env.py. Tables created by a revision
that is not applied yet are skipped.
"""

import argparse
import os

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL


def database_url() -> URL:
    return URL.create(
        "postgresql+psycopg",
        username=os.environ.get("DB_USER", "postgres"),
        password=os.environ.get("DB_PASSWORD") or None,
        host=os.environ.get("DB_HOST", "127.0.0.1"),
        port=int(os.environ.get("DB_PORT", "5432")),
        database=os.environ.get("DB_NAME", "leadgen"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20)
    rows = parser.parse_args().rows
    engine = create_engine(database_url())
    tables = set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        for i in range(1, rows + 1):
            user_id = conn.execute(
                text("INSERT INTO users (email, full_name) VALUES (:email, :name) RETURNING id"),
                {"email": f"user{i}@example.test", "name": f"User {i}"},
            ).scalar_one()
            conn.execute(
                text("INSERT INTO sessions (user_id, token, expires_at) "
                     "VALUES (:user_id, :token, TIMESTAMP '2030-01-01 00:00:00')"),
                {"user_id": user_id, "token": f"token-{i:04d}"},
            )
            lead_id = conn.execute(
                text("INSERT INTO leads (owner_id, name, email, status) "
                     "VALUES (:owner, :name, :email, :status) RETURNING id"),
                {"owner": user_id, "name": f"Lead {i}", "email": f"lead{i}@example.test",
                 "status": ("new", "contacted", "won")[i % 3]},
            ).scalar_one()
            if "scores" in tables:
                conn.execute(text("INSERT INTO scores (lead_id, value, reason) VALUES (:lead, :value, 'seed')"),
                             {"lead": lead_id, "value": (i * 37) % 100})
            if "documents" in tables:
                conn.execute(text("INSERT INTO documents (lead_id, title, body) VALUES (:lead, :title, :body)"),
                             {"lead": lead_id, "title": f"Proposal {i}", "body": f"Terms for lead {i}."})
            if "file_documents" in tables:
                conn.execute(
                    text("INSERT INTO file_documents (lead_id, uploaded_by, filename, content_type, size_bytes) "
                         "VALUES (:lead, :user, :filename, 'application/pdf', :size)"),
                    {"lead": lead_id, "user": user_id, "filename": f"lead-{i}.pdf", "size": 1024 * i},
                )
    print(f"seeded {rows} users, sessions and leads" + (" with scores" if "scores" in tables else "")
          + (" and documents" if "documents" in tables else ""))


if __name__ == "__main__":
    main()
