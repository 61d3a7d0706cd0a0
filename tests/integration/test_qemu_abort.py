"""Abort and deadlines with real QEMU guests on two local hosts.

- server migration abort while CopyDisk copies a disk with data: the
  copy must have started and not finished (polled in the flow log, the
  copy slowed chunk by chunk); the move is undone, checked with virsh,
  qemu-img and the records.
- host1's libvirt daemon stopped (SIGSTOP) under PowerOffSource: the task
  fails at its deadline while the call hangs; once the daemon answers
  again (SIGCONT) the flow is undone. With an undo deadline too short,
  the flow is stuck with the reason in flow show, and flow rollback
  finishes it once the daemon answers.
The daemon is always continued in a finally.
"""
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import deadlines
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import sparsecopy
from tests.integration.conftest import qemu_pids

pytestmark = pytest.mark.integration

MiB = 1024 ** 2


def _driver(name):
    return virt.get_driver(repository.host_get(name))


def _virsh_domains(host):
    uri = repository.host_get(host)['uri']
    out = subprocess.run(['virsh', '-c', uri, 'list', '--all', '--uuid'],
                         check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def _disk_info(path):
    """qemu-img's view of a disk but its allocation (a snapshot taken
    and dropped again leaves a few more clusters allocated)."""
    info = json.loads(subprocess.run(
        ['qemu-img', 'info', '-U', '--output=json', path], check=True,
        capture_output=True, text=True, timeout=60).stdout)
    info.pop('actual-size', None)
    return info


def _task(flow_id, name):
    return next(t for t in flowstatus.show_flow(flow_id)['tasks']
                if t['name'] == name)


def _wait_for(predicate, what, timeout=180):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.2)


def test_abort_during_copy_disk_on_real_qemu(qemu_cloud, monkeypatch):
    vm = qemu_cloud.server(power_on=False)['uuid']
    path = _driver('host1').disk_info(vm).path
    # 48 MiB of data in the root disk, copied in 1 MiB chunks, slowly.
    commands = []
    for i in range(48):
        commands += ['-c', 'write -P 0x%02x %dM 1M' % (0x40 + i, i * 20)]
    subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                   check=True, capture_output=True, timeout=120)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK', MiB)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', MiB)
    real = sparsecopy._copy_range
    copied = []

    def slow(fd_in, fd_out, start, end):
        time.sleep(0.1)
        copied.append(end - start)
        return real(fd_in, fd_out, start, end)
    monkeypatch.setattr(sparsecopy, '_copy_range', slow)
    info_before = _disk_info(path)
    copy_before = os.path.join(qemu_cloud.base, 'disk-before')
    subprocess.run(['cp', '--sparse=always', path, copy_before],
                   check=True, timeout=120)
    before = state.capture(caches=False)
    assert _virsh_domains('host1') == [vm] and _virsh_domains('host2') == []

    op = api.resize(qemu_cloud.ctx, vm, 'bigger')
    _wait_for(lambda: 0 < (_task(op.flow_id, 'CopyDisk')['progress'] or 0)
              < 0.5, 'the copy to be under way')
    out = api.abort_migration(qemu_cloud.ctx, vm, wait=True, timeout=300)
    assert out['status'] == states.MIGRATION_CANCELLED
    with pytest.raises(exception.FlowAborted):
        op.wait(timeout=300)
    copy = _task(op.flow_id, 'CopyDisk')
    assert copy['state'] == tf_states.REVERTED
    # Stopped in the middle: not all of the 48 MiB of data was copied.
    assert 0 < sum(copied) < 46 * MiB

    # virsh, qemu-img and the records: as before the move.
    assert _virsh_domains('host1') == [vm] and _virsh_domains('host2') == []
    assert _driver('host2').list_instance_dirs() == []
    assert os.path.exists(path)
    subprocess.run(['qemu-img', 'check', path], check=True,
                   capture_output=True, timeout=120)
    assert _disk_info(path) == info_before
    # The same guest-visible data as before the move.
    subprocess.run(['qemu-img', 'compare', '-U', copy_before, path],
                   check=True, capture_output=True, timeout=120)
    assert state.capture(caches=False) == before
    mig = repository.migration_list(vm)[-1]
    assert mig['status'] == states.MIGRATION_CANCELLED
    inst = repository.instance_get(vm)
    assert (inst['host'], inst['vm_state'], inst['task_state'],
            inst['flavor_id']) == ('host1', states.STOPPED, None,
                                   qemu_cloud.tiny['id'])
    assert state.leaks() == []


@pytest.fixture
def stopped_daemon():
    """``stopped_daemon.stop(host)`` SIGSTOPs the host's libvirt daemon;
    ``.cont()`` continues it (always, at the end)."""
    held = []

    class Stopper:
        @staticmethod
        def stop(host):
            pid = daemon.daemon_pid(daemon.host_dir(host))
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            held.append(pid)

        @staticmethod
        def cont():
            while held:
                os.kill(held.pop(), signal.SIGCONT)
    try:
        yield Stopper
    finally:
        Stopper.cont()


def _hang_power_off(monkeypatch, stopper):
    """host1's daemon stops as PowerOffSource starts: its call hangs."""
    entered = threading.Event()
    real_hit = faults.hit

    def hit(task, point):
        if (task, point) == ('PowerOffSource', faults.BEFORE_EXECUTE) and \
                not entered.is_set():
            _driver('host1').list_instance_uuids()      # connected
            stopper.stop('host1')
            entered.set()
        return real_hit(task, point)
    monkeypatch.setattr(faults, 'hit', hit)
    return entered


def test_a_stopped_daemon_fails_the_task_at_its_deadline_then_undone(
        qemu_cloud, conf, monkeypatch, stopped_daemon):
    conf.set_override('task_timeouts', {'PowerOffSource': '5',
                                        'PowerOffSource.revert': '300'},
                      group='flows')
    vm = qemu_cloud.server()['uuid']
    before = state.capture(caches=False)
    entered = _hang_power_off(monkeypatch, stopped_daemon)
    op = api.resize(qemu_cloud.ctx, vm, 'bigger')
    assert entered.wait(120)
    start = time.monotonic()
    _wait_for(lambda: _task(op.flow_id, 'PowerOffSource')['state'] in (
        tf_states.FAILURE, tf_states.REVERTING), 'the deadline', 120)
    assert time.monotonic() - start < 90
    assert deadlines.hung() == [(op.flow_id, 'PowerOffSource')]
    # The host answers again: the hung call ends, the flow is undone.
    stopped_daemon.cont()
    with pytest.raises(exception.TaskTimeout) as info:
        op.wait(timeout=300)
    assert 'PowerOffSource did not finish within its deadline of 5 s' in \
        str(info.value)
    assert flowstatus.flow_brief(op.flow_id)['status'] == \
        flowstatus.ROLLED_BACK
    assert state.capture(caches=False) == before
    assert _virsh_domains('host1') == [vm]
    assert qemu_pids(_driver('host1').instance_dir(vm))
    assert _driver('host1').get_info(vm).power_state == states.RUNNING
    assert repository.migration_list(vm)[-1]['status'] == \
        states.MIGRATION_ERROR
    assert state.leaks() == []


def test_a_stopped_daemon_leaves_the_flow_stuck_with_the_reason(
        qemu_cloud, conf, monkeypatch, stopped_daemon):
    conf.set_override('task_timeouts', {'PowerOffSource': '5'},
                      group='flows')
    vm = qemu_cloud.server()['uuid']
    before = state.capture(caches=False)
    entered = _hang_power_off(monkeypatch, stopped_daemon)
    op = api.resize(qemu_cloud.ctx, vm, 'bigger')
    assert entered.wait(120)
    with pytest.raises(exception.TaskTimeout):
        op.wait(timeout=300)
    flow = api.show_flow(qemu_cloud.ctx, op.flow_id)
    assert flow['status'] == flowstatus.STUCK
    task = _task(op.flow_id, 'PowerOffSource')
    assert task['state'] == tf_states.REVERT_FAILURE
    assert deadlines.HUNG_DETAIL in task['failure']
    # The daemon answers again: flow rollback finishes the undo.
    stopped_daemon.cont()
    _wait_for(lambda: deadlines.hung() == [], 'the hung call to end')
    result = api.rollback_flow(qemu_cloud.ctx, op.flow_id)
    assert result['flow_state'] == tf_states.REVERTED
    assert state.capture(caches=False) == before
    assert _driver('host1').get_info(vm).power_state == states.RUNNING
    assert state.leaks() == []
