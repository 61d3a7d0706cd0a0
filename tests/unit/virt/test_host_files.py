"""The ssh side of host files: addresses, the ssh and rsync commands, and
each operation on another machine against the same on this one."""
import os

import pytest

from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import files
from resize_flows.virt.libvirt import remote
from resize_flows.virt.libvirt import transfer
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)


@pytest.mark.parametrize('address, parsed', [
    ('cn2', (None, 'cn2', None)),
    ('root@cn2.example.org', ('root', 'cn2.example.org', None)),
    ('nova@10.0.0.2:2222', ('nova', '10.0.0.2', 2222)),
    ('root@[fd00::2]:22', ('root', '[fd00::2]', 22)),
])
def test_addresses(address, parsed):
    assert remote.parse_address(address) == parsed


@pytest.mark.parametrize('address', [
    '', 'root@', '@cn2', 'cn2:', 'cn2:0', 'cn2:70000', 'a b', 'cn2;rm -rf /',
    'root@cn2:22:22', '-oProxyCommand=x', '-oFoo', '-l@cn2',
])
def test_bad_addresses(address):
    with pytest.raises(exception.InvalidInput, match='not an ssh address'):
        remote.parse_address(address)


def test_ssh_command_has_the_remote_options(conf):
    conf.set_override('ssh_identity_file', '/etc/rf/id', group='remote')
    conf.set_override('ssh_options', ['StrictHostKeyChecking=accept-new'],
                      group='remote')
    conf.set_override('ssh_control_persist', 0, group='remote')
    argv = remote.ssh_argv('nova@[fd00::2]:2222')
    assert argv[0] == 'ssh' and argv[-1] == 'nova@fd00::2'
    assert argv[argv.index('-i') + 1] == '/etc/rf/id'
    assert argv[argv.index('-p') + 1] == '2222'
    assert 'StrictHostKeyChecking=accept-new' in argv
    # ssh keeps the first value: the operator's options come before ours.
    assert argv.index('StrictHostKeyChecking=accept-new') < argv.index(
        'BatchMode=yes')
    assert 'ServerAliveCountMax=3' in argv
    assert not any(a.startswith('ControlMaster') for a in argv)
    conf.clear_override('ssh_control_persist', group='remote')
    assert 'ControlMaster=auto' in remote.ssh_argv('cn2')


def test_rsync_command_is_sparse_resumable_and_synced(conf):
    conf.set_override('rsync_options', ['--bwlimit=100M'], group='remote')
    argv = transfer.rsync_argv('/a/disk', 'cn2:/b/disk', ssh='root@cn2:2222')
    for option in ('--sparse', '--fsync', '--partial-dir=.rsync-partial',
                   '--bwlimit=100M'):
        assert option in argv
    assert '-p 2222' in argv[argv.index('-e') + 1]
    assert argv[-3:] == ['--', '/a/disk', 'cn2:/b/disk']


def test_each_operation_over_ssh_as_here(conf, machines, tmp_path):
    machine = machines()
    machine.run('mkdir %s' % machine.path('i'))
    here = files.for_host('here', str(tmp_path))
    there = files.for_host('there', machine.path('i'), machine.address)
    results = []
    for side, root in ((here, str(tmp_path)), (there, machine.path('i'))):
        got = [side.has_root()]
        d = os.path.join(root, 'u')
        side.makedir(d)
        side.makedir(d)                                   # again: fine
        side.create_disk(os.path.join(d, 'disk'), disk.GiB)
        side.write_atomic(os.path.join(d, 'x.xml'), '<domain/>')
        got.append(side.read_text(os.path.join(d, 'x.xml')))
        got.append(side.listdir(d))
        got.append(side.disk_info(os.path.join(d, 'disk'))['virtual-size'])
        got.append(side.disk_info(os.path.join(d, 'none')))
        got.append(side.getsize(os.path.join(d, 'none')))
        side.qemu_img('snapshot', '-c', 's1', os.path.join(d, 'disk'))
        got.append([s['name'] for s in side.disk_info(
            os.path.join(d, 'disk'))['snapshots']])
        side.rename(d, d + '_resize')
        got.append((side.exists(d), side.isdir(d + '_resize')))
        got.append((side.rmtree(d + '_resize'), side.rmtree(d + '_resize')))
        got.append(side.listdir(root))
        results.append(got)
    assert results[0] == results[1] == [
        True, '<domain/>', ['disk', 'x.xml'], disk.GiB, None, None, ['s1'],
        (False, True), (True, False), []]
    # Nothing of it was ever here.
    assert os.listdir(machine.root) == []


def test_overlays_and_bytes_over_ssh_as_here(conf, machines, tmp_path):
    machine = machines()
    machine.run('mkdir %s' % machine.path('i'))
    here = files.for_host('here', str(tmp_path))
    there = files.for_host('there', machine.path('i'), machine.address)
    results = []
    for side, root in ((here, str(tmp_path)), (there, machine.path('i'))):
        base, overlay = os.path.join(root, 'base'), os.path.join(root, 'ov')
        side.create_disk(base, 64 * disk.MiB)
        side.create_disk(overlay, disk.GiB, base, 'qcow2')
        info = side.disk_info(overlay)
        got = [info['virtual-size'], info['backing-filename'] == base,
               info['backing-filename-format']]
        side.write_atomic(os.path.join(root, 'blob'), b'\x00\xffbytes')
        got.append(side.getsize(os.path.join(root, 'blob')))
        got.append((side.remove_file(os.path.join(root, 'blob')),
                    side.remove_file(os.path.join(root, 'blob'))))
        got.append(side.listdir(root))
        results.append(got)
    assert results[0] == results[1] == [
        disk.GiB, True, 'qcow2', 7, (True, False), ['base', 'ov']]


def test_a_failed_command_there_is_a_disk_error(conf, machines):
    machine = machines()
    there = files.for_host('there', machine.path('i'), machine.address)
    assert not there.has_root()
    with pytest.raises(exception.DiskError, match='on root@127.0.0.1'):
        there.create_disk(machine.path('i', 'disk'), disk.GiB)
    with pytest.raises(OSError):
        there.read_text(machine.path('i', 'x.xml'))


@pytest.mark.parametrize('planted', ['other user', 'open mode', 'symlink',
                                     'file'])
def test_ssh_control_directory_of_someone_else_is_refused(
        conf, monkeypatch, tmp_path, planted):
    """Another local user who creates the control directory first would
    get our ssh connections: ssh is never pointed at it."""
    monkeypatch.setattr(remote.tempfile, 'tempdir', str(tmp_path))
    control = tmp_path / ('resize-flows-ssh-%d' % os.geteuid())
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir(mode=0o700)
    if planted == 'other user':
        control.mkdir(mode=0o700)
        os.chown(control, 65534, 65534)
    elif planted == 'open mode':
        control.mkdir()
        os.chmod(control, 0o777)
    elif planted == 'symlink':
        control.symlink_to(elsewhere)
    else:
        control.write_text('')
    before = os.lstat(control)
    with pytest.raises(exception.HypervisorUnavailable,
                       match='not a private directory of ours'):
        remote.ssh_argv('cn2')
    after = os.lstat(control)
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    # Without control connections, ssh does not need it.
    conf.set_override('ssh_control_persist', 0, group='remote')
    assert 'ControlMaster=auto' not in remote.ssh_argv('cn2')


def test_ssh_control_directory_is_made_private(conf, monkeypatch, tmp_path):
    monkeypatch.setattr(remote.tempfile, 'tempdir', str(tmp_path))
    argv = remote.ssh_argv('cn2')
    control = tmp_path / ('resize-flows-ssh-%d' % os.geteuid())
    assert 'ControlPath=%s/%%C' % control in argv
    st = os.lstat(control)
    assert (st.st_uid, st.st_mode & 0o7777) == (os.geteuid(), 0o700)
