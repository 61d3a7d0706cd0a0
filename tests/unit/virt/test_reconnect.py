"""A driver call whose libvirt connection was lost reconnects and runs
again, a bounded number of times (issue 11, item 4).

The hypervisor is libvirt's test driver behind a qemu+unix URI: opening
the URI gives a test:/// connection while the "daemon" is up, and the
real libvirt error of a socket nobody listens on while it is down.
"""
import libvirt
import pytest

from resize_flows import exception
from resize_flows import virt
from resize_flows.virt.libvirt import host as libvirt_host


class Daemon:
    """What opening the driver's URI reaches: ``up`` or not."""

    def __init__(self, monkeypatch, tmp_path):
        self.up = True
        self.opens = 0
        self._real_open = libvirt.open
        self._nowhere = 'qemu+unix:///session?socket=%s/none' % tmp_path
        monkeypatch.setattr(libvirt, 'open', self.open)

    def open(self, uri):
        self.opens += 1
        return self._real_open('test:///default' if self.up
                               else self._nowhere)


@pytest.fixture
def daemon(conf, monkeypatch, tmp_path):
    conf.set_override('reconnect_attempts', 3, group='libvirt')
    conf.set_override('reconnect_interval', 0, group='libvirt')
    virt.reset()
    yield Daemon(monkeypatch, tmp_path)
    virt.reset()
    conf.clear_override('reconnect_attempts', group='libvirt')
    conf.clear_override('reconnect_interval', group='libvirt')


@pytest.fixture
def drv(daemon, tmp_path):
    return virt.get_driver({
        'name': 'cn1', 'instances_path': str(tmp_path),
        'uri': 'qemu+unix:///session?socket=%s/libvirt-sock' % tmp_path})


def _lose_connection(drv):
    libvirt_host.get_connection(drv.uri).close()


def test_a_lost_connection_is_reopened_and_the_call_run_again(daemon, drv):
    domains = drv.list_instance_uuids()
    assert domains and daemon.opens == 1
    _lose_connection(drv)
    assert drv.list_instance_uuids() == domains
    assert daemon.opens == 2


def test_the_daemon_back_after_some_attempts(daemon, drv, monkeypatch):
    domains = drv.list_instance_uuids()
    _lose_connection(drv)
    daemon.up = False
    real_open = daemon.open

    def open_and_come_back(uri):
        try:
            return real_open(uri)
        finally:
            if daemon.opens == 3:       # two reconnections failed
                daemon.up = True
    monkeypatch.setattr(libvirt, 'open', open_and_come_back)
    assert drv.list_instance_uuids() == domains
    assert daemon.opens == 4


def test_retries_are_bounded(daemon, drv):
    drv.list_instance_uuids()
    _lose_connection(drv)
    daemon.up = False
    with pytest.raises(exception.HypervisorConnectionLost) as err:
        drv.get_info('0b7e3c62-7a5c-4a39-9d43-66e0f2d0b8a1')
    assert err.value.host == 'cn1'
    # The first open; then the call and its 3 retries, no more, each
    # opening the dead connection again.
    assert daemon.opens == 1 + 1 + 3


def test_a_nested_call_is_not_retried_on_its_own(daemon, drv):
    # spawn() calls power_on(): only the outermost call retries, so the
    # attempts do not multiply.
    drv.list_instance_uuids()
    _lose_connection(drv)
    daemon.up = False
    with pytest.raises(exception.HypervisorUnavailable):
        drv.spawn({'uuid': '0b7e3c62-7a5c-4a39-9d43-66e0f2d0b8a1',
                   'name': 'vm1'},
                  {'name': 'f', 'vcpus': 1, 'memory_mb': 64, 'root_gb': 1})
    assert daemon.opens == 1 + 1 + 3


def test_a_uri_never_reached_fails_at_once(daemon, drv):
    daemon.up = False
    with pytest.raises(exception.HypervisorUnavailable) as err:
        drv.list_instance_uuids()
    assert not isinstance(err.value, exception.HypervisorConnectionLost)
    assert daemon.opens == 1
