"""A volume of the volumes plugin seen from inside a real guest: the test
guest (root from an image, ephemeral vdb, swap vdc) gets a 1 GiB volume
attached live, and after a migrate and after the revert its own report
(read from its console log file on the host where it runs, not through
the project's code) lists the volume as vdd; the volume file is the same
one throughout, never copied."""
import os
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows import plugins
from resize_flows.testing import guest
from resize_flows.testing import guestlog
from resize_flows.virt.libvirt import host as libvirt_host
from resize_flows.virt.libvirt import layout
from tests.integration.conftest import assert_consistent

pytestmark = pytest.mark.integration

# Generous: TCG on a loaded 2-core machine. Never a measure of speed.
BOOT_TIMEOUT = 180
GiB = 1024 ** 3


def _read(path):
    try:
        with open(path, errors='replace') as handle:
            return handle.read()
    except FileNotFoundError:
        return ''


def _report(vm, after_boot=0):
    """The running boot's report (of a boot after ``after_boot``)."""
    inst = repository.instance_get(vm)
    path = os.path.join(repository.host_get(inst['host'])['instances_path'],
                        vm, layout.CONSOLE_LOG)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        text = _read(path)
        report = guestlog.current_report(text)
        if report is not None and report['boot'] > after_boot:
            return report
        assert 'Kernel panic' not in text, text[-3000:]
        assert time.monotonic() < deadline, 'no report in %s after %ss:\n%s' \
            % (path, BOOT_TIMEOUT, text[-3000:])
        time.sleep(0.5)


def _live_serials(host_name, vm):
    """{target: serial} of the running domain's disks, as libvirt says."""
    host = repository.host_get(host_name)
    dom = libvirt_host.get_connection(host['uri'], host_name) \
        .lookupByUUIDString(vm)
    assert dom.isActive()
    root = ET.fromstring(dom.XMLDesc(0))
    return {d.find('target').get('dev'): d.findtext('serial')
            for d in root.findall('./devices/disk')}


def test_the_guest_sees_its_volume_across_a_migrate_and_revert(
        qemu_cloud, guest_image, conf):
    conf.set_override('plugins', ['volumes'])
    conf.set_override('shutdown_timeout', 60, group='compute')
    conf.set_override('shutdown_retry_interval', 5, group='compute')
    ctx = qemu_cloud.ctx
    kernel, initrd = guest_image
    root = guest.make_data_disk(os.path.join(qemu_cloud.base, 'root.qcow2'),
                                {'hello.txt': b'hello\n'}, size_mb=16)
    api.create_image(ctx, 'guest', root, kernel=kernel, ramdisk=initrd)
    api.create_flavor(ctx, 'g.small', 1, 128, 1, ephemeral_gb=1,
                      swap_mb=16)
    vm = api.create_server(ctx, 'vol-vm', 'g.small', 'host1',
                           image='guest')['uuid']
    first = _report(vm)
    assert sorted(first['disks']) == ['vda', 'vdb', 'vdc']

    vol = api.create_volume(ctx, 'data', 1)
    where = os.stat(vol['path']).st_ino
    api.attach_volume(ctx, vm, 'data')
    # Attached live: QEMU's running domain has it (libvirt's live XML).
    assert _live_serials('host1', vm)['vdd'] == vol['id']

    api.migrate(ctx, vm, wait=True)
    assert repository.instance_get(vm)['host'] == 'host2'
    moved = _report(vm, after_boot=first['boot'])
    assert moved['disks']['vdd'] == 1 * GiB
    assert moved['files'] == first['files']
    assert _live_serials('host2', vm)['vdd'] == vol['id']
    assert_consistent(vm)
    [plugin] = plugins.load(['volumes'])
    assert plugin.audit() == []

    api.revert_resize(ctx, vm, wait=True)
    assert repository.instance_get(vm)['host'] == 'host1'
    # The root disk is rolled back to before the move: its boot counter
    # too, so this boot counts as the migrated one did.
    back = _report(vm, after_boot=first['boot'])
    assert back['boot'] == moved['boot']
    assert back['disks']['vdd'] == 1 * GiB
    assert back['files'] == first['files']
    assert _live_serials('host1', vm)['vdd'] == vol['id']
    assert_consistent(vm)
    assert plugin.audit() == []
    assert os.stat(vol['path']).st_ino == where

    api.detach_volume(ctx, vm, 'data')
    assert 'vdd' not in _live_serials('host1', vm)
    api.delete_server(ctx, vm)
    with pytest.raises(libvirt.libvirtError):
        host = repository.host_get('host1')
        libvirt_host.get_connection(host['uri'], 'host1') \
            .lookupByUUIDString(vm)
