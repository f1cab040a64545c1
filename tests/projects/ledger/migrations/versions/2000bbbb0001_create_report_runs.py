"""create report runs (the reporting branch)

Revision ID: 2000bbbb0001
Revises: 1000aaaa0001
Create Date: 2026-11-30 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2000bbbb0001'
down_revision = '1000aaaa0001'
branch_labels = ('reporting',)
depends_on = None


def upgrade():
    op.create_table(
        "report_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("title", sa.String(100), nullable=False),
    )


def downgrade():
    op.drop_table("report_runs")
