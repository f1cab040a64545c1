"""add scores table

Revision ID: 137b19ac6ef3
Revises: 2dd19a2d0626
Create Date: 2025-11-19 14:03:10.551872

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '137b19ac6ef3'
down_revision = '2dd19a2d0626'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'scores',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('lead_id', sa.Integer(), sa.ForeignKey('leads.id', ondelete='CASCADE'), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(200), nullable=True),
        sa.Column('created_at', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )
    op.create_index('ix_scores_lead_id', 'scores', ['lead_id'])


def downgrade():
    op.drop_index('ix_scores_lead_id', table_name='scores')
    op.drop_table('scores')
