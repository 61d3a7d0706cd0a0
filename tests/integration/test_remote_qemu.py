"""Real QEMU guests on a host whose files are on another machine.

The machine is an sshd in a mount namespace of its own
(tests/ssh_fixtures.py); the host ``far`` is a libvirt session daemon
started there over ssh, so it and its QEMU guests see the machine's
files, which this process cannot see: every file operation of ``far``
goes over ssh, and disks reach and leave it by rsync. A running server
is resized from a local host to ``far`` and reverted, migrated there and
confirmed, then migrated on to the other local host and confirmed,
checked on the hypervisors, the machine's files and the records.
"""
import os
import subprocess
import sys
import time

import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import local
from resize_flows.virt.libvirt import remote
from resize_flows.virt.libvirt import transfer
from tests.integration.conftest import _CRASH_CONFIG
from tests.integration.conftest import CRASH_LEASE_SECONDS
from tests.integration.conftest import processes_under
from tests.integration.conftest import qemu_pids
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def _start_daemon_on(machine):
    """daemon._start_daemon, but on ``machine``: run there over ssh as
    the owner of the host directory, in the same environment."""
    def start(name, hdir):
        st = os.stat(hdir)
        env = ' '.join('%s=%s' % (key, remote.q(value))
                       for key, value in daemon.daemon_env(hdir).items())
        machine.run(
            'cd %s && env -i %s setpriv --reuid=%d --regid=%d '
            '--clear-groups /usr/sbin/libvirtd --daemon </dev/null '
            '>>%s 2>&1' % (remote.q(hdir), env, st.st_uid, st.st_gid,
                           remote.q(os.path.join(
                               hdir, daemon.START_LOG_NAME))))
    return start


@pytest.fixture
def far(machines, qemu_cloud, monkeypatch):
    """The host ``far``: a QEMU session daemon on another machine."""
    machine = machines()
    real = daemon._start_daemon
    monkeypatch.setattr(daemon, '_start_daemon', _start_daemon_on(machine))
    try:
        spec = local.create_local_host('far', 'qemu')
    finally:
        monkeypatch.setattr(daemon, '_start_daemon', real)
    path = machine.path('far')
    owner = os.stat(os.path.dirname(spec['instances_path']))
    machine.run('mkdir %s && chown %d:%d %s' % (
        path, owner.st_uid, owner.st_gid, path))
    api.create_host(qemu_cloud.ctx, 'far', 4, 1024, 20, uri=spec['uri'],
                    instances_path=path, ssh=machine.address)
    return machine


def _on(name, uuid):
    drv = virt.get_driver(repository.host_get(name))
    return drv.instance_exists(uuid) and drv.get_info(uuid).power_state


def _files(machine, uuid):
    out = machine.run('cd %s && find . -mindepth 1 | sort'
                      % machine.path('far'))
    return [line[2:] for line in out.split('\n') if line]


def test_a_running_server_moves_to_and_from_another_machine(qemu_cloud,
                                                            far):
    vm = qemu_cloud.server()
    uuid = vm['uuid']

    api.resize(qemu_cloud.ctx, uuid, 'bigger', wait=True)
    assert _on('far', uuid) == states.RUNNING
    assert _on('host1', uuid) == states.SHUTDOWN      # kept for a revert
    # Its QEMU runs the disk at a path that exists only on the machine.
    assert len(qemu_pids(far.path('far', uuid, 'disk'))) == 1
    assert not os.path.exists(far.path('far', uuid))
    assert _files(far, uuid) == [uuid, uuid + '/console.log',
                                 uuid + '/disk', uuid + '/disk.info',
                                 uuid + '/libvirt.xml']
    assert state.leaks() == []

    api.revert_resize(qemu_cloud.ctx, uuid, wait=True)
    assert _on('host1', uuid) == states.RUNNING
    assert not _on('far', uuid)
    assert _files(far, uuid) == []
    assert repository.instance_get(uuid)['flavor_id'] == \
        qemu_cloud.tiny['id']
    assert state.leaks() == []

    api.migrate(qemu_cloud.ctx, uuid, host='far', wait=True)
    api.confirm_resize(qemu_cloud.ctx, uuid, wait=True)
    assert _on('far', uuid) == states.RUNNING
    assert virt.get_driver(repository.host_get('host1')
                           ).list_instance_dirs() == []
    assert state.leaks() == []

    api.migrate(qemu_cloud.ctx, uuid, host='host2', wait=True)
    api.confirm_resize(qemu_cloud.ctx, uuid, wait=True)
    assert _on('host2', uuid) == states.RUNNING
    assert not _on('far', uuid)
    assert _files(far, uuid) == []
    assert state.leaks() == []


# The crash matrix's process config, and how to reach the machine.
_REMOTE_CONFIG = """
[remote]
ssh_identity_file = {identity}
ssh_options = {options}
rsync_options = --bwlimit=8000
"""


def test_a_worker_killed_mid_copy_leaves_no_copy_running(
        qemu_cloud, far, conf, ssh_keys, monkeypatch):
    """A resize-flows process is SIGKILLed while rsync copies the disk to
    the other machine: no rsync goes on, here or there; the flow resumed
    here sends only what the cut-off copy did not."""
    vm = qemu_cloud.server(power_on=False)
    uuid = vm['uuid']
    src = virt.get_driver(repository.host_get('host1')).disk_info(uuid).path
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 48M',
                    src], check=True, capture_output=True)
    config = os.path.join(qemu_cloud.base, 'cli.conf')
    overrides = ssh_keys.conf_overrides()
    with open(config, 'w') as handle:
        handle.write(_CRASH_CONFIG.format(
            state_dir=conf.state_dir, connection=conf.database.connection,
            lease_seconds=CRASH_LEASE_SECONDS))
        handle.write(_REMOTE_CONFIG.format(
            identity=overrides['ssh_identity_file'],
            options=','.join(overrides['ssh_options'])))
    proc = subprocess.Popen(
        [sys.executable, '-m', 'resize_flows.cmd.shell', '--config-file',
         config, 'server', 'migrate', uuid, '--host', 'far', '-q'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _copying(uuid):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(2)        # the lease expires; the far side sees us go
    assert processes_under(uuid) == []
    assert uuid not in far.run('pgrep -a rsync || true')

    flow_id = repository.migration_list(uuid)[-1]['flow_id']
    seen = []
    real = transfer.copy_disk

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]
    monkeypatch.setattr(transfer, 'copy_disk', spy)
    conf.set_override('rsync_options', [], group='remote')
    api.resume_flow(qemu_cloud.ctx, flow_id)
    stats, _domain_xml = seen          # the disk, then libvirt.xml
    assert 0 < stats.copied < stats.size and stats.reused > 0
    assert repository.instance_get(uuid)['host'] == 'far'
    assert _files(far, uuid) == [uuid, uuid + '/disk', uuid + '/disk.info',
                                 uuid + '/libvirt.xml']
    out = far.run('qemu-io -f qcow2 -c "read -P 0x5a 0 48M" %s'
                  % far.path('far', uuid, 'disk'))
    assert 'failed' not in out
    api.confirm_resize(qemu_cloud.ctx, uuid, wait=True)
    assert state.leaks() == []


def _copying(uuid):
    """Whether CopyDisk of the server's flow has reported progress."""
    migrations = repository.migration_list(uuid)
    if not migrations or not migrations[-1]['flow_id']:
        return False
    try:
        tasks = api.show_flow(api.get_admin_context(),
                              migrations[-1]['flow_id'])['tasks']
    except Exception:
        return False
    return any(t['name'] == 'CopyDisk' and (t.get('progress') or 0) > 0.05
               for t in tasks)
