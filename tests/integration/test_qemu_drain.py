"""host drain with real QEMU guests: three servers off host1, two at a
time, onto host2 and host3, checked with virsh on each host."""
import shutil
import subprocess

import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state
from tests.integration.conftest import qemu_pids

pytestmark = pytest.mark.integration


def _virsh(host, *args):
    """virsh against the host's own libvirt daemon (its URI)."""
    uri = repository.host_get(host)['uri']
    return subprocess.run(['virsh', '-c', uri] + list(args), check=True,
                          capture_output=True, text=True,
                          timeout=120).stdout


def _domains(host):
    """{uuid: state} of every domain of the host, as virsh lists them."""
    uuids = _virsh(host, 'list', '--all', '--uuid').split()
    return {u: _virsh(host, 'domstate', u).strip() for u in uuids}


def test_drain_three_servers_two_at_a_time(qemu_cloud):
    if shutil.which('virsh') is None:
        pytest.skip('virsh is not installed')
    ctx = qemu_cloud.ctx
    api.create_host(ctx, 'host3', 4, 1024, 20)
    vms = [qemu_cloud.server('vm%d' % i, power_on=i != 2)['uuid']
           for i in range(3)]
    assert _domains('host1') == {vms[0]: 'running', vms[1]: 'running',
                                 vms[2]: 'shut off'}

    rows = api.drain_host(ctx, 'host1', parallel=2)

    assert [(r['server'], r['from'], r['status'], r['reason'])
            for r in rows] == [(vm, 'host1', 'confirmed', None)
                               for vm in vms]
    went = {r['server']: r['to'] for r in rows}
    assert set(went.values()) == {'host2', 'host3'}
    assert _domains('host1') == {}
    assert not qemu_pids(repository.host_get('host1')['instances_path'])
    for dest in ('host2', 'host3'):
        expected = {vm: 'shut off' if vm == vms[2] else 'running'
                    for vm, to in went.items() if to == dest}
        assert _domains(dest) == expected
    for vm in vms:
        inst = repository.instance_get(vm)
        assert (inst['host'], inst['vm_state'], inst['task_state']) == (
            went[vm], states.STOPPED if vm == vms[2] else states.ACTIVE,
            None)
    host1 = repository.host_get('host1')
    assert (host1['enabled'], host1['disabled_reason']) == (
        False, 'drained by host drain')
    assert repository.allocation_list(host='host1') == []
    assert state.leaks() == []
    # Nothing left to do: a second run reports nothing.
    assert api.drain_host(ctx, 'host1', parallel=2) == []
