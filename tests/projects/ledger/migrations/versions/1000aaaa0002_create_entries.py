"""create entries

Revision ID: 1000aaaa0002
Revises: 1000aaaa0001
Create Date: 2026-11-30 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '1000aaaa0002'
down_revision = '1000aaaa0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
    )


def downgrade():
    op.drop_table("entries")
