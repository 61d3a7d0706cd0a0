"""The alembic chain and the models agree, on SQLite, PostgreSQL and MariaDB.

Every test runs once per backend (the ``any_db_url`` fixture: a throwaway
database, already through ``db_sync``). PostgreSQL and MariaDB are skipped
where their server is unreachable, except in CI, where that fails.
"""
import os

from alembic import autogenerate
from alembic import command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from alembic import script as alembic_script
import pytest
import sqlalchemy as sa
from taskflow.persistence.backends.sqlalchemy import migration as tf_migration

from resize_flows.persistence import db
from resize_flows.persistence import migration
from resize_flows.persistence import models
from resize_flows.persistence.migrations import env_settings
from tests import db_fixtures

# TaskFlow's flow log and the two chains' version tables: in the database,
# not in our models.
NOT_OURS = frozenset({
    'logbooks', 'flowdetails', 'atomdetails', 'alembic_version',
    env_settings.VERSION_TABLE,
})


def _our_revisions():
    scripts = alembic_script.ScriptDirectory(migration.MIGRATIONS_DIR)
    return {rev.revision for rev in scripts.walk_revisions()}


def _taskflow_head():
    scripts = alembic_script.ScriptDirectory(
        os.path.join(os.path.dirname(tf_migration.__file__), 'alembic'))
    return scripts.get_current_head()


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


def test_db_version_reports_both_chains(any_db_url):
    version = migration.db_version(any_db_url)
    assert version['resize_flows'] == migration.head()
    assert version['head'] == migration.head()
    assert version['taskflow']


def test_db_sync_twice_is_a_no_op(any_db_url):
    before = _snapshot(any_db_url)
    assert migration.db_sync(any_db_url) == migration.head()
    assert _snapshot(any_db_url) == before


def test_our_chain_keeps_to_its_own_version_table(any_db_url):
    inspector = sa.inspect(db.get_engine(any_db_url))
    tables = set(inspector.get_table_names())
    assert env_settings.VERSION_TABLE == 'resize_flows_alembic_version'
    assert {env_settings.VERSION_TABLE, 'logbooks', 'flowdetails',
            'atomdetails'} <= tables
    with db.get_engine(any_db_url).connect() as conn:
        ours = conn.execute(sa.text(
            'SELECT version_num FROM resize_flows_alembic_version'
        )).scalars().all()
        theirs = []
        if 'alembic_version' in tables:
            theirs = conn.execute(sa.text(
                'SELECT version_num FROM alembic_version')).scalars().all()
    assert ours == [migration.head()]
    # TaskFlow's table holds TaskFlow's head (SQLite: no chain, no table)
    # and none of our revisions.
    assert not set(theirs) & _our_revisions()
    if theirs:
        assert theirs == [_taskflow_head()]


@pytest.mark.parametrize('backend', db_fixtures.BACKENDS)
def test_our_chain_alone_creates_no_alembic_version(backend, conf, tmp_path):
    """Upgrading only our chain leaves TaskFlow's version table alone."""
    with db_fixtures.throwaway_database(backend, tmp_path) as url:
        cfg = alembic_config.Config()
        cfg.set_main_option('script_location', migration.MIGRATIONS_DIR)
        with db.get_engine(url).begin() as conn:
            cfg.attributes['connection'] = conn
            command.upgrade(cfg, 'head')
        tables = set(sa.inspect(db.get_engine(url)).get_table_names())
        assert env_settings.VERSION_TABLE in tables
        assert 'alembic_version' not in tables
        assert migration.current(url) == migration.head()
