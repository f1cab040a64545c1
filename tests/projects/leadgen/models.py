"""The leadgen tables as SQLAlchemy models: what the revisions create, so `alembic check` can compare
the live schema with them (alembic/env.py's target_metadata)."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

metadata = MetaData()

Table("users", metadata,
      Column("id", Integer, primary_key=True),
      Column("email", String(255), nullable=False, unique=True),
      Column("full_name", String(200), nullable=False),
      Column("created_at", DateTime, server_default=func.now(), nullable=False))
Table("sessions", metadata,
      Column("id", Integer, primary_key=True),
      Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
      Column("token", String(64), nullable=False, unique=True),
      Column("expires_at", DateTime, nullable=False))
Table("leads", metadata,
      Column("id", Integer, primary_key=True),
      Column("owner_id", Integer, ForeignKey("users.id"), nullable=True),
      Column("name", String(200), nullable=False),
      Column("email", String(255), nullable=True),
      Column("status", String(20), nullable=False, server_default="new"),
      Column("created_at", DateTime, server_default=func.now(), nullable=False),
      Index("ix_leads_status", "status"))
Table("scores", metadata,
      Column("id", Integer, primary_key=True),
      Column("lead_id", Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
      Column("value", Integer, nullable=False),
      Column("reason", String(200), nullable=True),
      Column("created_at", DateTime, server_default=func.now(), nullable=False),
      Index("ix_scores_lead_id", "lead_id"))
Table("documents", metadata,
      Column("id", Integer, primary_key=True),
      Column("lead_id", Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
      Column("title", String(200), nullable=False),
      Column("body", Text, nullable=True),
      Column("created_at", DateTime, server_default=func.now(), nullable=False))
Table("document_categories", metadata,
      Column("id", Integer, primary_key=True),
      Column("name", String(100), nullable=False, unique=True))
Table("file_documents", metadata,
      Column("id", Integer, primary_key=True),
      Column("category_id", Integer, ForeignKey("document_categories.id"), nullable=True),
      Column("lead_id", Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=True),
      Column("uploaded_by", Integer, ForeignKey("users.id"), nullable=False),
      Column("filename", String(255), nullable=False),
      Column("content_type", String(100), nullable=False),
      Column("size_bytes", BigInteger, nullable=False),
      Column("created_at", DateTime, server_default=func.now(), nullable=False))
Table("document_shares", metadata,
      Column("id", Integer, primary_key=True),
      Column("document_id", Integer, ForeignKey("file_documents.id", ondelete="CASCADE"), nullable=False),
      Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
      Column("permission", String(20), nullable=False, server_default="read"))
Table("document_versions", metadata,
      Column("id", Integer, primary_key=True),
      Column("document_id", Integer, ForeignKey("file_documents.id", ondelete="CASCADE"), nullable=False),
      Column("version", Integer, nullable=False),
      Column("storage_path", String(500), nullable=False),
      Column("created_at", DateTime, server_default=func.now(), nullable=False),
      UniqueConstraint("document_id", "version"))
Table("document_tags", metadata,
      Column("id", Integer, primary_key=True),
      Column("document_id", Integer, ForeignKey("file_documents.id", ondelete="CASCADE"), nullable=False),
      Column("tag", String(50), nullable=False))
