"""audit log rows name an account (depends on the main line)

Revision ID: a1b2c3d4e5f7
Revises: a1b2c3d4e5f6
Create Date: 2026-11-30 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1b2c3d4e5f7'
down_revision = 'a1b2c3d4e5f6'
branch_labels = None
depends_on = '1000aaaa0001'


def upgrade():
    op.add_column("audit_log", sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=True))


def downgrade():
    op.drop_column("audit_log", "account_id")
