"""The libvirt driver with real QEMU guests on two local session-daemon
hosts: resize to the other host, then revert."""
import os
import uuid

import pytest

from resize_flows import states
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import local
from tests.integration.conftest import qemu_pids

pytestmark = pytest.mark.integration

TINY = {'name': 'tiny', 'vcpus': 1, 'memory_mb': 64, 'root_gb': 1}
BIGGER = {'name': 'bigger', 'vcpus': 2, 'memory_mb': 128, 'root_gb': 2}
SNAP = 'resize-snap'


def test_resize_to_other_host_and_revert(qemu_hosts):
    h1, h2 = qemu_hosts['h1'], qemu_hosts['h2']
    instance = {'uuid': str(uuid.uuid4()), 'name': 'integration-vm'}
    uid = instance['uuid']

    h1.spawn(instance, TINY)
    assert h1.get_info(uid) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=1, memory_mb=64)
    assert qemu_pids(h1.instance_dir(uid))
    owner = os.stat(h1.instances_path).st_uid
    assert os.stat(h1.disk_info(uid).path).st_uid == owner

    dest_disk = h1.migrate_disk_and_power_off(uid, h2, SNAP)
    assert dest_disk.snapshots == (SNAP,)
    assert h1.get_info(uid).power_state == states.SHUTDOWN
    assert not qemu_pids(h1.instances_path)

    h2.finish_migration(instance, BIGGER, SNAP, power_on=True)
    assert h2.get_info(uid) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=2, memory_mb=128)
    assert h2.disk_info(uid).virtual_size == 2 * 1024 ** 3
    assert qemu_pids(h2.instance_dir(uid))

    # revert: the destination goes away, the source comes back as it was
    h2.destroy(uid)
    assert not qemu_pids(h2.instances_path)
    h1.finish_revert_migration(instance, SNAP, power_on=True)
    assert h1.get_info(uid) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=1, memory_mb=64)
    assert h1.disk_info(uid).snapshots == ()
    assert h1.disk_info(uid).virtual_size == 1024 ** 3
    assert h2.list_instance_uuids() == []
    assert qemu_pids(h1.instance_dir(uid))


def test_stopped_daemon_comes_back_with_its_guest(qemu_hosts):
    h1 = qemu_hosts['h1']
    instance = {'uuid': str(uuid.uuid4()), 'name': 'survivor'}
    h1.spawn(instance, TINY)
    guest = qemu_pids(h1.instance_dir(instance['uuid']))
    assert guest

    hdir = os.path.dirname(h1.instances_path)
    local.stop_local_host('h1', destroy_guests=False)
    local.stop_local_host('h1', destroy_guests=False)
    assert daemon.daemon_pid(hdir) is None
    assert qemu_pids(h1.instance_dir(instance['uuid'])) == guest

    # the next call starts the daemon again, which finds the guest
    assert h1.get_info(instance['uuid']).power_state == states.RUNNING
    assert daemon.daemon_pid(hdir) is not None
