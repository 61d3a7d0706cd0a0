"""flows an operator abandoned

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

``flow_abandons``: one row per flow given up on with ``flow abandon``
(who, when, why); such a flow's status is ``abandoned``. Empty at first.
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'flow_abandons',
        sa.Column('flow_id', sa.String(length=36), nullable=False),
        sa.Column('reason', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('project_id', sa.String(length=255), nullable=True),
        sa.Column('abandoned_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('flow_id', name=op.f('pk_flow_abandons')),
    )


def downgrade():
    op.drop_table('flow_abandons')
