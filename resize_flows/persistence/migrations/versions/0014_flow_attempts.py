"""the attempts of conductors at a flow's job

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

``flow_attempts``: one row per flow posted as a job that a conductor
claimed: how many claims (attempts), the conductor of the last one,
whether it is still under way (a conductor that dies holding the job
leaves it so, and it counts), its error, and once ``[jobboard]/
max_attempts`` were spent, when and why the conductors gave up (the flow
is then ``stuck`` and its job in the jobboard's trash). Deleted with its
flow.
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'flow_attempts',
        sa.Column('flow_id', sa.String(length=64), nullable=False),
        sa.Column('job_uuid', sa.String(length=36), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default='0',
                  nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=True),
        sa.Column('running', sa.Boolean(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('gave_up_at', sa.DateTime(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['flow_id'], ['flow_details.uuid'], ondelete='CASCADE',
            name=op.f('fk_flow_attempts_flow_id_flow_details')),
        sa.PrimaryKeyConstraint('flow_id', name=op.f('pk_flow_attempts')),
    )


def downgrade():
    op.drop_table('flow_attempts')
