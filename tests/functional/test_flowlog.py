"""The flow log backend on SQLite, PostgreSQL and MariaDB.

- TaskFlow's own persistence test suite (``PersistenceTestMixin``, the one
  its memory, SQL and ZooKeeper backends pass) runs against ours;
- stored values obey one rule on every database;
- a task the log says succeeded survives a SIGKILL right after;
- flows are listed newest first, a page at a time, filtered in SQL;
- purge removes ended flows and nothing else.
"""
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import textwrap
import unittest
import uuid as uuidlib

import pytest
import sqlalchemy as sa
from taskflow import engines
from taskflow.patterns import linear_flow
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states
from taskflow import task
from taskflow.tests.unit.persistence import base as tf_persistence_tests

from resize_flows import api
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import db
from resize_flows.persistence import flowindex
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration
from resize_flows.persistence import values
from resize_flows.tasks import base as tasks_base
from resize_flows.testing import databases
from tests import conftest
from tests import db_fixtures


@pytest.fixture(scope='module', params=db_fixtures.BACKENDS,
                ids=db_fixtures.BACKENDS)
def shared_db(request, tmp_path_factory):
    """One migrated database per backend for this module's backend-level
    tests (each test empties the flow log after itself)."""
    conftest._register()
    with db_fixtures.throwaway_database(
            request.param, tmp_path_factory.mktemp('flowlog')) as url:
        migration.db_sync(url)
        yield url


@pytest.fixture
def log(shared_db):
    backend = flowlog.FlowLogBackend({'connection': shared_db})
    yield backend
    with contextlib.closing(backend.get_connection()) as conn:
        conn.clear_all()


# -- TaskFlow's own persistence tests -----------------------------------------

TASKFLOW_TESTS = sorted(name for name in dir(
    tf_persistence_tests.PersistenceTestMixin) if name.startswith('test_'))


class _TaskFlowCase(tf_persistence_tests.PersistenceTestMixin,
                    unittest.TestCase):
    __test__ = False  # run by test_taskflow_persistence_suite, per backend

    def __init__(self, backend, name):
        super().__init__(name)
        self._backend = backend

    def _get_connection(self):
        return self._backend.get_connection()


@pytest.mark.parametrize('name', TASKFLOW_TESTS)
def test_taskflow_persistence_suite(log, name):
    result = unittest.TestResult()
    _TaskFlowCase(log, name).run(result)
    problems = result.errors + result.failures
    assert result.testsRun == 1 and not problems, problems[0][1] \
        if problems else 'not run'


# -- one rule for stored values ------------------------------------------------

def _stored_atom(log, results):
    book = tf_models.LogBook('rule')
    fd = tf_models.FlowDetail('rule', str(uuidlib.uuid4()))
    ad = tf_models.TaskDetail('t', str(uuidlib.uuid4()))
    fd.add(ad)
    book.add(fd)
    with contextlib.closing(log.get_connection()) as conn:
        conn.save_logbook(book)
        ad.results = results
        ad.state = tf_states.SUCCESS
        conn.update_atom_details(ad)
        return conn.get_atom_details(ad.uuid)


def test_json_values_come_back_as_they_went_in(log):
    value = {'ü-ñ': ['x', 1, -2 ** 62, 0.1, True, None, {'nested': []}],
             'empty': {}, 'text': 'line\nbreak "quoted" \u2603'}
    assert _stored_atom(log, value).results == value
    # A tuple is JSON's array, as on every database.
    assert _stored_atom(log, {'pair': (1, 2)}).results == {'pair': [1, 2]}


@pytest.mark.parametrize('bad, named', [
    ({'hosts': {'h1', 'h2'}}, 'set'),
    ({'at': datetime.datetime(2026, 11, 22)}, 'datetime'),
    ({'id': uuidlib.UUID(int=1)}, 'UUID'),
    ({'raw': b'\x00'}, 'bytes'),
    ({1: 'int key'}, 'key 1'),
    ({'ratio': float('nan')}, 'nan'),
    ({'thing': object()}, 'object'),
])
def test_values_outside_json_are_refused_everywhere(log, bad, named):
    """Refused before anything is written, on every database alike."""
    with pytest.raises(values.ValueNotStorable, match=named):
        _stored_atom(log, bad)
    with db.get_engine(log.url).connect() as conn:
        stored = conn.execute(sa.select(flowlog.ATOMS.c.results)).scalars()
        assert [v for v in stored if v is not None] == []


class Before(tasks_base.ResizeFlowsTask):
    undone = []

    def execute(self):
        return {'done': True}

    def revert(self, result, **kwargs):
        Before.undone.append(result)


class ReturnsASet(tasks_base.ResizeFlowsTask):
    def execute(self):
        return {'hosts': {'h1'}}


def test_a_task_whose_result_is_refused_fails_and_is_undone(log):
    """Not TaskFlow's abort (task left RUNNING, nothing undone): the task
    fails, its failure is stored, and the tasks before it are undone."""
    Before.undone.clear()
    flow = linear_flow.Flow('rule').add(Before(), ReturnsASet())
    book = tf_models.LogBook('rule')
    fd = tf_models.FlowDetail('rule', str(uuidlib.uuid4()))
    book.add(fd)
    with contextlib.closing(log.get_connection()) as conn:
        conn.save_logbook(book)
    eng = engines.load(flow, flow_detail=fd, backend=log)
    with pytest.raises(values.ValueNotStorable):
        eng.run()
    with contextlib.closing(log.get_connection()) as conn:
        _book, stored = conn.find_flow(fd.uuid)
    atoms = {a.name: a for a in stored}
    assert stored.state == tf_states.REVERTED
    assert Before.undone == [{'done': True}]
    assert atoms['ReturnsASet'].state == tf_states.REVERTED
    assert atoms['ReturnsASet'].failure.check(values.ValueNotStorable)


def test_failure_arguments_that_are_not_json_are_kept_readable(log):
    class Odd(Exception):
        pass

    try:
        raise Odd({'a'}, datetime.date(2026, 1, 2))
    except Odd:
        from taskflow.types import failure
        fail = failure.Failure()
    book = tf_models.LogBook('f')
    fd = tf_models.FlowDetail('f', str(uuidlib.uuid4()))
    ad = tf_models.TaskDetail('t', str(uuidlib.uuid4()))
    ad.state, ad.failure = tf_states.FAILURE, fail
    fd.add(ad)
    book.add(fd)
    with contextlib.closing(log.get_connection()) as conn:
        conn.save_logbook(book)
        stored = conn.get_atom_details(ad.uuid).failure
    assert stored.exception_args == ("{'a'}", 'datetime.date(2026, 1, 2)')
    assert stored.check(Odd)
    assert 'raise Odd' in stored.traceback_str


# -- durability -----------------------------------------------------------------

_KILLED_AFTER_SUCCESS = textwrap.dedent('''
    import os, signal, sys, uuid
    from taskflow import engines, states, task
    from taskflow.listeners import base
    from taskflow.patterns import linear_flow
    from taskflow.persistence import models
    from resize_flows import conf
    from resize_flows.persistence import flowlog

    conf.register_opts(conf.CONF)
    conf.CONF([], project='resize-flows', default_config_files=[])

    class Step(task.Task):
        def execute(self):
            return {'step': self.name}

    class KillOnSuccess(base.Listener):
        """TaskFlow tells listeners once the transition is saved."""
        def _task_receiver(self, state, details):
            if state == states.SUCCESS and details['task_name'] == 'second':
                os.kill(os.getpid(), signal.SIGKILL)

    backend = flowlog.FlowLogBackend({'connection': sys.argv[1]})
    book = models.LogBook('durability')
    fd = models.FlowDetail('durability', sys.argv[2])
    book.add(fd)
    backend.get_connection().save_logbook(book)
    flow = linear_flow.Flow('durability').add(
        Step('first'), Step('second'), Step('third'))
    eng = engines.load(flow, flow_detail=fd, backend=backend)
    with KillOnSuccess(eng, task_listen_for=(states.SUCCESS,)):
        eng.run()
''')


def test_a_success_the_log_reported_survives_sigkill(log):
    flow_id = str(uuidlib.uuid4())
    proc = subprocess.run(
        [sys.executable, '-c', _KILLED_AFTER_SUCCESS, log.url, flow_id],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # A fresh process's view of the database, not this one's pool.
    databases.forget_engines()
    with contextlib.closing(log.get_connection()) as conn:
        _book, stored = conn.find_flow(flow_id)
    atoms = {a.name: (a.state, a.results) for a in stored}
    assert atoms['second'] == (tf_states.SUCCESS, {'step': 'second'})
    assert atoms['first'] == (tf_states.SUCCESS, {'step': 'first'})
    assert atoms['third'][0] == tf_states.PENDING


# -- listing and purging --------------------------------------------------------

def _store_flow(state, operation='resize', instance='vm1', migration=None,
                created=None):
    """A flow as engine.create stores one, in ``state``, created at
    ``created`` (naive UTC)."""
    flow_id = str(uuidlib.uuid4())
    book = tf_models.LogBook('%s-%s' % (operation, instance))
    fd = tf_models.FlowDetail(operation, flow_id)
    fd.state = state
    fd.meta = {'operation': operation, 'instance_uuid': instance,
               'migration_uuid': migration}
    fd.add(tf_models.TaskDetail('BeginMigration', str(uuidlib.uuid4())))
    book.add(fd)
    with contextlib.closing(flowlog.get_backend().get_connection()) as conn:
        conn.save_logbook(book)
    if created is not None:
        _backdate(flow_id, created)
    return flow_id


def _ids(flows):
    return [f['flow_id'] for f in flows]


def test_pages_cover_every_flow_once_newest_first(db_url):
    start = datetime.datetime(2026, 11, 1)
    # Five share a creation time: the uuid breaks the tie.
    made = [_store_flow(tf_states.SUCCESS,
                        created=start + datetime.timedelta(seconds=i // 5))
            for i in range(23)]
    everything = _ids(flowstatus.list_flows())
    assert sorted(everything) == sorted(made)
    pages, marker = [], None
    while True:
        page = _ids(flowstatus.list_flows(limit=10, marker=marker))
        if not page:
            break
        pages.append(page)
        marker = page[-1]
    assert [len(p) for p in pages] == [10, 10, 3]
    assert sum(pages, []) == everything
    created = [f['created_at'] for f in flowstatus.list_flows()]
    assert created == sorted(created, reverse=True)


def test_unknown_marker_is_refused(db_url):
    with pytest.raises(exception.MarkerNotFound):
        flowstatus.list_flows(marker='no-such-flow')


def test_filters_by_status_server_and_operation(db_url):
    finished = _store_flow(tf_states.SUCCESS, instance='vm1')
    reverted = _store_flow(tf_states.REVERTED, operation='migrate',
                           instance='vm2')
    stuck = _store_flow(tf_states.FAILURE, instance='vm2')
    running = _store_flow(tf_states.RUNNING, instance='vm3')
    interrupted = _store_flow(tf_states.RUNNING, instance='vm3')
    expired = _store_flow(tf_states.REVERTING, instance='vm3')
    flowindex.lease_acquire(running, 'someone', 60)
    flowindex.lease_acquire(expired, 'dead', -1)

    def listed(**filters):
        return set(_ids(flowstatus.list_flows(**filters)))

    assert listed(status=flowstatus.FINISHED) == {finished}
    assert listed(status=flowstatus.ROLLED_BACK) == {reverted}
    assert listed(status=flowstatus.STUCK) == {stuck}
    assert listed(status=flowstatus.RUNNING) == {running}
    assert listed(status=flowstatus.INTERRUPTED) == {interrupted, expired}
    assert listed(status=tf_states.RUNNING) == {running, interrupted}
    assert listed(server='vm2') == {reverted, stuck}
    assert listed(operation='migrate') == {reverted}
    assert listed(server='vm3', status=flowstatus.INTERRUPTED,
                  limit=1) <= {interrupted, expired}
    owners = {f['flow_id']: f['owner'] for f in flowstatus.list_flows()}
    assert owners[running] == 'someone' and owners[expired] is None
    with pytest.raises(exception.InvalidInput, match='unknown flow state'):
        flowstatus.list_flows(status='sleeping')


def test_a_posted_flow_not_started_is_queued_not_interrupted(db_url):
    """Queued: never run (state NULL or PENDING), posted as a job, not
    leased. The SQL filter and each listed flow's status agree."""
    queued = _store_flow(None, instance='vm1')
    queued_pending = _store_flow(tf_states.PENDING, instance='vm1')
    never_posted = _store_flow(None, instance='vm2')
    started = _store_flow(tf_states.RUNNING, instance='vm3')
    taken = _store_flow(tf_states.PENDING, instance='vm4')
    given_up = _store_flow(None, instance='vm5')
    for flow_id in (queued, queued_pending, started, taken, given_up):
        flowindex.flow_posted(flow_id, 'job-' + flow_id)
    flowindex.lease_acquire(taken, 'conductor', 60)
    flowindex.lease_acquire(given_up, 'dead-conductor', -1)

    def listed(status):
        return set(_ids(flowstatus.list_flows(status=status)))

    assert listed(flowstatus.QUEUED) == {queued, queued_pending, given_up}
    assert listed(flowstatus.INTERRUPTED) == {never_posted, started}
    assert listed(flowstatus.RUNNING) == {taken}
    for status in flowstatus.STATUSES:
        assert {f['status']
                for f in flowstatus.list_flows(status=status)} <= {status}
    brief = flowstatus.flow_brief(queued)
    assert brief['status'] == flowstatus.QUEUED
    assert brief['job_uuid'] == 'job-' + queued
    assert flowstatus.flow_brief(never_posted)['job_uuid'] is None


def _backdate(flow_id, when):
    with db.get_engine().begin() as conn:
        conn.execute(flowlog.FLOWS.update()
                     .where(flowlog.FLOWS.c.uuid == flow_id)
                     .values(created_at=when, updated_at=when))


def test_purge_removes_ended_flows_only(cloud):
    old = datetime.datetime(2026, 1, 1)
    cutoff = datetime.datetime(2026, 6, 1)
    # A real resize, finished and waiting for confirm: rolling it back
    # needs its flow, however old.
    awaiting = api.resize(cloud.ctx, cloud.server()['uuid'], 'big',
                          wait=True).flow_id
    _backdate(awaiting, old)
    gone = [_store_flow(tf_states.SUCCESS, created=old),
            _store_flow(tf_states.REVERTED, created=old)]
    kept = [
        awaiting,
        _store_flow(tf_states.SUCCESS),                     # recent
        _store_flow(tf_states.RUNNING, created=old),        # not ended
        _store_flow(tf_states.FAILURE, created=old),        # stuck
    ]
    assert flowstatus.purge_flows(cutoff, dry_run=True) == len(gone)
    assert len(flowstatus.list_flows()) == len(gone) + len(kept)
    assert flowstatus.purge_flows(cutoff, batch=1) == len(gone)
    assert sorted(_ids(flowstatus.list_flows())) == sorted(kept)
    with db.get_engine().connect() as conn:
        books = conn.execute(sa.select(sa.func.count()).select_from(
            flowlog.BOOKS)).scalar()
        atoms = set(conn.execute(sa.select(
            flowlog.ATOMS.c.flow_uuid)).scalars())
    assert books == len(kept)
    assert atoms == set(kept)
    assert flowstatus.purge_flows(cutoff) == 0
    # Once confirmed, the resize has ended for good: it goes too.
    api.confirm_resize(cloud.ctx, 'vm1', wait=True)
    _backdate(awaiting, old)
    assert flowstatus.purge_flows(cutoff) == 1
    assert awaiting not in _ids(flowstatus.list_flows())


class Reports(task.Task):
    def execute(self):
        self.update_progress(0.5)
        return {'reported': True}


def test_a_task_costs_two_writes_and_its_progress_is_kept(log):
    """RUNNING, then the result; TaskFlow's own 0-at-start and 1-at-end
    progress marks are not written, a task's own report is."""
    with db_fixtures.atom_writes(log.writer) as statements:
        flow = linear_flow.Flow('writes').add(
            Step('a'), Step('b'), Step('c'), Reports('d'))
        book = tf_models.LogBook('writes')
        fd = tf_models.FlowDetail('writes', str(uuidlib.uuid4()))
        book.add(fd)
        with contextlib.closing(log.get_connection()) as conn:
            conn.save_logbook(book)
        engines.load(flow, flow_detail=fd, backend=log).run()
    # Three quiet tasks: 2 writes each; one that reports: 3.
    assert len(statements) == 3 * 2 + 3
    with contextlib.closing(log.get_connection()) as conn:
        _book, stored = conn.find_flow(fd.uuid)
    atoms = {a.name: a for a in stored}
    assert atoms['d'].meta['progress'] == 0.5
    assert all(a.state == tf_states.SUCCESS for a in stored)


class Step(task.Task):
    def execute(self):
        return {'step': self.name}
