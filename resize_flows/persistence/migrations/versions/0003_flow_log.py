"""the flow log in our own tables; TaskFlow's stock ones copied, then dropped

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Until 0002 the flow log was TaskFlow's stock SQLAlchemy backend, in
TaskFlow's tables (``logbooks``, ``flowdetails``, ``atomdetails``, and its
alembic chain in ``alembic_version``). This revision creates the flow log's
own tables, copies every stored flow into them (values re-encoded by the
one rule of ``persistence/values.py``; the operation, instance and
migration copied out of each flow's meta into indexed columns), then drops
TaskFlow's tables and version table, so that there is one flow log.

Downgrading drops the flow log's tables with what they hold; the older code
creates TaskFlow's tables again, empty.
"""
import datetime
import json

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_STOCK = ('atomdetails', 'flowdetails', 'logbooks')
_BATCH = 1000


def _dt():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def _json():
    return sa.Text().with_variant(mysql.LONGTEXT(), 'mysql')


def upgrade():
    op.create_table(
        'flow_logbooks',
        sa.Column('uuid', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('meta', _json(), nullable=True),
        sa.Column('created_at', _dt(), nullable=False),
        sa.Column('updated_at', _dt(), nullable=True),
        sa.PrimaryKeyConstraint('uuid', name=op.f('pk_flow_logbooks')),
    )
    op.create_table(
        'flow_details',
        sa.Column('uuid', sa.String(length=64), nullable=False),
        sa.Column('logbook_uuid', sa.String(length=64), nullable=True),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('state', sa.String(length=32), nullable=True),
        sa.Column('meta', _json(), nullable=True),
        sa.Column('operation', sa.String(length=32), nullable=True),
        sa.Column('instance_uuid', sa.String(length=36), nullable=True),
        sa.Column('migration_uuid', sa.String(length=36), nullable=True),
        sa.Column('created_at', _dt(), nullable=False),
        sa.Column('updated_at', _dt(), nullable=True),
        sa.ForeignKeyConstraint(
            ['logbook_uuid'], ['flow_logbooks.uuid'],
            name=op.f('fk_flow_details_logbook_uuid_flow_logbooks'),
            ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('uuid', name=op.f('pk_flow_details')),
    )
    op.create_index('ix_flow_details_created_at_uuid', 'flow_details',
                    ['created_at', 'uuid'])
    # Each ends in (created_at, uuid): a filtered page is read in order
    # from its index and stops at the limit.
    op.create_index('ix_flow_details_state_created_at', 'flow_details',
                    ['state', 'created_at', 'uuid'])
    op.create_index('ix_flow_details_instance_uuid_created_at',
                    'flow_details', ['instance_uuid', 'created_at', 'uuid'])
    op.create_index('ix_flow_details_operation_created_at', 'flow_details',
                    ['operation', 'created_at', 'uuid'])
    op.create_index('ix_flow_details_updated_at', 'flow_details',
                    ['updated_at'])
    op.create_index(op.f('ix_flow_details_logbook_uuid'), 'flow_details',
                    ['logbook_uuid'])
    op.create_table(
        'flow_atoms',
        sa.Column('uuid', sa.String(length=64), nullable=False),
        sa.Column('flow_uuid', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('atom_type', sa.String(length=16), nullable=False),
        sa.Column('version', sa.String(length=64), nullable=True),
        sa.Column('state', sa.String(length=32), nullable=True),
        sa.Column('intention', sa.String(length=32), nullable=True),
        sa.Column('results', _json(), nullable=True),
        sa.Column('failure', _json(), nullable=True),
        sa.Column('revert_results', _json(), nullable=True),
        sa.Column('revert_failure', _json(), nullable=True),
        sa.Column('meta', _json(), nullable=True),
        sa.Column('created_at', _dt(), nullable=False),
        sa.Column('updated_at', _dt(), nullable=True),
        sa.ForeignKeyConstraint(
            ['flow_uuid'], ['flow_details.uuid'],
            name=op.f('fk_flow_atoms_flow_uuid_flow_details'),
            ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('uuid', name=op.f('pk_flow_atoms')),
    )
    op.create_index(op.f('ix_flow_atoms_flow_uuid'), 'flow_atoms',
                    ['flow_uuid'])
    _copy_stock_flow_log()


def downgrade():
    op.drop_table('flow_atoms')
    op.drop_table('flow_details')
    op.drop_table('flow_logbooks')


# -- copying TaskFlow's stock tables -----------------------------------------

def _value(raw):
    """A stock JSON column's value as our text (PostgreSQL's JSON column
    gives Python values; SQLite's and MySQL's give text)."""
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(',', ':'))


def _copy(conn, source, target, convert):
    rows = conn.execute(sa.select(source)).mappings()
    while True:
        batch = rows.fetchmany(_BATCH)
        if not batch:
            return
        conn.execute(target.insert(), [convert(dict(r)) for r in batch])


def _copy_stock_flow_log():
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    if not set(_STOCK) <= present:
        return
    meta = sa.MetaData()
    stock = {name: sa.Table(name, meta, autoload_with=conn)
             for name in _STOCK}
    ours = sa.MetaData()
    books = sa.Table('flow_logbooks', ours, autoload_with=conn)
    flows = sa.Table('flow_details', ours, autoload_with=conn)
    atoms = sa.Table('flow_atoms', ours, autoload_with=conn)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)

    def book(r):
        return {'uuid': r['uuid'], 'name': r['name'],
                'meta': _value(r['meta']),
                'created_at': r['created_at'] or now,
                'updated_at': r['updated_at']}

    def flow(r):
        meta_text = _value(r['meta'])
        meta_value = json.loads(meta_text) if meta_text else {}
        out = {'uuid': r['uuid'], 'logbook_uuid': r['parent_uuid'],
               'name': r['name'], 'state': r['state'], 'meta': meta_text,
               'created_at': r['created_at'] or now,
               'updated_at': r['updated_at']}
        for key in ('operation', 'instance_uuid', 'migration_uuid'):
            value = meta_value.get(key) if isinstance(meta_value, dict) \
                else None
            out[key] = value if isinstance(value, str) else None
        return out

    def atom(r):
        return {'uuid': r['uuid'], 'flow_uuid': r['parent_uuid'],
                'name': r['name'], 'atom_type': r['atom_type'],
                'version': r['version'], 'state': r['state'],
                'intention': r['intention'],
                'results': _value(r['results']),
                'failure': _value(r['failure']),
                'revert_results': _value(r['revert_results']),
                'revert_failure': _value(r['revert_failure']),
                'meta': _value(r['meta']),
                'created_at': r['created_at'] or now,
                'updated_at': r['updated_at']}

    _copy(conn, stock['logbooks'], books, book)
    _copy(conn, stock['flowdetails'], flows, flow)
    _copy(conn, stock['atomdetails'], atoms, atom)
    for name in _STOCK:
        op.drop_table(name)
    if 'alembic_version' in present:
        # TaskFlow's chain (ours is in resize_flows_alembic_version).
        op.drop_table('alembic_version')
    if conn.dialect.name == 'postgresql':
        for enum in ('atom_types', 'intentions'):
            conn.exec_driver_sql('DROP TYPE IF EXISTS %s' % enum)
