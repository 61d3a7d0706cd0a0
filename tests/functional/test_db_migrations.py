"""The alembic chain and the models agree, on SQLite, PostgreSQL and MariaDB.

Every test runs once per backend (the ``any_db_url`` fixture: a throwaway
database, already through ``db_sync``). PostgreSQL and MariaDB are skipped
where their server is unreachable, except in CI, where that fails.
"""
import contextlib
import uuid as uuidlib

from alembic import autogenerate
from alembic import command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from alembic import script as alembic_script
import pytest
import sqlalchemy as sa
from taskflow.persistence.backends import impl_sqlalchemy
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states
from taskflow.types import failure as tf_failure

from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration
from resize_flows.persistence import models
from resize_flows.persistence.migrations import env_settings
from tests import db_fixtures

# Alembic's version table: in the database, not in our models.
NOT_OURS = frozenset({env_settings.VERSION_TABLE})


def _our_revisions():
    scripts = alembic_script.ScriptDirectory(migration.MIGRATIONS_DIR)
    return {rev.revision for rev in scripts.walk_revisions()}


def _include_object(obj, name, type_, reflected, compare_to):
    if type_ == 'table':
        return name not in NOT_OURS
    table = getattr(obj, 'table', None)
    return table is None or table.name not in NOT_OURS


def _schema_diff(url):
    with db.get_engine(url).connect() as conn:
        ctx = alembic_migration.MigrationContext.configure(
            conn, opts={
                'compare_type': True,
                'compare_server_default': True,
                'include_object': _include_object,
                'version_table': env_settings.VERSION_TABLE,
            })
        return autogenerate.compare_metadata(ctx, models.Base.metadata)


def _snapshot(url):
    """Every table's columns, indexes, keys and version rows, comparable."""
    engine = db.get_engine(url)
    inspector = sa.inspect(engine)
    schema = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            'columns': [(c['name'], str(c['type']), c['nullable'])
                        for c in inspector.get_columns(table)],
            'indexes': sorted((i['name'] or '', tuple(i['column_names']))
                              for i in inspector.get_indexes(table)),
            'unique': sorted((u['name'] or '', tuple(u['column_names']))
                             for u in inspector.get_unique_constraints(table)),
            'fks': sorted((f['name'] or '', tuple(f['constrained_columns']),
                           f['referred_table'])
                          for f in inspector.get_foreign_keys(table)),
        }
    with engine.connect() as conn:
        for table in ('alembic_version', env_settings.VERSION_TABLE):
            if table in schema:
                schema[table]['rows'] = sorted(conn.execute(sa.text(
                    'SELECT version_num FROM %s' % table)).scalars())
    return schema


def test_models_and_migrations_agree(any_db_url):
    diff = _schema_diff(any_db_url)
    assert diff == [], (
        'models.py and the alembic revisions disagree; add a revision '
        'under resize_flows/persistence/migrations/versions:\n%s'
        % '\n'.join(repr(d) for d in diff))


def test_db_version_reports_the_head(any_db_url):
    assert migration.db_version(any_db_url) == {
        'resize_flows': migration.head(), 'head': migration.head()}


def test_db_sync_twice_is_a_no_op(any_db_url):
    before = _snapshot(any_db_url)
    assert migration.db_sync(any_db_url) == migration.head()
    assert _snapshot(any_db_url) == before


def test_one_chain_in_its_own_version_table(any_db_url):
    """The flow log is in our tables; TaskFlow's stock tables and its
    ``alembic_version`` are not created any more."""
    inspector = sa.inspect(db.get_engine(any_db_url))
    tables = set(inspector.get_table_names())
    assert env_settings.VERSION_TABLE == 'resize_flows_alembic_version'
    assert {'flow_logbooks', 'flow_details', 'flow_atoms'} <= tables
    assert not {'alembic_version', 'logbooks', 'flowdetails',
                'atomdetails'} & tables
    with db.get_engine(any_db_url).connect() as conn:
        ours = conn.execute(sa.text(
            'SELECT version_num FROM resize_flows_alembic_version'
        )).scalars().all()
    assert ours == [migration.head()]


def _stock_flow_log():
    """A logbook as TaskFlow's stock backend stored it: a flow detail with
    resize-flows' meta, a task that succeeded and one that failed."""
    book = tf_models.LogBook('resize-vm1')
    book.meta = {'operation': 'resize', 'instance_uuid': 'vm1'}
    fd = tf_models.FlowDetail('resize', uuid=str(uuidlib.uuid4()))
    fd.state = tf_states.FAILURE
    fd.meta = {'operation': 'resize', 'instance_uuid': 'vm1',
               'migration_uuid': 'mig1', 'request_id': 'req-1',
               'factory': {'name': 'f', 'args': [], 'kwargs': {}}}
    ok = tf_models.TaskDetail('BeginMigration', str(uuidlib.uuid4()))
    ok.state, ok.results = tf_states.SUCCESS, {'host': 'h1', 'n': [1, 2]}
    ok.meta = {'progress': 1.0}
    bad = tf_models.TaskDetail('CopyDisk', str(uuidlib.uuid4()))
    bad.state = tf_states.FAILURE
    try:
        raise RuntimeError('disk full')
    except RuntimeError:
        bad.failure = tf_failure.Failure()
    fd.add(ok)
    fd.add(bad)
    book.add(fd)
    return book, fd


@pytest.mark.parametrize('backend', db_fixtures.BACKENDS)
def test_upgrade_moves_the_stock_flow_log(backend, conf, tmp_path):
    """A database of the version before 0003 (flow log in TaskFlow's stock
    tables) keeps its flows: upgraded, they read back the same from our
    flow log, and TaskFlow's tables are gone."""
    with db_fixtures.throwaway_database(backend, tmp_path) as url:
        cfg = alembic_config.Config()
        cfg.set_main_option('script_location', migration.MIGRATIONS_DIR)
        with db.get_engine(url).begin() as conn:
            cfg.attributes['connection'] = conn
            command.upgrade(cfg, '0002')
        stock = impl_sqlalchemy.SQLAlchemyBackend({'connection': url})
        book, fd = _stock_flow_log()
        with contextlib.closing(stock.get_connection()) as conn:
            conn.upgrade()
            conn.save_logbook(book)
        stock.close()

        assert migration.db_sync(url) == migration.head()

        tables = set(sa.inspect(db.get_engine(url)).get_table_names())
        assert not {'logbooks', 'flowdetails', 'atomdetails',
                    'alembic_version'} & tables
        with contextlib.closing(
                flowlog.get_backend(url).get_connection()) as conn:
            book_uuid, moved = conn.find_flow(fd.uuid)
        assert book_uuid == book.uuid
        assert (moved.state, moved.meta) == (fd.state, fd.meta)
        assert {a.name: a.to_dict() for a in moved} == {
            a.name: a.to_dict() for a in fd}
        copied = [a for a in moved if a.name == 'CopyDisk'][0]
        assert copied.failure.check(RuntimeError)
        with db.get_engine(url).connect() as conn:
            row = conn.execute(sa.select(
                flowlog.FLOWS.c.operation, flowlog.FLOWS.c.instance_uuid,
                flowlog.FLOWS.c.migration_uuid)).one()
        assert tuple(row) == ('resize', 'vm1', 'mig1')
