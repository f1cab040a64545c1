"""add document tags

Revision ID: 8d4f5a6b7c89
Revises: file_doc_mgmt_001
Create Date: 2025-11-21 17:02:45.310266

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '8d4f5a6b7c89'
down_revision: Union[str, Sequence[str], None] = 'file_doc_mgmt_001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'document_tags',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('document_id', sa.Integer(), sa.ForeignKey('file_documents.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('tag', sa.String(50), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('document_tags')
