"""flow details name the job they were posted as

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

``flow_details.job_uuid`` is set once a flow's job is on the jobboard.
A flow that is posted, not leased and still PENDING is ``queued`` (a
conductor will start it), no longer taken for ``interrupted``. Flows
stored before this have none: they keep their status.
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('flow_details', sa.Column(
        'job_uuid', sa.String(length=36), nullable=True))


def downgrade():
    with op.batch_alter_table('flow_details') as batch:
        batch.drop_column('job_uuid')
