"""Deadlines and heartbeats on the test driver: a task that hangs fails
at its deadline and the flow is undone once the hang ends; an undo that
cannot finish leaves the flow stuck with the reason in flow show (flow
rollback finishes it later); a disk copy that moves no byte fails at
copy_stall_timeout; the lease of a holder hung past a deadline is no
longer renewed, so another process takes the flow over, fenced.
(Real QEMU, a stopped libvirt daemon: tests/integration/test_qemu_abort.py.)
"""
import threading
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import deadlines
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import leases
from resize_flows.persistence import flowindex
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows.virt.libvirt import sparsecopy
from tests.functional.test_abort import _server_with_data
from tests.functional.test_abort import _wait_for

KiB = 1024


@pytest.fixture
def hang(monkeypatch):
    """``hang.arm(task)``: the task's execute blocks (as in a call that
    never returns) until ``hang.release`` is set."""
    release = threading.Event()
    entered = threading.Event()
    armed = set()
    real_hit = faults.hit

    def hit(task, point):
        if task in armed and point == faults.BEFORE_EXECUTE:
            armed.discard(task)
            entered.set()
            release.wait(300)
        return real_hit(task, point)
    monkeypatch.setattr(faults, 'hit', hit)

    class Hang:
        pass
    h = Hang()
    h.arm = armed.add
    h.release = release
    h.entered = entered
    yield h
    release.set()


def _task(flow_id, name):
    return next(t for t in flowstatus.show_flow(flow_id)['tasks']
                if t['name'] == name)


def test_a_hung_task_fails_at_its_deadline_and_is_undone(cloud, conf,
                                                         hang):
    conf.set_override('task_timeouts', {'PowerOffSource': '2',
                                        'PowerOffSource.revert': '120'},
                      group='flows')
    vm = cloud.server()
    before = state.capture(caches=False)
    hang.arm('PowerOffSource')
    start = time.monotonic()
    op = api.resize(cloud.ctx, vm['uuid'], 'big')
    assert hang.entered.wait(60)
    # The task failed at its deadline while its call still hangs.
    _wait_for(lambda: _task(op.flow_id, 'PowerOffSource')['state'] in (
        tf_states.FAILURE, tf_states.REVERTING), 'the deadline')
    assert time.monotonic() - start < 60
    assert deadlines.hung() == [(op.flow_id, 'PowerOffSource')]
    # The undo waits for the hung call: the host "answers again".
    hang.release.set()
    with pytest.raises(exception.TaskTimeout) as info:
        op.wait(timeout=120)
    assert 'PowerOffSource did not finish within its deadline of 2 s' in \
        str(info.value)
    assert flowstatus.flow_brief(op.flow_id)['status'] == \
        flowstatus.ROLLED_BACK
    assert state.capture(caches=False) == before
    assert repository.migration_list(vm['uuid'])[-1]['status'] == \
        states.MIGRATION_ERROR
    assert deadlines.hung() == []
    assert state.leaks() == []


def test_an_undo_that_cannot_finish_leaves_the_flow_stuck(cloud, conf,
                                                          hang):
    conf.set_override('task_timeouts', {'PowerOffSource': '2'},
                      group='flows')
    vm = cloud.server()
    before = state.capture(caches=False)
    hang.arm('PowerOffSource')
    op = api.resize(cloud.ctx, vm['uuid'], 'big')
    with pytest.raises(Exception):
        op.wait(timeout=120)
    flow = flowstatus.show_flow(op.flow_id)
    assert flow['status'] == flowstatus.STUCK
    task = _task(op.flow_id, 'PowerOffSource')
    assert task['state'] == tf_states.REVERT_FAILURE
    assert 'PowerOffSource (undo) did not finish within its deadline of ' \
        '2 s; its execute, given up at its own deadline, still hangs' in \
        task['failure']
    # The host answers again: flow rollback finishes the undo.
    hang.release.set()
    _wait_for(lambda: deadlines.hung() == [], 'the hung call to end')
    result = api.rollback_flow(cloud.ctx, op.flow_id)
    assert result['flow_state'] == tf_states.REVERTED
    assert state.capture(caches=False) == before
    assert state.leaks() == []


def test_a_copy_that_moves_no_byte_fails_at_the_stall_timeout(
        cloud, conf, monkeypatch):
    conf.set_override('copy_stall_timeout', 2, group='flows')
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK', 256 * KiB)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', 256 * KiB)
    real = sparsecopy._copy_range
    stalled, release = threading.Event(), threading.Event()
    calls = []

    def copy(fd_in, fd_out, start, end):
        calls.append(start)
        if len(calls) == 3:
            stalled.set()
            release.wait(120)       # a copy that moves nothing
        return real(fd_in, fd_out, start, end)
    monkeypatch.setattr(sparsecopy, '_copy_range', copy)
    vm = _server_with_data(cloud)
    before = state.capture(caches=False)
    try:
        op = api.resize(cloud.ctx, vm['uuid'], 'big')
        assert stalled.wait(60)
        _wait_for(lambda: _task(op.flow_id, 'CopyDisk')['state'] in (
            tf_states.FAILURE, tf_states.REVERTING, tf_states.REVERTED),
            'the stall timeout')
    finally:
        release.set()
    with pytest.raises(exception.CopyStalled) as info:
        op.wait(timeout=120)
    assert 'CopyDisk stalled: no byte of the disk copy moved for 2 s' in \
        str(info.value)
    assert flowstatus.flow_brief(op.flow_id)['status'] == \
        flowstatus.ROLLED_BACK
    assert state.capture(caches=False) == before
    assert state.leaks() == []


def test_a_lease_is_not_renewed_past_a_task_deadline(cloud, conf):
    """A holder hung past its running task's deadline (plus the grace)
    stops renewing: the lease expires, another process takes the flow,
    and the hung holder is fenced at its next check."""
    conf.set_override('lease_seconds', 2, group='flows')
    conf.set_override('deadline_grace', 1, group='flows')
    flow_id = '00000000-0000-4000-8000-00000000d1ed'
    lease = leases.Lease(flow_id, owner='hung:1:a').acquire()
    try:
        lease.deadline = deadlines.Deadline('SomeTask', 1)
        _wait_for(lambda: not flowindex.lease_get(flow_id)['live'],
                  'the lease to expire', timeout=60)
        assert lease.overdue
        other = leases.Lease(flow_id, owner='other:2:b').acquire()
        try:
            assert other.token > lease.token
            with leases.holding(flow_id, lease.owner, lease.token):
                with pytest.raises(exception.FlowFenced):
                    leases.check('a late write')
        finally:
            other.release()
    finally:
        lease.release()
