"""virt/libvirt/detach.py: a live detach is sent again until the guest
lets the device go, and gives up with what it kept.

libvirt's test driver has no live detach, so the running domain here is
a stand-in with libvirt's behaviour that matters: a detach request is
taken, the device leaves the live XML only when the guest acknowledges
(here after a given number of requests), and a second request while one
is pending fails as libvirt's does. The real thing (a QEMU guest that
acknowledges, one that never does) is tests/integration/
test_qemu_device_detach.py."""
import xml.etree.ElementTree as ET

import libvirt
import pytest

from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import detach

DISK = {'type': 'disk', 'id': 'vol-1', 'path': '/srv/volumes/volume-1',
        'format': 'qcow2', 'serial': 'vol-1'}
NIC = {'type': 'interface', 'id': 'port-1', 'mac': 'fa:16:3e:00:00:01'}


class RunningDomain:
    """A running domain whose guest acknowledges the unplug of a device
    after ``acks_after`` requests (None: never)."""

    def __init__(self, acks_after, devices=(DISK, NIC)):
        self.acks_after = acks_after
        self.requests = {}
        self.active = True
        self.devices = ET.Element('devices')
        self.elements = [config.add_plugin_device(self.devices, 'p', dev)
                         for dev in devices]

    def isActive(self):
        return self.active

    def XMLDesc(self, flags):
        root = ET.Element('domain')
        root.append(self.devices)
        return ET.tostring(root, encoding='unicode')

    def _find(self, alias):
        for el in self.devices:
            if el.find('alias').get('name') == alias:
                return el
        return None

    def detachDeviceFlags(self, xml, flags):
        assert flags == libvirt.VIR_DOMAIN_AFFECT_LIVE
        alias = ET.fromstring(xml).find('alias').get('name')
        found = self._find(alias)
        if found is None:
            raise libvirt.libvirtError('device not found')
        count = self.requests.get(alias, 0) + 1
        self.requests[alias] = count
        if self.acks_after is not None and count >= self.acks_after:
            self.devices.remove(found)
        elif count > 1:
            raise libvirt.libvirtError(
                "operation failed: device '%s' is already in the process "
                'of unplug' % alias)


@pytest.fixture
def fast(conf):
    conf.set_override('device_detach_attempts', 3, group='compute')
    conf.set_override('device_detach_timeout', 1, group='compute')
    conf.set_override('power_poll_interval', 0.05, group='compute')
    return conf


def _aliases(dom):
    return sorted(detach.live_aliases(dom))


def test_a_guest_that_acks_at_once_lets_both_go(fast):
    dom = RunningDomain(acks_after=1)
    assert detach.detach_live(dom, dom.elements, 'here') == []
    assert _aliases(dom) == []
    assert dom.requests == {'ua-p-vol-1': 1, 'ua-p-port-1': 1}


def test_a_lost_request_is_sent_again_until_the_guest_acks(fast):
    dom = RunningDomain(acks_after=3)
    assert detach.detach_live(dom, dom.elements[:1], 'here') == []
    assert _aliases(dom) == ['ua-p-port-1']
    assert dom.requests == {'ua-p-vol-1': 3}


def test_a_guest_that_never_acks_keeps_it_after_every_attempt(fast, caplog):
    dom = RunningDomain(acks_after=None)
    kept = detach.detach_live(dom, dom.elements[:1], 'host1 vm')
    assert kept == ['ua-p-vol-1']
    assert dom.requests == {'ua-p-vol-1': 3}
    assert _aliases(dom) == ['ua-p-port-1', 'ua-p-vol-1']
    [warning] = [r.getMessage() for r in caplog.records
                 if r.levelname == 'WARNING']
    assert '\n' not in warning
    assert 'after 3 detach requests' in warning
    assert 'keeps it until it stops' in warning


def test_a_guest_that_stops_meanwhile_has_nothing_left(fast):
    dom = RunningDomain(acks_after=None)
    real = dom.detachDeviceFlags

    def then_stop(xml, flags):
        real(xml, flags)
        dom.active = False

    dom.detachDeviceFlags = then_stop
    assert detach.detach_live(dom, dom.elements, 'here') == []


def test_another_libvirt_error_is_raised(fast):
    dom = RunningDomain(acks_after=1)

    def broken(xml, flags):
        raise libvirt.libvirtError('internal error: monitor closed')

    dom.detachDeviceFlags = broken
    with pytest.raises(libvirt.libvirtError, match='monitor closed'):
        detach.detach_live(dom, dom.elements, 'here')


def test_a_device_kept_before_is_asked_once_and_not_waited_for(fast):
    """A later change of the guest's devices finds the device it kept
    after an earlier detach: one request more, no second round of
    waiting."""
    dom = RunningDomain(acks_after=None)
    assert detach.detach_live(dom, dom.elements[:1], 'here',
                              patient=False) == ['ua-p-vol-1']
    assert dom.requests == {'ua-p-vol-1': 1}
    dom = RunningDomain(acks_after=1)
    assert detach.detach_live(dom, dom.elements[:1], 'here',
                              patient=False) == []
