"""``flow abandon`` and ``audit`` on real QEMU hosts: a migration of a
running guest dies once its disk is on host2 (a simulated crash), host1
then stops answering for good; the flow is abandoned, and the audit lists
what is left on host2, checked from outside with qemu-img and libvirt."""
import json
import os
import subprocess

import pytest

from resize_flows import api
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows import virt
from tests.functional.test_audit import unplug

pytestmark = pytest.mark.integration


def test_abandon_a_move_whose_source_is_gone_then_audit(qemu_cloud):
    vm = qemu_cloud.server()['uuid']
    faults.inject('FinishMigration', faults.BEFORE_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.migrate(qemu_cloud.ctx, vm, host='host2', wait=True)
    faults.clear()
    mig = repository.migration_list(vm)[-1]
    flow_id = mig['flow_id']
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    host2 = virt.get_driver(repository.host_get('host2'))
    copied = os.path.join(host2.instance_dir(vm), 'disk')
    unplug('host1', qemu_cloud.base)

    done = api.abandon_flow(qemu_cloud.ctx, flow_id, 'host1 is gone')
    assert done['released_on'] == ['host1']
    inst = repository.instance_get(vm)
    assert (inst['vm_state'], inst['task_state']) == (states.ERROR, None)
    assert repository.migration_get(mig['uuid'])['status'] == 'error'
    assert [(a['consumer_uuid'], a['host'])
            for a in repository.allocation_list()] == [(vm, 'host2')]

    rows = api.audit(qemu_cloud.ctx)
    assert ('host', 'host1') in [(r['kind'], r['object']) for r in rows]
    left = [r for r in rows if r['kind'] == 'directory']
    assert [(r['host'], r['object']) for r in left] == [('host2', vm)]
    # From outside: the copy is on host2, whole, and no guest runs it.
    info = json.loads(subprocess.run(
        ['qemu-img', 'info', '-U', '--output=json', copied],
        check=True, capture_output=True, text=True).stdout)
    assert info['virtual-size'] == 1024 ** 3
    assert host2.list_instance_uuids() == []
    # --repair touches nothing that involves host1 or the copied disk.
    assert all(r['fix'] != 'repaired'
               for r in api.audit(qemu_cloud.ctx, repair=True))
    assert os.path.exists(copied)
