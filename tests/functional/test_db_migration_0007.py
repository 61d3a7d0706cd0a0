"""Revision 0007 on a database with data: a server locked before it is
taken as locked by an admin, and flows get their server's project, which
the flow log keeps when it saves a flow stored before (issue 11, items 12
and 13). Once per backend: SQLite, PostgreSQL, MariaDB."""
import contextlib

from alembic import command
from alembic import config as alembic_config
import pytest
import sqlalchemy as sa
from taskflow import states as tf_states

from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration
from resize_flows.persistence import models
from tests import db_fixtures


def _insert(conn, model, **values):
    # The table as the database has it at this revision: the model's
    # has columns of later revisions (and their defaults).
    table = sa.Table(model.__tablename__, sa.MetaData(), autoload_with=conn)
    if 'created_at' in table.c:
        values.setdefault('created_at', models.utcnow())
    conn.execute(table.insert().values(**values))


@pytest.mark.parametrize('backend', db_fixtures.BACKENDS)
def test_0007_backfills_lock_owner_and_flow_projects(backend, conf,
                                                     tmp_path):
    with db_fixtures.throwaway_database(backend, tmp_path) as url:
        cfg = alembic_config.Config()
        cfg.set_main_option('script_location', migration.MIGRATIONS_DIR)
        with db.get_engine(url).begin() as conn:
            cfg.attributes['connection'] = conn
            command.upgrade(cfg, '0006')
        book = flowlog.BOOKS
        with db.get_engine(url).begin() as conn:
            _insert(conn, models.Host, name='h1', uri='test:///default',
                    instances_path='/x', vcpus=1, memory_mb=1, disk_gb=1,
                    enabled=True)
            _insert(conn, models.Flavor, id=1, name='f', vcpus=1,
                    memory_mb=1, root_gb=1, is_public=True)
            for uuid, locked in (('vm-locked', True), ('vm-free', False)):
                _insert(conn, models.Instance, uuid=uuid, name=uuid,
                        project_id='pA', user_id='u', host='h1',
                        flavor_id=1, vm_state='active', power_state=1,
                        locked=locked)
            conn.execute(book.insert().values(
                uuid='book1', name='b', meta=None,
                created_at=models.utcnow()))
            for flow, inst in (('flow-live', 'vm-free'),
                               ('flow-gone', 'vm-deleted')):
                conn.execute(flowlog.FLOWS.insert().values(
                    uuid=flow, logbook_uuid='book1', name='resize',
                    state=tf_states.SUCCESS, operation='resize',
                    instance_uuid=inst, meta=None,
                    created_at=models.utcnow()))

        assert migration.db_sync(url) == migration.head()

        instances = models.Instance.__table__
        with db.get_engine(url).connect() as conn:
            locks = dict(conn.execute(sa.select(
                instances.c.uuid, instances.c.locked_by)).all())
            projects = dict(conn.execute(sa.select(
                flowlog.FLOWS.c.uuid, flowlog.FLOWS.c.project_id)).all())
        assert locks == {'vm-locked': 'admin', 'vm-free': None}
        assert projects == {'flow-live': 'pA', 'flow-gone': None}

        # Saved again through the flow log (its meta names no project),
        # the flow keeps the project the revision gave it.
        backend_ = flowlog.get_backend(url)
        with contextlib.closing(backend_.get_connection()) as fl:
            _book, detail = fl.find_flow('flow-live')
            detail.state = tf_states.REVERTED
            fl.update_flow_details(detail)
        with db.get_engine(url).connect() as conn:
            assert conn.execute(sa.select(
                flowlog.FLOWS.c.state, flowlog.FLOWS.c.project_id).where(
                    flowlog.FLOWS.c.uuid == 'flow-live')).one() == (
                tf_states.REVERTED, 'pA')
        flowlog.reset()
