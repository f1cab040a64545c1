"""The ledger tables as SQLAlchemy models, so `alembic check` compares the live schema with them.

`audit_notes` is created by a revision the tests add to make a conflict on the audit branch
(audit_versions/a9c8d7e6f5a4_create_audit_notes.py): it is a model only while that file exists.
"""

import os

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

metadata = MetaData()
HERE = os.path.dirname(os.path.abspath(__file__))

Table("accounts", metadata,
      Column("id", Integer, primary_key=True),
      Column("name", String(100), nullable=False))
Table("entries", metadata,
      Column("id", Integer, primary_key=True),
      Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
      Column("amount", Integer, nullable=False))
Table("report_runs", metadata,
      Column("id", Integer, primary_key=True),
      Column("title", String(100), nullable=False))
Table("audit_log", metadata,
      Column("id", Integer, primary_key=True),
      Column("event", String(100), nullable=False),
      Column("account_id", Integer, ForeignKey("accounts.id"), nullable=True))
if os.path.exists(os.path.join(HERE, "audit_versions", "a9c8d7e6f5a4_create_audit_notes.py")):
    Table("audit_notes", metadata,
          Column("id", Integer, primary_key=True),
          Column("note", String(200), nullable=False))
