"""Local QEMU hosts: their sockets fit in a Unix socket path."""
import os

import pytest

from resize_flows import exception
from resize_flows.virt.libvirt import local


def test_guest_monitor_sockets_live_under_a_short_link(conf, tmp_path):
    # A state_dir so deep that a guest's monitor socket below it would not
    # fit (libvirt would fail the guest's start), though the daemon's does.
    deep = tmp_path / ('d' * 20)
    hdir = os.path.join(str(deep), 'hosts', 'compute-0001')
    assert len(os.path.join(hdir, 'config', local.MONITOR_SOCKET_WORST)) \
        > 107
    link = local.config_link(hdir)
    assert len(os.path.join(link, local.MONITOR_SOCKET_WORST)) <= 107
    assert os.readlink(link) == os.path.join(hdir, 'config')
    # The same host always gets the same link; another host another one.
    assert local.config_link(hdir) == link
    assert local.config_link(hdir + 'x') != link
    # A link left pointing elsewhere is put right.
    os.unlink(link)
    os.symlink('/nowhere', link)
    assert local.config_link(hdir) == link
    assert os.readlink(link) == os.path.join(hdir, 'config')


def test_a_daemon_socket_that_cannot_fit_is_refused(conf):
    conf.set_override('state_dir', '/tmp/' + 'd' * 80)
    with pytest.raises(exception.InvalidInput, match='libvirt-sock'):
        local.create_local_host('host1', kind='qemu')
    assert not os.path.exists('/tmp/' + 'd' * 80)


def test_removing_a_local_host_removes_its_link(conf, tmp_path):
    conf.set_override('state_dir', str(tmp_path / 's'))
    hdir = local.host_dir('host1')
    os.makedirs(os.path.join(hdir, 'config'))
    link = local.config_link(hdir)
    local.remove_local_host('host1')
    assert not os.path.lexists(link)
    assert not os.path.exists(hdir)
