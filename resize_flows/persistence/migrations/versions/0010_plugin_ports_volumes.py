"""the records of the reference plugins: ports and volumes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

``ports`` and ``port_bindings`` are the ``ports`` plugin's (a port, its
MAC for life, and its bindings to hosts, ACTIVE or INACTIVE, as
Neutron's); ``volumes`` and ``volume_attachments`` the ``volumes``
plugin's (a file-backed volume and its attachments to an instance on a
host, ``connected`` or not, as Cinder's attachments). Empty at first.
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def _stamps():
    return [sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('updated_at', sa.DateTime(), nullable=True)]


def upgrade():
    op.create_table(
        'ports',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=True),
        sa.Column('mac_address', sa.String(length=17), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ports')),
        sa.UniqueConstraint('mac_address',
                            name=op.f('uq_ports_mac_address')),
    )
    op.create_index(op.f('ix_ports_instance_uuid'), 'ports',
                    ['instance_uuid'])
    op.create_table(
        'port_bindings',
        sa.Column('port_id', sa.String(length=36), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(
            ['port_id'], ['ports.id'], ondelete='CASCADE',
            name=op.f('fk_port_bindings_port_id_ports')),
        sa.ForeignKeyConstraint(
            ['host'], ['hosts.name'],
            name=op.f('fk_port_bindings_host_hosts')),
        sa.PrimaryKeyConstraint('port_id', 'host',
                                name=op.f('pk_port_bindings')),
    )
    op.create_table(
        'volumes',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('size_gb', sa.Integer(), nullable=False),
        sa.Column('disk_format', sa.String(length=16), nullable=False),
        sa.Column('path', sa.String(length=1024), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_volumes')),
    )
    op.create_table(
        'volume_attachments',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('volume_id', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('connected', sa.Boolean(), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(
            ['volume_id'], ['volumes.id'], ondelete='CASCADE',
            name=op.f('fk_volume_attachments_volume_id_volumes')),
        sa.ForeignKeyConstraint(
            ['host'], ['hosts.name'],
            name=op.f('fk_volume_attachments_host_hosts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_volume_attachments')),
        sa.UniqueConstraint('volume_id', 'host',
                            name=op.f('uq_volume_attachments_volume_id_'
                                      'host')),
    )
    op.create_index(op.f('ix_volume_attachments_volume_id'),
                    'volume_attachments', ['volume_id'])
    op.create_index(op.f('ix_volume_attachments_instance_uuid'),
                    'volume_attachments', ['instance_uuid'])


def downgrade():
    op.drop_table('volume_attachments')
    op.drop_table('volumes')
    op.drop_table('port_bindings')
    op.drop_index(op.f('ix_ports_instance_uuid'), table_name='ports')
    op.drop_table('ports')
