"""server migration abort on the test driver: a move stopped in the middle
of its disk copy, a move whose process died, refusals that change
nothing, and the CLI's one line. (Queued and through conductors:
test_jobboard_abort.py; on real QEMU: tests/integration/test_qemu_abort.py.)
"""
import subprocess
import threading
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import flowaborts
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import sparsecopy

KiB = 1024


@pytest.fixture
def slow_copy(monkeypatch):
    """Small chunks, each copied slowly, so that the copy is seen under
    way; ``slow_copy.calls`` counts the chunk pieces copied."""
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK', 256 * KiB)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', 256 * KiB)
    real = sparsecopy._copy_range
    calls = []

    def slow(fd_in, fd_out, start, end):
        calls.append((start, end))
        time.sleep(0.2)
        return real(fd_in, fd_out, start, end)
    monkeypatch.setattr(sparsecopy, '_copy_range', slow)
    slow.calls = calls
    return slow


def _server_with_data(cloud):
    vm = cloud.server()
    path = virt.get_driver(repository.host_get('host1')).disk_info(
        vm['uuid']).path
    commands = []
    for i in range(8):
        commands += ['-c', 'write -P 0x%02x %dM 1M' % (0xa0 + i, i * 50)]
    subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                   check=True, capture_output=True)
    return vm


def _copy_disk(flow_id):
    return next(t for t in flowstatus.show_flow(flow_id)['tasks']
                if t['name'] == 'CopyDisk')


def _wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.1)


def test_abort_during_the_disk_copy_undoes_the_move(cloud, slow_copy):
    vm = _server_with_data(cloud)
    before = state.capture(caches=False)
    op = api.resize(cloud.ctx, vm['uuid'], 'big')
    _wait_for(lambda: 0 < (_copy_disk(op.flow_id)['progress'] or 0) < 0.5,
              'the copy to start')
    out = api.abort_migration(cloud.ctx, vm['uuid'], wait=True,
                              timeout=120)
    assert out['status'] == states.MIGRATION_CANCELLED
    assert out['flow_id'] == op.flow_id
    with pytest.raises(exception.FlowAborted):
        op.wait(timeout=120)
    # It stopped in the middle of the copy: not all 8 MiB of data moved.
    copy = _copy_disk(op.flow_id)
    assert 0 < sum(end - start for start, end in slow_copy.calls) < \
        7 * 1024 * KiB
    assert copy['state'] == tf_states.REVERTED
    flow = flowstatus.show_flow(op.flow_id)
    assert flow['status'] == flowstatus.ROLLED_BACK
    # As before the move: host, flavor, power state, disks, allocations.
    assert state.capture(caches=False) == before
    mig = repository.migration_list(vm['uuid'])[-1]
    assert mig['status'] == states.MIGRATION_CANCELLED
    inst = repository.instance_get(vm['uuid'])
    assert (inst['host'], inst['vm_state'], inst['task_state']) == (
        'host1', states.ACTIVE, None)
    assert virt.get_driver(repository.host_get('host2')).\
        list_instance_dirs() == []
    assert state.leaks() == []
    actions = api.list_actions(cloud.ctx, vm['uuid'])
    abort = next(a for a in actions if a['action'] == 'abort_migration')
    assert [(e['event'], e['result']) for e in abort['events']] == [
        ('abort_running', 'Success')]
    assert abort['message'] == states.MIGRATION_CANCELLED
    # The server takes a new move.
    result = api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    assert result['migration']['status'] == states.MIGRATION_FINISHED


def test_abort_of_an_interrupted_move_rolls_it_back_now(cloud):
    vm = cloud.server()
    before = state.capture(caches=False)
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    faults.clear()
    flow_id = repository.migration_list(vm['uuid'])[-1]['flow_id']
    assert flowstatus.flow_brief(flow_id)['status'] == \
        flowstatus.INTERRUPTED
    out = api.abort_migration(cloud.ctx, vm['uuid'])
    assert out['status'] == states.MIGRATION_CANCELLED
    assert flowstatus.flow_brief(flow_id)['status'] == \
        flowstatus.ROLLED_BACK
    assert state.capture(caches=False) == before
    assert repository.migration_list(vm['uuid'])[-1]['status'] == \
        states.MIGRATION_CANCELLED
    assert state.leaks() == []


def _refused(cloud, server, needle):
    before = state.capture()
    migs = repository.migration_list()
    with pytest.raises(exception.ResizeFlowsException) as info:
        api.abort_migration(cloud.ctx, server)
    assert needle in str(info.value)
    assert '\n' not in str(info.value)
    assert state.capture() == before
    assert repository.migration_list() == migs
    for mig in migs:
        if mig['flow_id']:
            assert flowaborts.abort_get(mig['flow_id']) is None
    return info.value


def test_refusals_change_nothing(cloud):
    vm = cloud.server()
    err = _refused(cloud, 'no-such-server', 'could not be found')
    assert isinstance(err, exception.InstanceNotFound)
    err = _refused(cloud, vm['uuid'], 'has no move')
    assert isinstance(err, exception.MigrationNotAbortable)
    api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    _refused(cloud, vm['uuid'], 'has finished: confirm or revert it')
    api.confirm_resize(cloud.ctx, vm['uuid'], wait=True)
    _refused(cloud, vm['uuid'], 'has ended (confirmed)')
    # A member may not (admin only), even on its own server.
    with pytest.raises(exception.Forbidden):
        api.abort_migration(cloud.member(), vm['uuid'])


def test_a_task_sees_the_abort_at_its_start(cloud):
    """An abort recorded while a task runs is seen at the next task's
    start when that task has no safe point of its own."""
    vm = cloud.server()
    before = state.capture(caches=False)
    entered, release = threading.Event(), threading.Event()
    real_hit = faults.hit

    def hit(task, point):
        if task == 'PowerOffSource' and point == faults.AFTER_EXECUTE:
            entered.set()
            assert release.wait(60)
        return real_hit(task, point)
    faults_hit = pytest.MonkeyPatch()
    faults_hit.setattr(faults, 'hit', hit)
    try:
        op = api.resize(cloud.ctx, vm['uuid'], 'big')
        assert entered.wait(60)
        out = api.abort_migration(cloud.ctx, vm['uuid'])
        assert out['status'] == 'aborting'
        release.set()
        with pytest.raises(exception.FlowAborted):
            op.wait(timeout=120)
    finally:
        release.set()
        faults_hit.undo()
    tasks = {t['name']: t['state']
             for t in flowstatus.show_flow(op.flow_id)['tasks']}
    assert tasks['MoveSourceToResize'] == tf_states.REVERTED
    assert tasks['CopyDisk'] in (tf_states.PENDING, None)
    assert state.capture(caches=False) == before
    assert repository.migration_list(vm['uuid'])[-1]['status'] == \
        states.MIGRATION_CANCELLED
