"""A host's libvirt daemon restarted in the middle of a move (issue 11,
item 4): the driver waits for a daemon that is shutting down, starts a new
one, reconnects and runs its call again; the move ends as if nothing had
happened. Real QEMU guests on two local session daemons; every wait is on
what the process table or the daemon's socket shows."""
import os
import signal

import libvirt
import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import host as libvirt_host
from tests.integration.conftest import qemu_pids

pytestmark = pytest.mark.integration


def _driver(name):
    return virt.get_driver(repository.host_get(name))


def _sigterm_and_wait_for_its_socket_to_close(host):
    """SIGTERM the libvirt daemon of local host ``host`` and return its
    pid once it has closed its socket (it is shutting down) and before it
    has exited."""
    hdir = daemon.host_dir(host)
    sock = os.path.join(hdir, daemon.SOCKET_RELPATH)
    pid = daemon.daemon_pid(hdir)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    while daemon._socket_accepts(sock):
        pass
    return pid


def _assert_moved_and_running(vm, old_daemon):
    inst = repository.instance_get(vm)
    assert (inst['vm_state'], inst['task_state'], inst['host']) == (
        states.RESIZED, None, 'host2')
    # A new daemon answers for host2; the guest runs there, on the new
    # flavor, as the daemon and the process table say.
    new_daemon = daemon.daemon_pid(daemon.host_dir('host2'))
    assert new_daemon is not None and new_daemon != old_daemon
    h2 = _driver('host2')
    assert h2.get_info(vm) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=2, memory_mb=96)
    assert qemu_pids(h2.instance_dir(vm))
    assert state.leaks() == []


def test_a_daemon_still_shutting_down_is_waited_for_and_replaced(
        qemu_cloud, monkeypatch):
    """FinishMigration starts while host2's daemon is shutting down
    (SIGTERM: socket closed, process not gone yet; held there by SIGSTOP
    until this process has seen it): the driver waits for it to exit and
    starts a new one, instead of failing with "libvirtd exited"."""
    vm = qemu_cloud.server()['uuid']
    uri = repository.host_get('host2')['uri']
    frozen = []
    stale = []
    original_hit = faults.hit
    original_pid = daemon.daemon_pid

    def hit(name, where):
        if (name, where) == ('FinishMigration',
                             faults.BEFORE_EXECUTE) and not frozen:
            _driver('host2').list_instance_uuids()      # connected
            pid = _sigterm_and_wait_for_its_socket_to_close('host2')
            os.kill(pid, signal.SIGSTOP)
            assert daemon._pid_alive(pid), 'it exited before it was held'
            frozen.append(pid)
            # A daemon that shuts down closes its clients' connections;
            # held, it cannot: drop ours as it would have been dropped.
            stale.append(libvirt_host._connections.pop(uri))
        return original_hit(name, where)

    def daemon_pid(hdir):
        pid = original_pid(hdir)
        if frozen and pid == frozen[0] and len(frozen) == 1:
            # The driver has found it alive: let it finish shutting down.
            frozen.append('continued')
            os.kill(pid, signal.SIGCONT)
        return pid

    monkeypatch.setattr(faults, 'hit', hit)
    monkeypatch.setattr(daemon, 'daemon_pid', daemon_pid)
    try:
        op = api.resize(qemu_cloud.ctx, vm, 'bigger', wait=True)
    finally:
        if len(frozen) == 1:
            os.kill(frozen[0], signal.SIGCONT)
        for conn in stale:
            libvirt_host._close(conn)
    assert frozen[1:] == ['continued'], 'the driver never saw the daemon'
    assert op.flow_state == 'SUCCESS'
    assert op['migration']['status'] == states.MIGRATION_FINISHED
    _assert_moved_and_running(vm, frozen[0])
    api.confirm_resize(qemu_cloud.ctx, vm, wait=True)
    assert repository.instance_get(vm)['vm_state'] == states.ACTIVE
    assert state.leaks() == []


def test_a_daemon_restarted_under_a_call_is_reconnected(qemu_cloud,
                                                        monkeypatch):
    """host2's daemon gets SIGTERM just after FinishMigration started the
    guest there, while the driver waits for it to run: the call loses its
    connection, reconnects to a new daemon (which finds the running guest
    again) and is run again; the move finishes."""
    vm = qemu_cloud.server()['uuid']
    killed = []
    original_create = libvirt.virDomain.create

    def create(dom):
        result = original_create(dom)
        if not killed:
            killed.append(_sigterm_and_wait_for_its_socket_to_close('host2'))
        return result

    monkeypatch.setattr(libvirt.virDomain, 'create', create)
    op = api.resize(qemu_cloud.ctx, vm, 'bigger', wait=True)
    assert killed, 'the daemon was not killed'
    assert op.flow_state == 'SUCCESS'
    assert op['migration']['status'] == states.MIGRATION_FINISHED
    _assert_moved_and_running(vm, killed[0])
    api.confirm_resize(qemu_cloud.ctx, vm, wait=True)
    assert repository.instance_get(vm)['vm_state'] == states.ACTIVE
    assert state.leaks() == []
