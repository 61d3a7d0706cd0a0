"""an instance's config drive

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

``instances.config_drive`` says whether a server has a config drive
(``disk.config``), as Nova's ``instances.config_drive``; false for the
servers already there, which have none.
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('instances', sa.Column(
        'config_drive', sa.Boolean(), server_default='0',
        nullable=False))


def downgrade():
    # Plain DROP COLUMN, not a batch (see 0008).
    op.drop_column('instances', 'config_drive')
