"""Revision 0008 on a database with data: flavors already there get no
ephemeral and no swap disk, servers no image; images can be recorded and
named by a server; and the downgrade takes it all back, keeping the
rows. Once per backend: SQLite, PostgreSQL, MariaDB."""
from alembic import command
from alembic import config as alembic_config
import pytest
import sqlalchemy as sa

from resize_flows.persistence import db
from resize_flows.persistence import migration
from resize_flows.persistence import models
from tests import db_fixtures


def _insert(conn, table, **values):
    conn.execute(table.insert().values(**values))


def _table(conn, name):
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


@pytest.mark.parametrize('backend', db_fixtures.BACKENDS)
def test_0008_upgrade_with_rows_and_downgrade(backend, conf, tmp_path):
    with db_fixtures.throwaway_database(backend, tmp_path) as url:
        cfg = alembic_config.Config()
        cfg.set_main_option('script_location', migration.MIGRATIONS_DIR)

        def to(revision, verb=command.upgrade):
            with db.get_engine(url).begin() as conn:
                cfg.attributes['connection'] = conn
                verb(cfg, revision)

        to('0007')
        with db.get_engine(url).begin() as conn:
            _insert(conn, _table(conn, 'hosts'), name='h1',
                    uri='test:///default', instances_path='/x', vcpus=1,
                    memory_mb=1, disk_gb=1, enabled=True,
                    created_at=models.utcnow())
            _insert(conn, _table(conn, 'flavors'), id=1, name='f', vcpus=1,
                    memory_mb=1, root_gb=1, is_public=True,
                    created_at=models.utcnow())
            _insert(conn, _table(conn, 'instances'), uuid='vm1', name='vm1',
                    project_id='pA', user_id='u', host='h1', flavor_id=1,
                    vm_state='active', power_state=1, locked=False,
                    created_at=models.utcnow())

        to('0008')
        with db.get_engine(url).begin() as conn:
            flavors, instances = (_table(conn, 'flavors'),
                                  _table(conn, 'instances'))
            assert conn.execute(sa.select(
                flavors.c.name, flavors.c.ephemeral_gb,
                flavors.c.swap_mb)).all() == [('f', 0, 0)]
            assert conn.execute(sa.select(
                instances.c.uuid, instances.c.image_id)).all() == [
                    ('vm1', None)]
            _insert(conn, _table(conn, 'images'), uuid='img-1', name='i',
                    disk_format='qcow2', sha256='0' * 64, size=2 ** 40,
                    virtual_size=2 ** 41, created_at=models.utcnow())
            conn.execute(instances.update().values(image_id='img-1'))
        assert migration.db_sync(url) == migration.head()

        to('0007', command.downgrade)
        with db.get_engine(url).connect() as conn:
            inspector = sa.inspect(conn)
            assert 'images' not in inspector.get_table_names()
            assert 'image_id' not in {
                c['name'] for c in inspector.get_columns('instances')}
            assert not {'ephemeral_gb', 'swap_mb'} & {
                c['name'] for c in inspector.get_columns('flavors')}
            assert conn.execute(sa.text(
                'SELECT uuid, locked FROM instances')).all() == [
                    ('vm1', False)]
            assert conn.execute(sa.text(
                'SELECT name, root_gb FROM flavors')).all() == [('f', 1)]
        to('head')
