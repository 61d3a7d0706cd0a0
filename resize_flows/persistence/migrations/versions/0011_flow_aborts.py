"""abort requests of flows

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

``flow_aborts``: one row per flow an operator asked to abort (``server
migration abort``), read by the flow's holder at each safe point.
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'flow_aborts',
        sa.Column('flow_id', sa.String(length=36), nullable=False),
        sa.Column('requested_at', sa.DateTime(), nullable=False),
        sa.Column('requested_by', sa.String(length=255), nullable=True),
        sa.Column('request_id', sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint('flow_id', name=op.f('pk_flow_aborts')),
    )


def downgrade():
    op.drop_table('flow_aborts')
