"""The clean shutdown's presses of the power button, counted on a guest
that stops at a chosen press, with a clock the test moves (no waiting);
and the driver's power_off on libvirt's test driver, whose guests stop at
the first press. The real guest that ignores a press is in
tests/integration/test_clean_shutdown.py."""
import libvirt
import pytest

from resize_flows import states
from resize_flows.virt.libvirt import shutdown

SMALL = {'name': 'm1.small', 'vcpus': 1, 'memory_mb': 512, 'root_gb': 1}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += max(seconds, 0.001)


class Guest:
    """Stops at press number ``stops_at`` (never when None); a press
    raises ``refuse`` when given."""

    def __init__(self, clock, stops_at=None, refuse=None):
        self.clock = clock
        self.stops_at = stops_at
        self.refuse = refuse
        self.presses = []
        self.active = True

    def isActive(self):
        return self.active

    def name(self):
        return 'instance-test'

    def shutdown(self):
        if self.refuse is not None:
            raise self.refuse
        self.presses.append(self.clock())
        if len(self.presses) == self.stops_at:
            self.active = False


def _run(guest, clock, timeout=60, retry=10):
    return shutdown.clean_shutdown(guest, timeout, retry, 0.2, clock=clock,
                                   sleep=clock.sleep)


def test_a_guest_that_stops_at_the_first_press_gets_one():
    clock = Clock()
    guest = Guest(clock, stops_at=1)
    assert _run(guest, clock) is True
    assert guest.presses == [1000.0]


def test_the_press_is_repeated_every_retry_interval_until_it_stops():
    clock = Clock()
    guest = Guest(clock, stops_at=3)
    assert _run(guest, clock, timeout=60, retry=10) is True
    assert len(guest.presses) == 3
    gaps = [b - a for a, b in zip(guest.presses, guest.presses[1:])]
    assert all(10 <= gap < 10.5 for gap in gaps), gaps


def test_a_guest_that_never_stops_is_left_for_the_hard_stop():
    clock = Clock()
    guest = Guest(clock)
    assert _run(guest, clock, timeout=25, retry=10) is False
    # pressed at 0, 10 and 20 seconds; the timeout came at 25
    assert len(guest.presses) == 3
    assert 25 <= clock.now - 1000.0 < 25.5
    assert guest.active


def test_a_retry_interval_over_the_timeout_presses_once():
    clock = Clock()
    guest = Guest(clock)
    assert _run(guest, clock, timeout=5, retry=10) is False
    assert len(guest.presses) == 1


def test_a_refused_press_goes_hard_at_once_and_a_gone_domain_raises():
    clock = Clock()
    err = libvirt.libvirtError('refused')
    err.err = (libvirt.VIR_ERR_OPERATION_FAILED, 0, 'refused', 0, '', '',
               '', 0, 0)
    guest = Guest(clock, refuse=err)
    assert _run(guest, clock) is False
    assert clock.now == 1000.0

    gone = libvirt.libvirtError('gone')
    gone.err = (libvirt.VIR_ERR_NO_DOMAIN, 0, 'gone', 0, '', '', '', 0, 0)
    with pytest.raises(libvirt.libvirtError):
        _run(Guest(clock, refuse=gone), clock)


def test_a_guest_already_off_gets_no_press():
    clock = Clock()
    guest = Guest(clock)
    guest.active = False
    assert _run(guest, clock) is True
    assert guest.presses == []


def test_power_off_with_a_timeout_on_the_test_driver(src, instance, conf):
    conf.set_override('shutdown_retry_interval', 1, group='compute')
    try:
        src.spawn(instance, SMALL)
        assert src.power_off(instance['uuid'], timeout=30) is True
        assert src.get_info(instance['uuid']).power_state == \
            states.SHUTDOWN
        # again: nothing to stop
        assert src.power_off(instance['uuid'], timeout=30) is False
    finally:
        conf.clear_override('shutdown_retry_interval', group='compute')
