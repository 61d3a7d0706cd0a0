"""who locked a server; the project a flow belongs to

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``instances.locked_by`` says who locked a server, as Nova's: ``owner`` (a
member of its project) or ``admin`` (anyone else, i.e. an admin of
another project); an admin's lock needs an admin (or the unlock-override
rule) to undo. A server locked before this revision is taken as locked by
an admin: who did is not known, so the stricter answer.

``flow_details.project_id`` is the project of the flow's server, against
which every flow rule is checked; it stays when the server is deleted.
Flows stored before are given their server's project where the server
still exists; the others keep NULL and only an admin reaches them.
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('instances', sa.Column('locked_by', sa.String(length=16),
                                         nullable=True))
    op.add_column('flow_details', sa.Column(
        'project_id', sa.String(length=255), nullable=True))
    op.create_index('ix_flow_details_project_id_created_at', 'flow_details',
                    ['project_id', 'created_at', 'uuid'])
    instances = sa.table('instances', sa.column('uuid', sa.String),
                         sa.column('project_id', sa.String),
                         sa.column('locked', sa.Boolean),
                         sa.column('locked_by', sa.String))
    flows = sa.table('flow_details', sa.column('instance_uuid', sa.String),
                     sa.column('project_id', sa.String))
    op.execute(instances.update().where(instances.c.locked == sa.true())
               .values(locked_by='admin'))
    op.execute(flows.update().values(project_id=(
        sa.select(instances.c.project_id)
        .where(instances.c.uuid == flows.c.instance_uuid)
        .scalar_subquery())))


def downgrade():
    with op.batch_alter_table('flow_details') as batch:
        batch.drop_index('ix_flow_details_project_id_created_at')
        batch.drop_column('project_id')
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('locked_by')
