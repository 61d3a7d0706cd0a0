"""The driver's power_off on a real booted guest (the test guest on a
local QEMU host): the ACPI power button, pressed again every
``[compute]/shutdown_retry_interval`` seconds until
``[compute]/shutdown_timeout``, then a hard stop. Each press is counted
from the guest's own console lines, never from the clock; libvirt's
shut-off reason tells a clean stop (the guest powered itself off) from a
hard one (destroyed)."""
import os
import uuid as uuidlib
import xml.etree.ElementTree as ET

import libvirt
import pytest

from resize_flows.testing import guest
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import host as libvirt_host
from tests.integration.conftest import wait_for_guest_line

pytestmark = pytest.mark.integration

# Generous: TCG on a loaded 2-core machine. Never a measure of speed.
BOOT_TIMEOUT = 180


def _domain_xml(uid, kernel, initrd, disk, log, cmdline):
    dom = ET.Element('domain', type='qemu')
    ET.SubElement(dom, 'name').text = config.domain_name(uid)
    ET.SubElement(dom, 'uuid').text = uid
    ET.SubElement(dom, 'memory', unit='MiB').text = '128'
    ET.SubElement(dom, 'vcpu').text = '1'
    os_el = ET.SubElement(dom, 'os')
    ET.SubElement(os_el, 'type', arch='x86_64', machine='pc').text = 'hvm'
    ET.SubElement(os_el, 'kernel').text = kernel
    ET.SubElement(os_el, 'initrd').text = initrd
    ET.SubElement(os_el, 'cmdline').text = cmdline
    features = ET.SubElement(dom, 'features')
    ET.SubElement(features, 'acpi')
    ET.SubElement(features, 'apic')
    ET.SubElement(dom, 'on_poweroff').text = 'destroy'
    ET.SubElement(dom, 'on_reboot').text = 'destroy'
    ET.SubElement(dom, 'on_crash').text = 'destroy'
    devices = ET.SubElement(dom, 'devices')
    el = ET.SubElement(devices, 'disk', type='file', device='disk')
    ET.SubElement(el, 'driver', name='qemu', type='qcow2')
    ET.SubElement(el, 'source', file=disk)
    ET.SubElement(el, 'target', dev='vda', bus='virtio')
    serial = ET.SubElement(devices, 'serial', type='file')
    ET.SubElement(serial, 'source', path=log, append='on')
    ET.SubElement(serial, 'target', port='0')
    console = ET.SubElement(devices, 'console', type='file')
    ET.SubElement(console, 'source', path=log, append='on')
    ET.SubElement(console, 'target', type='serial', port='0')
    ET.SubElement(devices, 'memballoon', model='none')
    return ET.tostring(dom, encoding='unicode')


@pytest.fixture
def boot_guest(qemu_hosts, guest_image):
    """boot(ignore) -> (driver, uuid, domain, console log path): the test
    guest defined and started on host h1 with ``rf.ignore_acpi=ignore``,
    once its report is on the console (so its power-button handler
    runs). Its files are in an instance directory of the host's owner."""
    drv = qemu_hosts['h1']
    kernel, initrd = guest_image

    def boot(ignore):
        uid = str(uuidlib.uuid4())
        owner = os.stat(drv.instances_path)
        path = os.path.join(drv.instances_path, uid)
        os.mkdir(path, 0o700)
        disk = guest.make_data_disk(os.path.join(path, 'disk'),
                                    {'data.txt': b'flushed on shutdown\n'})
        for one in (path, disk):
            os.chown(one, owner.st_uid, owner.st_gid)
        log = os.path.join(path, 'console.log')
        cmdline = 'console=ttyS0 quiet panic=-1 rf.ignore_acpi=%d' % ignore
        conn = libvirt_host.get_connection(drv.uri, drv.host)
        dom = conn.defineXML(_domain_xml(uid, kernel, initrd, disk, log,
                                         cmdline))
        dom.create()
        wait_for_guest_line(log, guest.REPORT, BOOT_TIMEOUT, dom=dom)
        return drv, uid, dom, log

    return boot


def _console(log):
    with open(log, errors='replace') as handle:
        return handle.read()


def _presses(log):
    return [p['action'] for p in guest.parse_reports(
        _console(log), guest.POWER_BUTTON_PRESS)]


def test_power_off_is_the_guests_own_clean_shutdown(boot_guest, conf):
    conf.set_override('shutdown_timeout', 60, group='compute')
    drv, uid, dom, log = boot_guest(0)

    assert drv.power_off(uid, 60) is True

    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF,
                           libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    assert guest.parse_reports(_console(log), guest.SHUTDOWN) == [
        {'boot': 1, 'reason': 'acpi-power-button', 'press': 1}]
    assert _presses(log)[0] == 'shutdown'
    # again: already off, nothing pressed
    assert drv.power_off(uid, 60) is False
    assert len(_presses(log)) <= 2


def test_a_guest_that_ignores_the_first_press_stops_at_the_next(
        boot_guest, conf):
    conf.set_override('shutdown_retry_interval', 2, group='compute')
    drv, uid, dom, log = boot_guest(1)

    assert drv.power_off(uid, 120) is True

    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF,
                           libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    assert guest.parse_reports(_console(log), guest.SHUTDOWN) == [
        {'boot': 1, 'reason': 'acpi-power-button', 'press': 2}]
    presses = _presses(log)
    assert presses[:2] == ['ignored', 'shutdown'], presses
    # a press that came while it was shutting down changed nothing
    assert set(presses[2:]) <= {'stopping'}, presses


def test_a_guest_that_ignores_every_press_is_stopped_hard(boot_guest,
                                                          conf):
    # one press (the next would come after the timeout), then destroy
    conf.set_override('shutdown_retry_interval', 60, group='compute')
    drv, uid, dom, log = boot_guest(99)

    assert drv.power_off(uid, 5) is True

    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF,
                           libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert guest.parse_reports(_console(log), guest.SHUTDOWN) == []
    assert set(_presses(log)) <= {'ignored'}
