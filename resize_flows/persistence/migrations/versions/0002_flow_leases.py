"""flow leases: who runs a flow, until when

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'flow_leases',
        sa.Column('flow_id', sa.String(length=36), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=False),
        sa.Column('acquired_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('flow_id', name=op.f('pk_flow_leases')),
    )
    op.create_index(op.f('ix_flow_leases_expires_at'), 'flow_leases',
                    ['expires_at'], unique=False)
