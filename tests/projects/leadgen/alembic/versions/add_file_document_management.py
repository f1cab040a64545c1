"""add file document management

Revision ID: file_doc_mgmt_001
Revises: 2dd19a2d0626
Create Date: 2025-11-21 16:25:02.771930

Written by hand on another branch, from init_schema: Alembic now sees two heads.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'file_doc_mgmt_001'
down_revision = '2dd19a2d0626'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'document_categories',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(100), nullable=False, unique=True),
    )
    op.create_table(
        'file_documents',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('category_id', sa.Integer(), sa.ForeignKey('document_categories.id'), nullable=True),
        sa.Column('lead_id', sa.Integer(), sa.ForeignKey('leads.id', ondelete='CASCADE'), nullable=True),
        sa.Column('uploaded_by', sa.Integer(), sa.ForeignKey('users.id'), nullable=False),
        sa.Column('filename', sa.String(255), nullable=False),
        sa.Column('content_type', sa.String(100), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        'document_shares',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('document_id', sa.Integer(), sa.ForeignKey('file_documents.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=False),
        sa.Column('permission', sa.String(20), nullable=False, server_default='read'),
    )
    op.create_table(
        'document_versions',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('document_id', sa.Integer(), sa.ForeignKey('file_documents.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('storage_path', sa.String(500), nullable=False),
        sa.Column('created_at', sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint('document_id', 'version'),
    )


def downgrade():
    op.drop_table('document_versions')
    op.drop_table('document_shares')
    op.drop_table('file_documents')
    op.drop_table('document_categories')
