"""Local QEMU hosts: their sockets fit in a Unix socket path."""
import os

import pytest

from resize_flows import exception
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import local


def test_guest_monitor_sockets_live_under_a_short_link(conf, tmp_path):
    # A state_dir so deep that a guest's monitor socket below it would not
    # fit (libvirt would fail the guest's start), though the daemon's does.
    deep = tmp_path / ('d' * 20)
    hdir = os.path.join(str(deep), 'hosts', 'compute-0001')
    assert len(os.path.join(hdir, 'config', daemon.MONITOR_SOCKET_WORST)) \
        > 107
    link = daemon.config_link(hdir)
    assert len(os.path.join(link, daemon.MONITOR_SOCKET_WORST)) <= 107
    assert os.readlink(link) == os.path.join(hdir, 'config')
    # The same host always gets the same link; another host another one.
    assert daemon.config_link(hdir) == link
    assert daemon.config_link(hdir + 'x') != link
    # A link left pointing elsewhere is put right.
    os.unlink(link)
    os.symlink('/nowhere', link)
    assert daemon.config_link(hdir) == link
    assert os.readlink(link) == os.path.join(hdir, 'config')


def test_a_daemon_socket_that_cannot_fit_is_refused(conf):
    conf.set_override('state_dir', '/tmp/' + 'd' * 80)
    with pytest.raises(exception.InvalidInput, match='libvirt-sock'):
        local.create_local_host('host1', kind='qemu')
    assert not os.path.exists('/tmp/' + 'd' * 80)


def test_removing_a_local_host_removes_its_link(conf, tmp_path):
    conf.set_override('state_dir', str(tmp_path / 's'))
    hdir = daemon.host_dir('host1')
    os.makedirs(os.path.join(hdir, 'config'))
    link = daemon.config_link(hdir)
    local.remove_local_host('host1')
    assert not os.path.lexists(link)
    assert not os.path.exists(hdir)


@pytest.fixture
def reachable_state_dir(conf):
    """A state_dir the session user can reach (pytest's tmp_path is
    0700), removed afterwards."""
    import shutil
    import tempfile
    base = tempfile.mkdtemp(prefix='rf-state-')
    os.chmod(base, 0o711)
    conf.set_override('state_dir', os.path.join(base, 'state'))
    yield conf.state_dir
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='the session user needs root')
@pytest.mark.parametrize('sub', ['cache', 'run', 'instances',
                                 os.path.join('config', 'libvirt')])
def test_a_link_planted_in_a_host_directory_is_refused(
        reachable_state_dir, tmp_path, sub):
    """The host directory belongs to the session user: a link planted
    there must not make root give one of its directories away."""
    owner = local._session_owner()
    hdir = daemon.host_dir('planted')
    os.makedirs(os.path.dirname(hdir), exist_ok=True)
    os.makedirs(os.path.join(hdir, 'config'))
    for path in (hdir, os.path.join(hdir, 'config')):
        os.chown(path, *owner)
    mine = tmp_path / 'root-only'
    mine.mkdir(mode=0o700)
    os.symlink(str(mine), os.path.join(hdir, sub))
    try:
        with pytest.raises(exception.HypervisorUnavailable,
                           match='refused: .* is not a directory of the '
                           'session'):
            local.create_local_host('planted', 'qemu')
    finally:
        local.stop_local_host('planted')
    st = os.stat(str(mine))
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700)
    assert os.listdir(str(mine)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason='the session user needs root')
def test_a_link_planted_as_the_start_log_is_not_followed(
        reachable_state_dir, tmp_path):
    owner = local._session_owner()
    hdir = daemon.host_dir('planted')
    os.makedirs(os.path.dirname(hdir), exist_ok=True)
    os.makedirs(os.path.join(hdir, 'config', 'libvirt'))
    for dirpath, _dirs, _files in os.walk(hdir):
        os.chown(dirpath, *owner)
    secret = tmp_path / 'secret'
    secret.write_text('root only\n')
    os.chmod(str(secret), 0o600)
    os.symlink(str(secret), os.path.join(hdir, daemon.START_LOG_NAME))
    try:
        with pytest.raises(OSError):
            daemon._start_daemon('planted', hdir)
    finally:
        local.stop_local_host('planted')
    assert secret.read_text() == 'root only\n'
