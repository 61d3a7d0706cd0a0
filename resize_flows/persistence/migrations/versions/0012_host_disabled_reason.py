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
    # Plain DROP COLUMN (SQLite has it since 3.35), not a batch: a batch
    # recreates the table on SQLite, whose DROP TABLE the foreign keys of
    # the instances and allocations that name a host refuse.
    op.drop_column('hosts', 'disabled_reason')
