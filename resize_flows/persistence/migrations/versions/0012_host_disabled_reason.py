"""hosts keep the reason they were disabled

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

``host disable HOST --reason TEXT`` (and ``host drain``, which disables
the host it empties) records why, as Nova's ``disabled_reason`` of a
compute service. NULL: the host is enabled, or was disabled without a
reason. The ``enabled`` flag itself has been there since 0001.
"""
from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('hosts', sa.Column('disabled_reason', sa.String(length=255),
                                     nullable=True))


def downgrade():
    with op.batch_alter_table('hosts') as batch:
        batch.drop_column('disabled_reason')
