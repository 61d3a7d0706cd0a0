"""Hosts whose files are on other machines, reached by ssh.

Each machine is an sshd in a mount namespace of its own
(tests/ssh_fixtures.py): its instances path exists only for commands that
come in over ssh, and is empty when looked at from here. The hypervisors
are libvirt's test driver, so what is checked here is the files: every
step of resize, migrate, confirm and revert on such hosts, the disk copy
for each kind of host pair (this machine <-> another, two on one other
machine, two other machines), a copy cut off half way and resumed, and a
failed move undone with nothing left on any machine.
"""
import io
import json
import os
import subprocess
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows.cmd import shell
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import local
from resize_flows.virt.libvirt import remote
from resize_flows.virt.libvirt import transfer
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)

# (offset MiB, pattern) of the 1 MiB writes into a server's disk.
WRITES = [(i * 37 % 1000, 0xa0 + i) for i in range(8)]


class Cloud:
    """Flavors, and hosts created by the test: on this machine or not."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.ctx = api.get_admin_context()
        self.small = api.create_flavor(self.ctx, 'small', 1, 64, 1)
        self.big = api.create_flavor(self.ctx, 'big', 2, 128, 2)

    def local_host(self, name):
        return api.create_host(self.ctx, name, 8, 4096, 40)

    def remote_host(self, name, machine):
        """A test-driver hypervisor whose files are on ``machine``."""
        node = self.tmp_path / ('%s-node.xml' % name)
        node.write_text(local.NODE_XML % {'cpus': 16,
                                          'memory_kib': 32 * 1024 ** 2})
        path = machine.path(name)
        machine.run('mkdir -p %s' % path)
        return api.create_host(self.ctx, name, 8, 4096, 40,
                               uri='test://%s' % node, instances_path=path,
                               ssh=machine.address)

    def server(self, host, name='vm1', flavor='small'):
        vm = api.create_server(self.ctx, name, flavor, host)
        commands = []
        for offset, pattern in WRITES:
            commands += ['-c', 'write -P 0x%02x %dM 1M' % (pattern, offset)]
        _qemu_io(host, vm['uuid'], commands)
        return vm

    def has_the_data(self, host, uuid):
        commands = []
        for offset, pattern in WRITES:
            commands += ['-c', 'read -P 0x%02x %dM 1M' % (pattern, offset)]
        out = _qemu_io(host, uuid, commands, check=False)
        return out is not None and 'failed' not in out


def _qemu_io(host, uuid, commands, check=True):
    """qemu-io on the server's disk, on the machine where it is."""
    drv = virt.get_driver(repository.host_get(host))
    path = drv.disk_info(uuid).path
    argv = ['qemu-io', '-f', 'qcow2'] + commands + [path]
    if drv.ssh is None:
        proc = subprocess.run(argv, capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None
    status, out = drv.files.run(' '.join(remote.q(a) for a in argv),
                                check=False)
    if check and status:
        raise AssertionError('qemu-io failed on %s' % host)
    return out.decode() if status == 0 else None


@pytest.fixture
def cloud(conf, db_url, tmp_path):
    virt.reset()
    faults.clear()
    yield Cloud(tmp_path)
    api.wait_all()
    faults.clear()
    virt.reset()


def _tree(machine, host):
    """Every file under the host's instances path, seen on the machine."""
    out = machine.run('cd %s && find . -mindepth 1 | sort' %
                      machine.path(host))
    return [line[2:] for line in out.split('\n') if line]


def _migrate(cloud, vm, host):
    return api.migrate(cloud.ctx, vm['uuid'], host=host, wait=True)


def test_files_of_another_machine_are_not_here(cloud, machines):
    machine = machines()
    cloud.remote_host('far', machine)
    vm = cloud.server('far')
    assert _tree(machine, 'far') == [
        vm['uuid'], vm['uuid'] + '/disk', vm['uuid'] + '/disk.info',
        vm['uuid'] + '/libvirt.xml']
    # Seen from here, the machine's root is the empty directory it was.
    assert os.listdir(machine.root) == []
    assert cloud.has_the_data('far', vm['uuid'])
    assert state.leaks() == []


@pytest.mark.parametrize('shell', [None, '/bin/dash'])
@pytest.mark.parametrize('pair', ['here->there', 'there->here',
                                  'two machines', 'one other machine'])
def test_migrate_and_confirm_between_machines(cloud, machines, pair, shell):
    """Each pair of hosts, with the machines' login shell (root's) bash,
    or dash: the commands sent there do not depend on it."""
    one, two = machines(login_shell=shell), machines(login_shell=shell)
    if shell:
        assert one.run('echo $0').strip() == os.path.basename(shell)
    if pair == 'here->there':
        cloud.local_host('a')
        cloud.remote_host('b', one)
    elif pair == 'there->here':
        cloud.remote_host('a', one)
        cloud.local_host('b')
    elif pair == 'two machines':
        cloud.remote_host('a', one)
        cloud.remote_host('b', two)
    else:
        cloud.remote_host('a', one)
        cloud.remote_host('b', one)
    vm = cloud.server('a')
    result = _migrate(cloud, vm, 'b')
    assert result['flow_state'] == tf_states.SUCCESS
    assert repository.instance_get(vm['uuid'])['host'] == 'b'
    assert cloud.has_the_data('b', vm['uuid'])
    assert state.leaks() == []
    dest = virt.get_driver(repository.host_get('b'))
    assert dest.files.listdir(dest.instance_dir(vm['uuid'])) == [
        'disk', 'disk.info', 'libvirt.xml']  # no partial copy, no temporary

    api.confirm_resize(cloud.ctx, vm['uuid'], wait=True)
    source = virt.get_driver(repository.host_get('a'))
    assert source.list_instance_dirs() == []
    assert dest.list_instance_dirs() == [vm['uuid']]
    assert state.leaks() == []


def test_resize_then_revert_across_two_machines(cloud, machines):
    one, two = machines(), machines()
    cloud.remote_host('a', one)
    cloud.remote_host('b', two)
    vm = cloud.server('a')
    api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    inst = repository.instance_get(vm['uuid'])
    assert (inst['host'], inst['flavor_id']) == ('b', cloud.big['id'])
    grown = virt.get_driver(repository.host_get('b')).disk_info(vm['uuid'])
    assert grown.virtual_size == 2 * 1024 ** 3
    # The source keeps its stash, with the snapshot revert goes back to.
    assert _tree(one, 'a') == [vm['uuid'] + '_resize',
                               vm['uuid'] + '_resize/disk',
                               vm['uuid'] + '_resize/disk.info',
                               vm['uuid'] + '_resize/libvirt.xml']

    # What is written on the destination does not come back with a revert.
    _qemu_io('b', vm['uuid'], ['-c', 'write -P 0x11 0 1M'])
    api.revert_resize(cloud.ctx, vm['uuid'], wait=True)
    inst = repository.instance_get(vm['uuid'])
    assert (inst['host'], inst['flavor_id']) == ('a', cloud.small['id'])
    back = virt.get_driver(repository.host_get('a')).disk_info(vm['uuid'])
    assert back.virtual_size == 1024 ** 3 and back.snapshots == ()
    assert cloud.has_the_data('a', vm['uuid'])    # 0xa0 at 0, not 0x11
    assert _tree(two, 'b') == []
    assert state.leaks() == []


def test_failed_move_is_undone_on_both_machines(cloud, machines):
    one, two = machines(), machines()
    cloud.remote_host('a', one)
    cloud.remote_host('b', two)
    vm = cloud.server('a')
    before = _tree(one, 'a')
    faults.inject('FinishMigration', faults.BEFORE_EXECUTE)
    with pytest.raises(faults.InjectedFault):
        _migrate(cloud, vm, 'b')
    assert _tree(one, 'a') == before
    assert _tree(two, 'b') == []
    assert repository.instance_get(vm['uuid'])['host'] == 'a'
    assert cloud.has_the_data('a', vm['uuid'])
    assert state.leaks() == []


@pytest.fixture
def slow_rsync(conf):
    """rsync at 2 MB/s, so that a copy of the test's data takes seconds."""
    conf.set_override('rsync_options', ['--bwlimit=2000'], group='remote')


@pytest.fixture
def copies(monkeypatch):
    """Each rsync copy's CopyStats; ``copies.crash_at`` makes a progress
    report at or past that fraction raise SimulatedCrash."""
    real = transfer.copy_disk
    calls = []

    def spy(src_files, src, dst_files, dst, progress=None, **kwargs):
        def reporting(fraction):
            progress(fraction)
            if spy.crash_at is not None and fraction >= spy.crash_at:
                spy.crash_at = None
                raise faults.SimulatedCrash('crash while copying')
        stats = real(src_files, src, dst_files, dst, progress=reporting,
                     **kwargs)
        calls.append(stats)
        return stats

    spy.crash_at = None
    spy.calls = calls
    monkeypatch.setattr(transfer, 'copy_disk', spy)
    return spy


@pytest.mark.parametrize('pair', ['here->there', 'there->here',
                                  'two machines'])
def test_copy_cut_off_half_way_is_resumed(cloud, machines, slow_rsync,
                                          copies, pair):
    one, two = machines(), machines()
    if pair == 'here->there':
        cloud.local_host('a')
    else:
        cloud.remote_host('a', one)
    if pair == 'there->here':
        cloud.local_host('b')
    else:
        cloud.remote_host('b', two)
    vm = cloud.server('a')
    copies.crash_at = 0.3
    with pytest.raises(faults.SimulatedCrash):
        _migrate(cloud, vm, 'b')
    flow_id = repository.migration_list(vm['uuid'])[-1]['flow_id']
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    dest = virt.get_driver(repository.host_get('b'))
    partial = os.path.join(dest.instance_dir(vm['uuid']),
                           host_files.RSYNC_PARTIAL_DIR, 'disk')
    # The receiving rsync saves its part when it sees the sender go,
    # a moment after this process stopped it.
    deadline = time.monotonic() + 10
    while not dest.files.getsize(partial) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dest.files.getsize(partial) > 0

    result = api.resume_flow(cloud.ctx, flow_id)
    assert result['flow_state'] == tf_states.SUCCESS
    stats, _domain_xml = copies.calls
    # rsync found the part copied before the crash and did not send it.
    assert stats.reused > 0
    assert stats.copied < stats.size
    assert cloud.has_the_data('b', vm['uuid'])
    assert dest.files.listdir(dest.instance_dir(vm['uuid'])) == [
        'disk', 'disk.info', 'libvirt.xml']
    assert state.leaks() == []


def test_a_machine_that_does_not_answer(cloud, machines):
    one = machines()
    cloud.local_host('a')
    cloud.remote_host('b', one)
    vm = cloud.server('a')
    one.stop()
    with pytest.raises(exception.HypervisorUnavailable):
        _migrate(cloud, vm, 'b')
    assert repository.instance_get(vm['uuid'])['host'] == 'a'
    drv = virt.get_driver(repository.host_get('a'))
    assert drv.list_instance_dirs() == [vm['uuid']]
    assert drv.get_info(vm['uuid']).power_state == \
        repository.instance_get(vm['uuid'])['power_state']


@pytest.mark.parametrize('ssh, path, message', [
    ('root@', '/srv/i', 'is not an ssh address'),
    ('a b', '/srv/i', 'is not an ssh address'),
    ('root@host:99999', '/srv/i', 'is not an ssh address'),
    ('root@127.0.0.1:1', 'relative/path', 'must be absolute'),
])
def test_bad_ssh_host_is_refused(cloud, ssh, path, message, tmp_path):
    with pytest.raises(exception.InvalidInput, match=message):
        api.create_host(cloud.ctx, 'bad', 8, 4096, 40, uri='test:///default',
                        instances_path=path, ssh=ssh)
    assert repository.host_list() == []


def test_missing_instances_path_on_the_machine_is_refused(cloud, machines):
    one = machines()
    with pytest.raises(exception.InvalidInput, match='no directory'):
        api.create_host(cloud.ctx, 'far', 8, 4096, 40, uri='test:///default',
                        instances_path=one.path('nowhere'), ssh=one.address)
    assert repository.host_list() == []


def test_cli_creates_and_lists_a_host_on_another_machine(conf, db_url,
                                                         machines, tmp_path):
    machine = machines()
    machine.run('mkdir %s' % machine.path('far'))
    node = tmp_path / 'far-node.xml'
    node.write_text(local.NODE_XML % {'cpus': 16, 'memory_kib': 1 << 25})

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(list(argv))
        assert code == 0, err.getvalue()
        return json.loads(out.getvalue())

    virt.reset()
    try:
        shown = run('host', 'create', 'far', '--vcpus', '4', '--memory-mb',
                    '1024', '--disk-gb', '10', '--uri', 'test://%s' % node,
                    '--instances-path', machine.path('far'), '--ssh',
                    machine.address, '-f', 'json')
        assert (shown['ssh'], shown['instances_path']) == (
            machine.address, machine.path('far'))
        [listed] = run('host', 'list', '-f', 'json')
        assert (listed['Name'], listed['Files on']) == ('far',
                                                        machine.address)
    finally:
        virt.reset()


def test_a_copy_that_fails_is_a_disk_error_and_the_move_is_undone(
        cloud, machines, conf):
    one = machines()
    cloud.local_host('a')
    cloud.remote_host('b', one)
    vm = cloud.server('a')
    conf.set_override('rsync_path', '/nonexistent/rsync', group='remote')
    with pytest.raises(exception.DiskError, match='rsync to b failed'):
        _migrate(cloud, vm, 'b')
    assert repository.instance_get(vm['uuid'])['host'] == 'a'
    assert _tree(one, 'b') == []
    assert cloud.has_the_data('a', vm['uuid'])
    assert state.leaks() == []
