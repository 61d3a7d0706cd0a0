"""The database going away: a real PostgreSQL restart in the middle of a
flow.

Not the machine's shared PostgreSQL (other tests use it at the same
time): a private cluster of this test's own (``initdb`` and ``pg_ctl``
from /usr/lib/postgresql/*/bin, in a directory of its own, on a port of
its own, run as the ``postgres`` user, or ``nobody``, since PostgreSQL
refuses root). Without those binaries the tests skip, saying why (they
fail where ``CI=true`` or ``RESIZE_FLOWS_REQUIRE_DBS=1``).

A resize runs in a thread of the test process on libvirt's test driver;
its flow is held just before ``CopyDisk`` runs (its earlier tasks done,
its migration ``migrating``), the server is restarted (``pg_ctl restart
-m fast``: every connection in the pool is cut), and the flow let go.
"""
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import sqlalchemy as sa
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import db
from resize_flows.persistence import migration
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import databases
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests.functional.conftest import Cloud
from tests import needs


def _pg_bin():
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_ctl'))
    if not found or not os.path.exists(
            os.path.join(os.path.dirname(found[-1]), 'initdb')):
        needs.unavailable(
            'initdb and pg_ctl are not installed (/usr/lib/postgresql/*/'
            'bin; Debian package postgresql): cannot start a private '
            'PostgreSQL to restart', 'RESIZE_FLOWS_REQUIRE_DBS',
            'this machine must run the tests on every backend')
    return os.path.dirname(found[-1])


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Cluster:
    """A private PostgreSQL cluster: started, restarted, stopped."""

    def __init__(self):
        self.bin = _pg_bin()
        self.user = 'postgres'
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            self.user = 'nobody'
        entry = pwd.getpwnam(self.user)
        self.base = tempfile.mkdtemp(prefix='rf-pg-', dir='/var/tmp')
        os.chmod(self.base, 0o755)
        self.data = os.path.join(self.base, 'data')
        os.mkdir(self.data, 0o700)
        os.chown(self.data, entry.pw_uid, entry.pw_gid)
        os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.port = _free_port()
        self.log = os.path.join(self.base, 'server.log')

    def _run(self, *argv, timeout=120):
        command = list(argv)
        if os.geteuid() == 0:
            command = ['runuser', '-u', self.user, '--'] + command
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=timeout, cwd=self.base)
        assert result.returncode == 0, (command, result.stdout,
                                        result.stderr)

    def _pg_ctl(self, *argv):
        self._run(os.path.join(self.bin, 'pg_ctl'), '-D', self.data,
                  '-l', self.log, '-w', '-t', '120', *argv)

    def start(self):
        self._run(os.path.join(self.bin, 'initdb'), '-D', self.data,
                  '-A', 'trust', '-U', 'postgres', '--no-sync',
                  '-E', 'UTF8')
        self._pg_ctl('-o', '-p %d -k %s -c listen_addresses=127.0.0.1 '
                     '-c fsync=off' % (self.port, self.base), 'start')
        admin = sa.create_engine(self.url('postgres'),
                                 isolation_level='AUTOCOMMIT')
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE rf')
        admin.dispose()
        return self

    def url(self, database='rf'):
        return 'postgresql+psycopg2://postgres@127.0.0.1:%d/%s' % (
            self.port, database)

    def stop(self):
        self._pg_ctl('-m', 'fast', 'stop')

    def begin(self):
        self._pg_ctl('-o', '-p %d -k %s -c listen_addresses=127.0.0.1 '
                     '-c fsync=off' % (self.port, self.base), 'start')

    def restart(self):
        self._pg_ctl('-m', 'fast', 'restart')

    def destroy(self):
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def private_pg(conf):
    pytest.importorskip('psycopg2')
    cluster = Cluster().start()
    conf.set_override('connection', cluster.url(), group='database')
    conf.set_override('retry_interval', 0.25, group='database')
    conf.set_override('max_retries', 120, group='database')
    try:
        migration.db_sync(cluster.url())
        yield cluster
    finally:
        databases.forget_engines()
        for opt in ('connection', 'retry_interval', 'max_retries'):
            conf.clear_override(opt, group='database')
        cluster.destroy()


@pytest.fixture
def pg_cloud(private_pg):
    virt.reset()
    faults.clear()
    yield Cloud()
    faults.clear()
    virt.reset()


@pytest.fixture
def held_before_copy(monkeypatch):
    """Hold the flow just before CopyDisk runs until ``go`` is set."""
    reached, go = threading.Event(), threading.Event()
    real = faults.hit

    def hit(task, point):
        if (task, point) == ('CopyDisk', faults.BEFORE_EXECUTE):
            reached.set()
            assert go.wait(300)
        return real(task, point)
    monkeypatch.setattr(faults, 'hit', hit)
    return reached, go


def _resize_in_thread(cloud, server):
    out = {}

    def run():
        try:
            out['result'] = api.resize(cloud.ctx, server['uuid'], 'big',
                                       wait=True)
        except BaseException as e:      # noqa: B902 (reported below)
            out['error'] = e
    thread = threading.Thread(target=run, name='resize', daemon=True)
    thread.start()
    return thread, out


def _atoms(url, flow_id):
    """{task name: (state, intention)} of a flow, read with SQL."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                'SELECT name, state, intention FROM flow_atoms '
                'WHERE flow_uuid = :f'), {'f': flow_id}).all()
            flow = conn.execute(sa.text(
                'SELECT state FROM flow_details WHERE uuid = :f'),
                {'f': flow_id}).scalar()
    finally:
        engine.dispose()
    return flow, {r.name: (r.state, r.intention) for r in rows}


def _records(url, server_uuid):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inst = conn.execute(sa.text(
                'SELECT host, vm_state, task_state FROM instances '
                'WHERE uuid = :u'), {'u': server_uuid}).one()
            migs = conn.execute(sa.text(
                'SELECT status, dest_compute FROM migrations '
                'WHERE instance_uuid = :u'), {'u': server_uuid}).all()
            allocs = conn.execute(sa.text(
                'SELECT a.consumer_uuid, h.name FROM allocations a '
                'JOIN hosts h ON h.id = a.host_id ORDER BY h.name')).all()
    finally:
        engine.dispose()
    return tuple(inst), [tuple(m) for m in migs], [tuple(a) for a in allocs]


def _wait(event, what, timeout=120):
    assert event.wait(timeout), what


def test_a_restart_in_the_middle_of_a_flow_and_the_flow_goes_on(
        pg_cloud, private_pg, held_before_copy):
    reached, go = held_before_copy
    server = pg_cloud.server()
    thread, out = _resize_in_thread(pg_cloud, server)
    _wait(reached, 'the flow never reached CopyDisk')
    flow_id = repository.migration_list(server['uuid'])[0]['flow_id']
    flow_state, atoms = _atoms(private_pg.url(), flow_id)
    assert (flow_state, atoms['PowerOffSource'][0]) == (
        tf_states.RUNNING, tf_states.SUCCESS)

    # Every pooled connection (the flow log's, the records', the lease's)
    # is cut; the flow goes on once the server is back.
    private_pg.restart()
    go.set()
    thread.join(300)
    assert not thread.is_alive()
    assert 'error' not in out, out.get('error')
    assert out['result']['flow_state'] == tf_states.SUCCESS

    # Nothing lost, nothing half-written: read with SQL.
    flow_state, atoms = _atoms(private_pg.url(), flow_id)
    assert flow_state == tf_states.SUCCESS
    assert {name: st for name, (st, _i) in atoms.items()
            if name != '_TaskFlow_INJECTOR'} == {
        name: tf_states.SUCCESS for name in atoms
        if name != '_TaskFlow_INJECTOR'}
    inst, migs, allocs = _records(private_pg.url(), server['uuid'])
    assert inst == ('host2', states.RESIZED, None)
    assert migs == [(states.MIGRATION_FINISHED, 'host2')]
    mig_uuid = repository.migration_list(server['uuid'])[0]['uuid']
    assert sorted(allocs) == sorted([(server['uuid'], 'host2'),
                                    (mig_uuid, 'host1')])
    assert flowstatus.flow_brief(flow_id)['status'] == flowstatus.FINISHED
    api.confirm_resize(pg_cloud.ctx, server['uuid'], wait=True)
    assert state.leaks() == []


def test_a_server_down_past_the_bound_leaves_the_flow_interrupted(
        pg_cloud, private_pg, held_before_copy, conf):
    """Down longer than [database]/max_retries * retry_interval: the flow
    stops where it was, every write before it committed and none half
    done; once the server is back, flow resume finishes it."""
    conf.set_override('max_retries', 2, group='database')
    conf.set_override('lease_seconds', 3, group='flows')
    reached, go = held_before_copy
    server = pg_cloud.server()
    thread, out = _resize_in_thread(pg_cloud, server)
    _wait(reached, 'the flow never reached CopyDisk')
    flow_id = repository.migration_list(server['uuid'])[0]['flow_id']

    private_pg.stop()
    go.set()
    thread.join(300)
    assert not thread.is_alive()
    assert 'error' in out, out.get('result')
    assert db.is_disconnect(out['error']) or isinstance(
        out['error'], exception.ResizeFlowsException), repr(out['error'])

    private_pg.begin()
    flow_state, atoms = _atoms(private_pg.url(), flow_id)
    assert flow_state == tf_states.RUNNING
    assert atoms['MoveSourceToResize'][0] == tf_states.SUCCESS
    assert atoms['CopyDisk'][0] in (tf_states.RUNNING, tf_states.PENDING)
    inst, migs, _allocs = _records(private_pg.url(), server['uuid'])
    assert inst[2] == states.RESIZE_MIGRATING
    assert migs == [(states.MIGRATION_MIGRATING, 'host2')]

    # Interrupted once its lease runs out; resume finishes it.
    deadline = time.monotonic() + 60
    while flowstatus.flow_brief(flow_id)['status'] != \
            flowstatus.INTERRUPTED:
        assert time.monotonic() < deadline, flowstatus.flow_brief(flow_id)
        time.sleep(0.2)
    conf.clear_override('lease_seconds', group='flows')
    assert api.resume_flow(pg_cloud.ctx, flow_id)['flow_state'] == \
        tf_states.SUCCESS
    inst, migs, _allocs = _records(private_pg.url(), server['uuid'])
    assert inst == ('host2', states.RESIZED, None)
    assert migs == [(states.MIGRATION_FINISHED, 'host2')]
    api.confirm_resize(pg_cloud.ctx, server['uuid'], wait=True)
    assert state.leaks() == []
