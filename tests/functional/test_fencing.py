"""Fencing in the flow log: a process whose lease on a flow was taken over
has its writes of that flow refused, on SQLite, PostgreSQL and MariaDB.

The story of every test here: holder A runs a flow under its lease; A
stalls inside a task for longer than the lease; the lease expires and
holder B takes the flow over and resumes it from the flow log; then A
wakes up. A's late write is refused with FlowFenced (not a TaskFlow
StorageFailure, which TaskFlow would retry), A's engine stops at once, and
no task after the stalled one runs on A.
"""
import contextlib
import datetime
import threading
import uuid as uuidlib

import pytest
from taskflow import engines
from taskflow import exceptions as tf_exc
from taskflow.patterns import linear_flow
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states
from taskflow import task

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import flowindex
from resize_flows.persistence import flowlog
from tests import db_fixtures


class Recorder:
    """Which holder ran which task, in order."""

    def __init__(self):
        self.runs = []
        self.lock = threading.Lock()

    def add(self, holder, name):
        with self.lock:
            self.runs.append((holder, name))


class Step(task.Task):
    def __init__(self, name, recorder, stall=None):
        super().__init__(name=name)
        self._recorder = recorder
        self._stall = stall or {}

    def execute(self):
        holder = threading.current_thread().name
        self._recorder.add(holder, self.name)
        gate = self._stall.get(holder)
        if gate is not None:
            gate['entered'].set()
            assert gate['wake'].wait(30)
        return {'ran_on': holder}

    def revert(self, *args, **kwargs):
        self._recorder.add(threading.current_thread().name,
                           'revert ' + self.name)


def _flow(recorder, stall=None):
    return linear_flow.Flow('fenced').add(
        Step('a', recorder), Step('b', recorder, stall),
        Step('c', recorder), Step('d', recorder))


def _store_flow(flow):
    backend = flowlog.get_backend()
    book = tf_models.LogBook('fencing')
    fd = tf_models.FlowDetail('fenced', str(uuidlib.uuid4()))
    book.add(fd)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    return fd


def _load(flow_uuid, flow, backend):
    with contextlib.closing(backend.get_connection()) as conn:
        _book, fd = conn.find_flow(flow_uuid)
    return engines.load(flow, flow_detail=fd, backend=backend)


def _expire(flow_uuid):
    """The lease's time runs out (as when its holder stalls)."""
    table = flowindex.LEASES
    with db.get_engine().begin() as conn:
        conn.execute(table.update().where(table.c.flow_id == flow_uuid)
                     .values(expires_at=datetime.datetime(2000, 1, 1)))


def _stored(flow_uuid):
    with contextlib.closing(flowlog.get_backend().get_connection()) as conn:
        _book, fd = conn.find_flow(flow_uuid)
    return fd, {ad.name: ad for ad in fd}


def test_a_stalled_holders_late_writes_are_refused(any_db_url):
    recorder = Recorder()
    gate = {'entered': threading.Event(), 'wake': threading.Event()}
    fd = _store_flow(_flow(recorder))
    token_a = flowindex.lease_acquire(fd.uuid, 'holder-a', 30)
    engine_a = _load(fd.uuid, _flow(recorder, {'A': gate}),
                     flowlog.get_backend().held_by('holder-a', token_a))
    outcome = {}

    def run_a():
        try:
            engine_a.run()
        except BaseException as e:
            outcome['error'] = e

    thread_a = threading.Thread(target=run_a, name='A')
    thread_a.start()
    assert gate['entered'].wait(30)

    # A stalls in b past its lease; B takes the flow over and resumes it.
    with pytest.raises(exception.FlowBusy):
        flowindex.lease_acquire(fd.uuid, 'holder-b', 30)
    _expire(fd.uuid)
    token_b = flowindex.lease_acquire(fd.uuid, 'holder-b', 30)
    assert token_b > token_a
    runner_b = threading.Thread(
        target=lambda: _load(fd.uuid, _flow(recorder), flowlog.get_backend()
                             .held_by('holder-b', token_b)).run(),
        name='B')
    runner_b.start()
    runner_b.join(60)
    stored, atoms = _stored(fd.uuid)
    assert stored.state == tf_states.SUCCESS

    # A wakes up: its write of b's success is refused, and it stops.
    gate['wake'].set()
    thread_a.join(60)
    assert not thread_a.is_alive()
    error = outcome['error']
    assert isinstance(error, exception.FlowFenced), repr(error)
    assert not isinstance(error, tf_exc.StorageFailure)
    assert error.flow_id == fd.uuid and error.owner == 'holder-a'

    # b was running on A when B took over, so B ran it again from its
    # start (resume semantics); every other task ran exactly once, c and d
    # only on B, nothing was undone, and what the log holds is B's.
    assert recorder.runs == [('A', 'a'), ('A', 'b'), ('B', 'b'),
                             ('B', 'c'), ('B', 'd')]
    stored, atoms = _stored(fd.uuid)
    assert stored.state == tf_states.SUCCESS
    assert atoms['a'].results == {'ran_on': 'A'}
    assert {atoms[n].results['ran_on'] for n in 'bcd'} == {'B'}
    assert all(ad.state == tf_states.SUCCESS for ad in stored)
    # B still holds the lease: A did not release it on its way out.
    lease = flowindex.lease_get(fd.uuid)
    assert lease['owner'] == 'holder-b' and lease['token'] == token_b


def test_a_holder_writes_while_it_holds_even_an_expired_lease(any_db_url):
    """Fencing refuses a takeover's victim, not a slow holder nobody
    replaced: an expired lease still held lets its holder finish."""
    recorder = Recorder()
    fd = _store_flow(_flow(recorder))
    token = flowindex.lease_acquire(fd.uuid, 'holder-a', 30)
    _expire(fd.uuid)
    _load(fd.uuid, _flow(recorder),
          flowlog.get_backend().held_by('holder-a', token)).run()
    assert [name for _holder, name in recorder.runs] == ['a', 'b', 'c', 'd']
    assert _stored(fd.uuid)[0].state == tf_states.SUCCESS


def test_a_released_lease_fences_its_old_holder(any_db_url):
    """A flow whose lease is gone (its new holder finished and released
    it) refuses its old holder's writes too."""
    recorder = Recorder()
    fd = _store_flow(_flow(recorder))
    token = flowindex.lease_acquire(fd.uuid, 'holder-a', 30)
    engine_a = _load(fd.uuid, _flow(recorder),
                     flowlog.get_backend().held_by('holder-a', token))
    flowindex.lease_release(fd.uuid, 'holder-a', token)
    with pytest.raises(exception.FlowFenced):
        engine_a.run()
    assert recorder.runs == []


def test_a_fenced_task_still_costs_two_writes(any_db_url):
    """The fence is part of each write's one statement: no extra read."""
    recorder = Recorder()
    fd = _store_flow(_flow(recorder))
    token = flowindex.lease_acquire(fd.uuid, 'holder-a', 30)
    backend = flowlog.get_backend().held_by('holder-a', token)
    engine_a = _load(fd.uuid, _flow(recorder), backend)
    engine_a.compile()
    engine_a.prepare()
    with db_fixtures.atom_writes(backend.writer) as atom_writes:
        engine_a.run()
    assert len(atom_writes) == 4 * 2
    assert all('flow_leases' in s for s in atom_writes)


def test_a_state_change_of_a_flow_whose_tasks_are_stored_is_fenced(
        any_db_url):
    """The one-statement path of a flow's state change (all its tasks
    known to be stored) is fenced too."""
    fd = _store_flow(_flow(Recorder()))
    token = flowindex.lease_acquire(fd.uuid, 'holder-a', 30)
    backend = flowlog.get_backend().held_by('holder-a', token)
    with contextlib.closing(backend.get_connection()) as conn:
        _book, stored = conn.find_flow(fd.uuid)    # its atoms: all known
        stored.state = tf_states.RUNNING
        conn.update_flow_details(stored)           # held: written
        flowindex.lease_release(fd.uuid, 'holder-a', token)
        stored.state = tf_states.SUCCESS
        with pytest.raises(exception.FlowFenced):
            conn.update_flow_details(stored)
    assert _stored(fd.uuid)[0].state == tf_states.RUNNING
