"""create audit log (the audit branch, a base of its own)

Revision ID: a1b2c3d4e5f6
Revises: 
Create Date: 2026-11-30 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1b2c3d4e5f6'
down_revision = None
branch_labels = ('audit',)
depends_on = None


def upgrade():
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event", sa.String(100), nullable=False),
    )


def downgrade():
    op.drop_table("audit_log")
