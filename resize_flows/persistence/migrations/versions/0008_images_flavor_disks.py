"""images; an instance's image; flavors' ephemeral and swap disks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

``images`` are the disk images of the image store (one file per image,
named by its uuid, plus the kernel and ramdisk some images boot by, each
under its own store id), with their sha256, format and sizes.
``instances.image_id`` names the image a server was created from (NULL:
a blank disk, as every server before this revision). Flavors gain
``ephemeral_gb`` and ``swap_mb``, 0 (no such disk) for the flavors
already there.
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'images',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('disk_format', sa.String(length=16), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('virtual_size', sa.BigInteger(), nullable=False),
        sa.Column('kernel_id', sa.String(length=36), nullable=True),
        sa.Column('kernel_sha256', sa.String(length=64), nullable=True),
        sa.Column('ramdisk_id', sa.String(length=36), nullable=True),
        sa.Column('ramdisk_sha256', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
        sa.UniqueConstraint('name', name=op.f('uq_images_name')),
        sa.UniqueConstraint('uuid', name=op.f('uq_images_uuid')),
    )
    op.add_column('instances', sa.Column('image_id', sa.String(length=36),
                                         nullable=True))
    op.create_index(op.f('ix_instances_image_id'), 'instances',
                    ['image_id'])
    op.add_column('flavors', sa.Column('ephemeral_gb', sa.Integer(),
                                       server_default='0', nullable=False))
    op.add_column('flavors', sa.Column('swap_mb', sa.Integer(),
                                       server_default='0', nullable=False))


def downgrade():
    # Plain DROP COLUMN (SQLite has it since 3.35), not a batch: a batch
    # recreates the table on SQLite, whose DROP TABLE the foreign keys of
    # the rows that name a flavor or an instance refuse.
    op.drop_column('flavors', 'swap_mb')
    op.drop_column('flavors', 'ephemeral_gb')
    op.drop_index(op.f('ix_instances_image_id'), table_name='instances')
    op.drop_column('instances', 'image_id')
    op.drop_table('images')
