"""The ``ports`` plugin on real QEMU guests: a port attached to a running
guest is a NIC of the running QEMU at once (live attach), follows the
guest through a migration and its revert with its MAC, and is taken out
of the guest's definition by a detach. (The running QEMU lets the NIC go
only once its guest acknowledges the unplug, which a guest with no OS,
as this one, never does: the detach says so after its one short attempt
here, and the live removal is not asserted;
test_qemu_device_detach.py has both outcomes.)"""
import xml.etree.ElementTree as ET

import libvirt
import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows.plugins import ports as ports_plugin
from resize_flows.testing import state
from resize_flows.virt.libvirt import host as libvirt_host

pytestmark = pytest.mark.integration


def _macs(host, uuid, flags=0):
    """The MACs of the NICs of the domain of ``uuid`` on ``host``, as
    libvirt has it: running (``flags`` 0) or defined."""
    conn = libvirt_host.get_connection(repository.host_get(host)['uri'])
    xml = conn.lookupByUUIDString(uuid).XMLDesc(flags)
    return {m.get('address') for m in
            ET.fromstring(xml).findall('./devices/interface/mac')}


def test_live_attach_migrate_revert_detach(qemu_cloud, conf):
    conf.set_override('plugins', ['ports'])
    conf.set_override('device_detach_attempts', 1, group='compute')
    conf.set_override('device_detach_timeout', 2, group='compute')
    try:
        ctx = qemu_cloud.ctx
        vm = qemu_cloud.server()['uuid']
        port = api.create_port(ctx, 'p1', server=vm,
                               mac='fa:16:3e:12:34:56')
        assert port['bindings'] == [{'host': 'host1', 'status': 'ACTIVE'}]
        assert 'fa:16:3e:12:34:56' in _macs('host1', vm)
        assert 'fa:16:3e:12:34:56' in _macs(
            'host1', vm, libvirt.VIR_DOMAIN_XML_INACTIVE)
        api.migrate(ctx, vm, wait=True)
        assert 'fa:16:3e:12:34:56' in _macs('host2', vm)
        api.revert_resize(ctx, vm, wait=True)
        assert 'fa:16:3e:12:34:56' in _macs('host1', vm)
        assert ports_plugin.audit() == []
        assert api.detach_port(ctx, vm, 'p1')['released'] is False
        assert 'fa:16:3e:12:34:56' not in _macs(
            'host1', vm, libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert ports_plugin.audit() == []
        assert state.leaks() == []
    finally:
        conf.clear_override('plugins')
