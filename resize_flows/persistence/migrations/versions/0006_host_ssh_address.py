"""hosts get an ssh address

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

A host whose instances path is on another machine names that machine's
ssh address (``[user@]host[:port]``); its files are handled there over
ssh and disks reach or leave it by rsync. NULL: the instances path is on
the machine that runs the flows, as before.
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('hosts', sa.Column('ssh', sa.String(length=255),
                                     nullable=True))


def downgrade():
    with op.batch_alter_table('hosts') as batch:
        batch.drop_column('ssh')
