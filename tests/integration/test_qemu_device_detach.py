"""A volume detached from a running QEMU guest (virt/libvirt/detach.py):
the test guest's kernel acknowledges the unplug, so the running domain
lets the disk go; a guest with no OS never does, so after every detach
request the disk stays in the running guest while its definition and
the records no longer have it, and it goes at the guest's next stop
(here: the power off of a migrate). What the domains have is read
through libvirt, not through the project's code."""
import os
import xml.etree.ElementTree as ET

import libvirt
import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows.persistence import volumes as volume_db
from resize_flows import plugins
from resize_flows.testing import guest
from resize_flows.testing import state
from resize_flows.virt.libvirt import host as libvirt_host
from tests.integration.test_volume_guest import _report

pytestmark = pytest.mark.integration


def _serials(host_name, vm, flags=0):
    """{target: serial} of the domain's disks, running (``flags`` 0) or
    defined, as libvirt says."""
    host = repository.host_get(host_name)
    dom = libvirt_host.get_connection(host['uri'], host_name) \
        .lookupByUUIDString(vm)
    root = ET.fromstring(dom.XMLDesc(flags))
    return {d.find('target').get('dev'): d.findtext('serial')
            for d in root.findall('./devices/disk')}


def _defined(host_name, vm):
    return _serials(host_name, vm, libvirt.VIR_DOMAIN_XML_INACTIVE)


def test_a_guest_with_no_os_keeps_the_disk_until_it_stops(qemu_cloud, conf):
    conf.set_override('plugins', ['volumes'])
    conf.set_override('device_detach_attempts', 2, group='compute')
    conf.set_override('device_detach_timeout', 3, group='compute')
    ctx = qemu_cloud.ctx
    vm = qemu_cloud.server()['uuid']
    vol = api.create_volume(ctx, 'data', 1)
    api.attach_volume(ctx, vm, 'data')
    assert _serials('host1', vm)['vdd'] == vol['id']

    done = api.detach_volume(ctx, vm, 'data')
    assert done == {'volume_id': vol['id'], 'instance_uuid': vm,
                    'released': False}
    # Whole on the records' side and in the definition...
    assert 'vdd' not in _defined('host1', vm)
    assert volume_db.attachment_list(volume_id=vol['id']) == []
    assert api.get_volume(ctx, vol['id'])['status'] == 'available'
    # ... while the running guest still has it.
    assert _serials('host1', vm)['vdd'] == vol['id']
    # Another volume attached meanwhile: vdd in the definition, the next
    # free target live (the kept disk holds vdd there until the stop).
    other = api.create_volume(ctx, 'other', 1)
    api.attach_volume(ctx, vm, 'other')
    assert _defined('host1', vm)['vdd'] == other['id']
    assert _serials('host1', vm)['vdd'] == vol['id']
    assert _serials('host1', vm)['vde'] == other['id']

    # Its next stop (a migrate powers it off) ends it.
    api.migrate(ctx, vm, wait=True)
    api.confirm_resize(ctx, vm, wait=True)
    assert _serials('host2', vm)['vdd'] == other['id']
    assert _defined('host2', vm)['vdd'] == other['id']
    assert vol['id'] not in _serials('host2', vm).values()
    [plugin] = plugins.load(['volumes'])
    assert plugin.audit() == []
    assert state.leaks() == []


def test_the_test_guest_lets_the_disk_go(qemu_cloud, guest_image, conf):
    conf.set_override('plugins', ['volumes'])
    ctx = qemu_cloud.ctx
    kernel, initrd = guest_image
    root = guest.make_data_disk(os.path.join(qemu_cloud.base, 'root.qcow2'),
                                {'hello.txt': b'hello\n'}, size_mb=16)
    api.create_image(ctx, 'guest', root, kernel=kernel, ramdisk=initrd)
    api.create_flavor(ctx, 'g.small', 1, 128, 1)
    vm = api.create_server(ctx, 'vm', 'g.small', 'host1',
                           image='guest')['uuid']
    _report(vm)
    vol = api.create_volume(ctx, 'data', 1)
    api.attach_volume(ctx, vm, 'data')
    assert _serials('host1', vm)['vdd'] == vol['id']

    done = api.detach_volume(ctx, vm, 'data')
    assert done['released'] is True
    assert 'vdd' not in _serials('host1', vm)
    assert 'vdd' not in _defined('host1', vm)
    assert api.get_volume(ctx, vol['id'])['status'] == 'available'
    assert state.leaks() == []
