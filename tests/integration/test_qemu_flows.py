"""The flows, through the API, with real QEMU guests on two local hosts.

resize + confirm, migrate + revert, a fault once the guest already runs on
the destination, and a stopped server's resize + revert, on a SQLite
database; each checked on the hypervisors and the disks as well as in the
records.
"""
import os

import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import daemon
from tests.integration.conftest import processes_under
from tests.integration.conftest import qemu_pids

pytestmark = pytest.mark.integration

GiB = 1024 ** 3


def _driver(name):
    return virt.get_driver(repository.host_get(name))


def _allocations():
    return sorted((a['consumer_uuid'], a['host'], a['vcpus'],
                   a['memory_mb'], a['disk_gb'])
                  for a in repository.allocation_list())


def _assert_holds_nothing(name, vm):
    drv = _driver(name)
    assert not drv.instance_exists(vm)
    assert drv.list_instance_uuids() == []
    assert drv.list_instance_dirs() == []
    assert not qemu_pids(drv.instances_path)
    assert repository.allocation_list(host=name) == []


def test_resize_confirm_then_migrate_revert(qemu_cloud):
    vm = qemu_cloud.server()['uuid']
    assert _driver('host1').get_info(vm) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=1, memory_mb=64)
    assert qemu_pids(_driver('host1').instance_dir(vm))

    # resize to bigger, onto host2, and confirm
    result = api.resize(qemu_cloud.ctx, vm, 'bigger', wait=True)
    assert result['migration']['dest_compute'] == 'host2'
    assert repository.instance_get(vm)['vm_state'] == states.RESIZED
    assert state.leaks() == []
    api.confirm_resize(qemu_cloud.ctx, vm, wait=True)
    inst = repository.instance_get(vm)
    assert (inst['vm_state'], inst['task_state'], inst['host'],
            inst['flavor_id']) == (states.ACTIVE, None, 'host2',
                                   qemu_cloud.bigger['id'])
    h2 = _driver('host2')
    assert h2.get_info(vm) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=2, memory_mb=96)
    assert qemu_pids(h2.instance_dir(vm))
    assert h2.disk_info(vm).virtual_size == 2 * GiB
    assert h2.disk_info(vm).snapshots == ()
    assert h2.list_instance_dirs() == [vm]
    _assert_holds_nothing('host1', vm)
    assert not os.path.exists(_driver('host1').instance_dir(vm))
    assert _allocations() == [(vm, 'host2', 2, 96, 2)]
    assert state.leaks() == []

    # migrate (to host1) and revert: back on host2 as it was
    before = state.capture()
    result = api.migrate(qemu_cloud.ctx, vm, wait=True)
    assert result['migration']['dest_compute'] == 'host1'
    assert _driver('host1').get_info(vm).power_state == states.RUNNING
    assert state.leaks() == []
    result = api.revert_resize(qemu_cloud.ctx, vm, wait=True)
    assert result['migration']['status'] == states.MIGRATION_REVERTED
    assert state.capture() == before
    assert h2.get_info(vm) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=2, memory_mb=96)
    assert qemu_pids(h2.instance_dir(vm))
    _assert_holds_nothing('host1', vm)
    assert state.leaks() == []

    # and everything goes through the API: no process of either host stays
    api.delete_server(qemu_cloud.ctx, vm)
    assert not qemu_pids(qemu_cloud.base)
    for name in ('host1', 'host2'):
        api.delete_host(qemu_cloud.ctx, name)
        assert not os.path.exists(daemon.host_dir(name))
    assert processes_under(qemu_cloud.base) == []


def test_fault_after_finish_migration_is_undone(qemu_cloud):
    vm = qemu_cloud.server()['uuid']
    before = state.capture()
    faults.inject('FinishMigration', faults.AFTER_EXECUTE)
    with pytest.raises(faults.InjectedFault):
        api.resize(qemu_cloud.ctx, vm, 'bigger', wait=True)
    assert faults.hits('FinishMigration', faults.AFTER_EXECUTE) == 1
    assert state.capture() == before
    h1 = _driver('host1')
    assert h1.get_info(vm) == virt_driver.InstanceInfo(
        power_state=states.RUNNING, vcpus=1, memory_mb=64)
    assert qemu_pids(h1.instance_dir(vm))
    _assert_holds_nothing('host2', vm)
    [mig] = repository.migration_list()
    assert mig['status'] == states.MIGRATION_ERROR
    assert state.leaks() == []


def test_stopped_server_resized_and_reverted_stays_off(qemu_cloud):
    vm = qemu_cloud.server(power_on=False)['uuid']
    assert repository.instance_get(vm)['vm_state'] == states.STOPPED
    assert not qemu_pids(qemu_cloud.base)
    before = state.capture()
    api.resize(qemu_cloud.ctx, vm, 'bigger', wait=True)
    h2 = _driver('host2')
    assert h2.get_info(vm) == virt_driver.InstanceInfo(
        power_state=states.SHUTDOWN, vcpus=2, memory_mb=96)
    assert not qemu_pids(qemu_cloud.base)
    api.revert_resize(qemu_cloud.ctx, vm, wait=True)
    assert state.capture() == before
    assert repository.instance_get(vm)['vm_state'] == states.STOPPED
    assert _driver('host1').get_info(vm).power_state == states.SHUTDOWN
    assert not qemu_pids(qemu_cloud.base)
    _assert_holds_nothing('host2', vm)
    assert state.leaks() == []
