"""LibvirtDriver against libvirt's test driver (two hosts = two test:///
URIs, each its own hypervisor) with real qcow2 disks made by qemu-img."""
import os
import subprocess

import libvirt
import pytest

from resize_flows import exception
from resize_flows import states
from resize_flows import virt
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import host as libvirt_host
from resize_flows.virt.libvirt import local
from resize_flows.virt.libvirt import sparsecopy

SMALL = {'name': 'm1.small', 'vcpus': 1, 'memory_mb': 512, 'root_gb': 1}
LARGE = {'name': 'm1.large', 'vcpus': 4, 'memory_mb': 2048, 'root_gb': 2}
SNAP = 'resize-snap'
RESIZE = virt_driver.RESIZE_SUFFIX
GiB = 1024 ** 3


def qemu_io(path, command):
    """Run one qemu-io command on a qcow2 file; True if it succeeded (a
    ``read -P`` whose pattern does not match fails)."""
    proc = subprocess.run(['qemu-io', '-f', 'qcow2', '-c', command, path],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and 'failed' not in proc.stdout


def _dirs(drv, instance):
    """Which of <uuid>, <uuid>_resize exist on drv."""
    return {s for s in ('', RESIZE)
            if os.path.isdir(drv.instance_dir(instance['uuid'], s))}


def _migrate(src, dst, instance, flavor=LARGE, power_on=True):
    src.migrate_disk_and_power_off(instance['uuid'], dst, SNAP)
    dst.finish_migration(instance, flavor, SNAP, power_on)


# -- guests --------------------------------------------------------------

def test_spawn_creates_disk_xml_and_running_domain(src, instance):
    src.spawn(instance, SMALL)
    uuid = instance['uuid']
    assert src.get_info(uuid) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=1, memory_mb=512)
    info = src.disk_info(uuid)
    assert info.virtual_size == 1 * GiB
    assert info.snapshots == ()
    assert os.path.isfile(os.path.join(src.instance_dir(uuid),
                                       'libvirt.xml'))
    assert src.list_instance_uuids() == [uuid]
    assert src.instance_exists(uuid)
    assert src.list_instance_dirs() == [uuid]
    dom = libvirt_host.get_connection(src.uri).lookupByUUIDString(uuid)
    assert dom.name() == 'instance-' + uuid


def test_spawn_is_idempotent_and_refuses_another_flavor(src, instance):
    src.spawn(instance, SMALL)
    src.spawn(instance, SMALL)
    assert src.list_instance_uuids() == [instance['uuid']]
    assert src.get_info(instance['uuid']).power_state == states.RUNNING
    with pytest.raises(exception.InstanceExistsOnHost):
        src.spawn(instance, LARGE)


def test_spawn_without_power_on(src, instance):
    src.spawn(instance, SMALL, power_on=False)
    assert src.get_info(instance['uuid']).power_state == states.SHUTDOWN


def test_spawn_rejects_a_uuid_that_is_not_one(src):
    with pytest.raises(exception.InvalidInput):
        src.spawn({'uuid': '../etc', 'name': 'x'}, SMALL)


def test_power_off_and_on_twice(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    assert src.power_off(uuid) is True
    assert src.power_off(uuid) is False
    assert src.get_info(uuid).power_state == states.SHUTDOWN
    src.power_on(uuid)
    src.power_on(uuid)
    assert src.get_info(uuid).power_state == states.RUNNING


def test_power_off_with_acpi_timeout(src, instance):
    src.spawn(instance, SMALL)
    assert src.power_off(instance['uuid'], timeout=1) is True
    assert src.get_info(instance['uuid']).power_state == states.SHUTDOWN


def test_destroy_twice(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    src.destroy(uuid)
    src.destroy(uuid)
    assert not src.instance_exists(uuid)
    assert src.list_instance_uuids() == []
    assert src.list_instance_dirs() == []


def test_destroy_keeping_disks_then_ensure_defined(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    src.destroy(uuid, destroy_disks=False)
    assert not src.instance_exists(uuid)
    assert src.disk_info(uuid) is not None
    assert src.ensure_defined(uuid) is True
    assert src.ensure_defined(uuid) is False
    assert src.get_info(uuid) == virt_driver.InstanceInfo(
        power_state=states.SHUTDOWN, vcpus=1, memory_mb=512)


def test_unknown_instance_is_not_found_on_host(src, instance):
    uuid = instance['uuid']
    for call in (src.get_info, src.power_on, src.power_off):
        with pytest.raises(exception.InstanceNotFoundOnHost) as err:
            call(uuid)
        assert err.value.instance_uuid == uuid
        assert err.value.host == 'src'
    assert src.instance_exists(uuid) is False
    assert src.disk_info(uuid) is None


@pytest.mark.parametrize('uri', [
    'test:///nonexistent/node.xml',
    'qemu+unix:///session?socket=/nonexistent/libvirt-sock',
])
def test_bad_uri_is_hypervisor_unavailable(conf, tmp_path, uri):
    drv = virt.get_driver({'name': 'nowhere', 'uri': uri,
                           'instances_path': str(tmp_path)})
    try:
        with pytest.raises(exception.HypervisorUnavailable) as err:
            drv.list_instance_uuids()
        assert err.value.host == 'nowhere'
        with pytest.raises(exception.HypervisorUnavailable):
            drv.get_info('0b7e3c62-7a5c-4a39-9d43-66e0f2d0b8a1')
    finally:
        virt.reset()


def test_lost_connection_is_hypervisor_unavailable(src, instance):
    src.spawn(instance, SMALL)
    libvirt_host.get_connection(src.uri).close()
    with pytest.raises(exception.HypervisorUnavailable):
        src.get_info(instance['uuid'])


def test_libvirt_error_is_translated(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL, power_on=False)
    xml_path = os.path.join(src.instance_dir(uuid), 'libvirt.xml')
    with open(xml_path) as handle:          # same uuid, another name
        xml = handle.read().replace('instance-', 'other-').replace(
            '<vcpu>1</vcpu>', '<vcpu>2</vcpu>')
    with open(xml_path, 'w') as handle:
        handle.write(xml)
    with pytest.raises(exception.HypervisorError) as err:
        src.ensure_defined(uuid)
    assert not isinstance(err.value, libvirt.libvirtError)
    assert 'already' in str(err.value)


# -- drivers and hosts ---------------------------------------------------

def test_get_driver_caches_per_host_and_reset_drops_state(conf, instance):
    host = dict(local.create_local_host('cache', 'test'), name='cache')
    drv = virt.get_driver(host)
    assert virt.get_driver(dict(host)) is drv
    drv.spawn(instance, SMALL)
    virt.reset()
    again = virt.get_driver(host)
    assert again is not drv
    assert again.list_instance_uuids() == []     # a new test hypervisor
    virt.reset()


def test_create_local_test_host_twice_and_stop(conf):
    first = local.create_local_host('t1')         # default kind: test
    assert first == local.create_local_host('t1', 'test')
    assert first['uri'] == 'test://' + os.path.join(
        conf.state_dir, 'hosts', 't1', 'node.xml')
    assert os.path.isdir(first['instances_path'])
    with pytest.raises(exception.InvalidInput):
        local.create_local_host('t1', 'qemu')
    with pytest.raises(exception.InvalidInput):
        local.create_local_host('../up', 'test')
    local.stop_local_host('t1')
    local.stop_local_host('t1')
    local.stop_local_host('never-created')


def test_host_dir_of_uri(conf):
    hdir = daemon.host_dir('q1')
    assert daemon.host_dir_of_uri(daemon.session_uri(hdir)) == hdir
    assert daemon.host_dir_of_uri(
        'qemu+unix:///session?socket=/elsewhere/run/libvirt/libvirt-sock'
    ) is None
    assert daemon.host_dir_of_uri('test:///x/node.xml') is None


def test_test_node_xml_sizes_the_host(src):
    info = libvirt_host.get_connection(src.uri).getInfo()
    assert info[1] == local.TEST_NODE_MEMORY_MB
    assert info[2] == local.TEST_NODE_CPUS


# -- migrate / finish / confirm / revert ---------------------------------

def test_migrate_disk_and_power_off_to_another_host(src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    for _ in range(2):
        info = src.migrate_disk_and_power_off(uuid, dst, SNAP)
        assert info.path == os.path.join(dst.instance_dir(uuid), 'disk')
        assert info.snapshots == (SNAP,)
        assert info.virtual_size == 1 * GiB
    assert src.get_info(uuid).power_state == states.SHUTDOWN
    assert _dirs(src, instance) == {RESIZE}
    assert src.disk_info(uuid, RESIZE).snapshots == (SNAP,)
    assert sorted(os.listdir(dst.instance_dir(uuid))) == [
        'disk', 'disk.info', 'libvirt.xml']
    assert not dst.instance_exists(uuid)


def test_migrate_to_the_same_host(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    src.migrate_disk_and_power_off(uuid, src, SNAP)
    src.migrate_disk_and_power_off(uuid, src, SNAP)
    assert _dirs(src, instance) == {'', RESIZE}
    assert src.disk_info(uuid).snapshots == (SNAP,)
    src.finish_migration(instance, LARGE, SNAP, power_on=True)
    assert src.get_info(uuid) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=4, memory_mb=2048)
    src.confirm_migration(uuid, SNAP, host_changed=False)
    src.confirm_migration(uuid, SNAP, host_changed=False)
    assert _dirs(src, instance) == {''}
    assert src.get_info(uuid).power_state == states.RUNNING
    assert src.disk_info(uuid).snapshots == ()


def test_copy_disk_replaces_a_partial_copy(src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    src.power_off(uuid)
    src.stash_for_resize(uuid, SNAP)
    os.makedirs(dst.instance_dir(uuid))
    with open(os.path.join(dst.instance_dir(uuid), 'disk'), 'wb') as f:
        f.write(b'half a disk')
    info = src.copy_disk_to(uuid, dst)
    assert info.snapshots == (SNAP,)
    assert (os.path.getsize(info.path)
            == os.path.getsize(src.disk_info(uuid, RESIZE).path))


def test_stash_refuses_a_running_guest(src, instance):
    src.spawn(instance, SMALL)
    with pytest.raises(exception.HypervisorError):
        src.stash_for_resize(instance['uuid'], SNAP)
    assert _dirs(src, instance) == {''}


def test_unstash_after_failed_resize(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    src.power_off(uuid)
    src.stash_for_resize(uuid, SNAP)
    src.stash_for_resize(uuid, SNAP)
    src.destroy(uuid, destroy_disks=False)      # lost its domain, too
    for _ in range(2):
        src.unstash_after_failed_resize(uuid, SNAP)
        assert _dirs(src, instance) == {''}
        assert src.disk_info(uuid).snapshots == ()
        assert src.get_info(uuid) == virt_driver.InstanceInfo(
            power_state=states.SHUTDOWN, vcpus=1, memory_mb=512)


def test_finish_migration_grows_disk_and_applies_flavor(src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    src.migrate_disk_and_power_off(uuid, dst, SNAP)
    for _ in range(2):
        dst.finish_migration(instance, LARGE, SNAP, power_on=True)
        assert dst.get_info(uuid) == virt_driver.InstanceInfo(
            power_state=states.RUNNING, vcpus=4, memory_mb=2048)
        info = dst.disk_info(uuid)
        assert info.virtual_size == 2 * GiB
        assert info.snapshots == ()
    # the source keeps its stash and its old disk untouched
    assert src.disk_info(uuid, RESIZE).virtual_size == 1 * GiB
    assert src.disk_info(uuid, RESIZE).snapshots == (SNAP,)


def test_finish_migration_never_shrinks_and_can_stay_off(src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, LARGE)
    _migrate(src, dst, instance, flavor=SMALL, power_on=False)
    assert dst.disk_info(uuid).virtual_size == 2 * GiB
    assert dst.get_info(uuid) == virt_driver.InstanceInfo(
        power_state=states.SHUTDOWN, vcpus=1, memory_mb=512)


def test_finish_migration_without_a_disk(dst, instance):
    with pytest.raises(exception.DiskError):
        dst.finish_migration(instance, LARGE, SNAP, power_on=False)


def test_confirm_migration_to_another_host(src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    _migrate(src, dst, instance)
    for _ in range(2):
        src.confirm_migration(uuid, SNAP, host_changed=True)
        assert not src.instance_exists(uuid)
        assert src.list_instance_dirs() == []
    assert dst.get_info(uuid).power_state == states.RUNNING


def test_finish_revert_migration_rolls_the_disk_back(src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    _migrate(src, dst, instance)
    stashed = src.disk_info(uuid, RESIZE).path
    # Data written after the snapshot is what a rollback must undo.
    assert qemu_io(stashed, 'write -P 0xab 0 64k')
    assert qemu_io(stashed, 'read -P 0xab 0 64k')
    dst.destroy(uuid)
    for _ in range(2):
        src.finish_revert_migration(instance, SNAP, power_on=True)
        disk_path = src.disk_info(uuid).path
        assert not qemu_io(disk_path, 'read -P 0xab 0 64k')
        assert qemu_io(disk_path, 'read -P 0x00 0 64k')
        assert src.disk_info(uuid).snapshots == ()
        assert _dirs(src, instance) == {''}
        assert src.get_info(uuid) == virt_driver.InstanceInfo(
            power_state=states.RUNNING, vcpus=1, memory_mb=512)
    assert dst.list_instance_uuids() == []
    assert dst.list_instance_dirs() == []


def test_finish_revert_on_the_same_host(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    _migrate(src, src, instance)
    assert src.get_info(uuid).vcpus == 4
    src.rename_instance_dir(uuid, '', virt_driver.REVERT_SUFFIX)
    src.finish_revert_migration(instance, SNAP, power_on=False)
    src.finish_revert_migration(instance, SNAP, power_on=False)
    # the destination's running domain was the same domain: stopped, and
    # defined again with the old flavor
    assert src.get_info(uuid) == virt_driver.InstanceInfo(
        power_state=states.SHUTDOWN, vcpus=1, memory_mb=512)
    assert _dirs(src, instance) == {''}
    src.remove_instance_dir(uuid, virt_driver.REVERT_SUFFIX)
    src.remove_instance_dir(uuid, virt_driver.REVERT_SUFFIX)
    assert src.list_instance_dirs() == [uuid]


def test_rename_instance_dir(src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL, power_on=False)
    src.rename_instance_dir(uuid, '', '_x')
    src.rename_instance_dir(uuid, '', '_x')
    assert src.list_instance_dirs() == [uuid + '_x']
    with pytest.raises(exception.InstanceDirectoryConflict):
        src.rename_instance_dir(uuid, '_y', '_z')       # neither exists
    os.mkdir(src.instance_dir(uuid))
    with pytest.raises(exception.InstanceDirectoryConflict):
        src.rename_instance_dir(uuid, '', '_x')         # both exist


# -- disks ---------------------------------------------------------------

def test_sparse_copy_keeps_holes_and_data(conf, tmp_path):
    src_path, dst_path = tmp_path / 'src', tmp_path / 'dst'
    mib = 1024 * 1024
    with open(src_path, 'wb') as handle:
        handle.write(b'\x11' * mib)
        handle.seek(40 * mib)
        handle.write(b'\x22' * mib)
        handle.truncate(64 * mib)
    sparsecopy.sparse_copy(str(src_path), str(dst_path), 'here')
    assert os.path.getsize(dst_path) == 64 * mib
    assert os.stat(dst_path).st_blocks * 512 < 8 * mib
    with open(src_path, 'rb') as a, open(dst_path, 'rb') as b:
        while True:
            chunk = a.read(4 * mib)
            assert chunk == b.read(4 * mib)
            if not chunk:
                break
    assert not os.path.exists(str(dst_path) + disk.PART_SUFFIX)


def test_qemu_img_failure_is_a_disk_error(conf, tmp_path):
    bogus = tmp_path / 'disk'
    bogus.write_bytes(b'not a qcow2 image')
    with pytest.raises(exception.DiskError):
        disk.snapshot_create(str(bogus), SNAP, 'here')


def test_qemu_host_with_too_long_a_socket_path(conf, tmp_path):
    state_dir = tmp_path / ('x' * 100)
    conf.set_override('state_dir', str(state_dir))
    with pytest.raises(exception.InvalidInput) as err:
        local.create_local_host('q', 'qemu')
    assert 'socket' in str(err.value)
    assert not state_dir.exists()


def test_ensure_daemon_of_a_directory_that_is_no_host(conf, tmp_path):
    with pytest.raises(exception.HypervisorUnavailable):
        daemon.ensure_daemon(str(tmp_path))
