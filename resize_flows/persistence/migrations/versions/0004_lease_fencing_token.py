"""flow leases get a fencing token

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

A lease's ``token`` grows each time the lease changes hands. The flow
log's writes of a flow name the holder and its token, so a process whose
lease expired and was taken over (a stalled conductor) has its late writes
refused instead of overwriting the new holder's. Leases held while this
runs get token 0; their holders write without a token until they finish.
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('flow_leases', sa.Column(
        'token', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('flow_leases') as batch:
        batch.drop_column('token')
