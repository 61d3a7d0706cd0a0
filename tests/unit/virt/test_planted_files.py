"""Links and files planted in an instances path on this machine.

The instances path belongs to an unprivileged user (here ``nobody``, as
the session user the guests run as): whatever is in it may have been put
there by a guest. This process is root. Every step that writes there
must refuse a symbolic link, a hard link to one of root's files, a file
it did not make or a directory where it means to write, with a clear
error, and leave root's file as it was (contents, owner, mode).
"""
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import uuid as uuid_lib

import pytest

from resize_flows import exception
from resize_flows import virt
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import local
from resize_flows.virt.libvirt import sparsecopy

from tests.unit.virt import imagehelp

SESSION = (65534, 65534)              # nobody: the guests' user
SMALL = {'name': 'small', 'vcpus': 1, 'memory_mb': 64, 'root_gb': 1}
LARGE = {'name': 'large', 'vcpus': 1, 'memory_mb': 64, 'root_gb': 2}
SNAP = 'resize-snap'
RESIZE = virt_driver.RESIZE_SUFFIX
KINDS = ('symlink', 'hardlink', 'directory', 'file')

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason='the privilege boundary needs root')


class Root:
    """Root's things next to the instances paths: a secret file (0600),
    a qcow2 disk of root's and a directory of root's."""

    def __init__(self, base):
        self.secret = os.path.join(base, 'secret')
        with open(self.secret, 'wb') as handle:
            handle.write(b'root only\n' * 1000)
        os.chmod(self.secret, 0o600)
        self.qcow2 = os.path.join(base, 'root.qcow2')
        disk.create(self.qcow2, disk.GiB, 'here')
        os.chmod(self.qcow2, 0o600)
        self.dir = os.path.join(base, 'rootdir')
        os.mkdir(self.dir, 0o700)
        with open(os.path.join(self.dir, 'keep'), 'w') as handle:
            handle.write('keep')

    def state(self):
        """What must not change: each thing's contents, owner, mode."""
        out = {}
        for path in (self.secret, self.qcow2, os.path.join(self.dir,
                                                           'keep')):
            st = os.stat(path)
            with open(path, 'rb') as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            out[path] = (digest, st.st_uid, st.st_gid,
                         stat.S_IMODE(st.st_mode), st.st_size)
        out[self.dir] = sorted(os.listdir(self.dir))
        return out


@pytest.fixture
def base():
    # Not under pytest's tmp_path (0700): the session user runs qemu-img
    # and must reach its instances paths.
    path = tempfile.mkdtemp(prefix='rf-planted-')
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def root(base):
    return Root(base)


def _driver(conf, base, name):
    uri = local.create_local_host(name, 'test')['uri']
    path = os.path.join(base, name)
    os.mkdir(path, 0o700)
    os.chown(path, *SESSION)
    return virt.get_driver({'name': name, 'uri': uri,
                            'instances_path': path})


@pytest.fixture
def hosts(conf, base):
    src, dst = _driver(conf, base, 'src'), _driver(conf, base, 'dst')
    yield src, dst
    virt.reset()


@pytest.fixture
def instance():
    return {'uuid': str(uuid_lib.uuid4()), 'name': 'vm'}


def plant(kind, path, root, target=None):
    """Plant, as the guests' user would, ``kind`` at ``path``."""
    target = target or root.secret
    if kind == 'symlink':
        os.symlink(target, path)
        os.lchown(path, *SESSION)
    elif kind == 'hardlink':
        os.link(target, path)
    elif kind == 'directory':
        os.mkdir(path)
        os.chown(path, *SESSION)
    else:
        with open(path, 'w') as handle:
            handle.write('planted')
        os.chown(path, *SESSION)


def _session_dir(path):
    os.mkdir(path, 0o700)
    os.chown(path, *SESSION)


def _refused(call):
    with pytest.raises(exception.DiskError, match='refused: ') as info:
        call()
    return str(info.value)


# -- spawn: the instance directory, the new disk, libvirt.xml ------------

@pytest.mark.parametrize('kind', ['symlink', 'file'])
def test_spawn_refuses_a_planted_instance_directory(hosts, root, instance,
                                                    kind):
    src, _dst = hosts
    before = root.state()
    plant(kind, src.instance_dir(instance['uuid']), root, root.dir)
    message = _refused(lambda: src.spawn(instance, SMALL, power_on=False))
    assert 'not a directory' in message
    assert root.state() == before
    assert not src.instance_exists(instance['uuid'])


# A file of the guests' user as disk or libvirt.xml is theirs to have; a
# link as libvirt.xml is replaced, never followed (the test after this).
@pytest.mark.parametrize('name, kind', [
    (name, kind) for name in ('disk.part', 'libvirt.xml.part')
    for kind in KINDS] + [('disk', kind) for kind in KINDS[:3]] + [
    ('libvirt.xml', 'directory')])
def test_spawn_refuses_what_is_planted_in_the_instance_directory(
        hosts, root, instance, name, kind):
    src, _dst = hosts
    folder = src.instance_dir(instance['uuid'])
    _session_dir(folder)
    target = root.qcow2 if name == 'disk' else root.secret
    plant(kind, os.path.join(folder, name), root, target)
    before = root.state()
    _refused(lambda: src.spawn(instance, SMALL, power_on=False))
    assert root.state() == before


@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
def test_a_link_planted_as_libvirt_xml_is_replaced_not_followed(
        hosts, root, instance, kind):
    src, _dst = hosts
    folder = src.instance_dir(instance['uuid'])
    _session_dir(folder)
    xml = os.path.join(folder, 'libvirt.xml')
    plant(kind, xml, root)
    before = root.state()
    src.spawn(instance, SMALL, power_on=False)
    assert root.state() == before
    st = os.lstat(xml)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        SESSION + (0o600,))


def test_spawn_makes_private_files_of_the_session_user(hosts, instance):
    src, _dst = hosts
    src.spawn(instance, SMALL, power_on=False)
    folder = src.instance_dir(instance['uuid'])
    for path, mode in ((folder, 0o700), (os.path.join(folder, 'disk'), 0o600),
                       (os.path.join(folder, 'libvirt.xml'), 0o600)):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            SESSION + (mode,)), path
    assert sorted(os.listdir(folder)) == ['disk', 'disk.info', 'libvirt.xml']


def test_spawn_from_an_image_makes_every_file_the_session_users(
        hosts, instance, tmp_path):
    src, _dst = hosts
    image = imagehelp.make_image(str(tmp_path / 'store'))
    src.spawn(instance, imagehelp.FULL, power_on=False, image=image,
              config_drive=True)
    folder = src.instance_dir(instance['uuid'])
    names = sorted(os.listdir(folder))
    assert names == ['disk', 'disk.config', 'disk.info', 'disk.local',
                     'disk.swap', 'kernel', 'libvirt.xml', 'ramdisk']
    for name in names:
        st = os.lstat(os.path.join(folder, name))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            SESSION + (0o600,)), name
    base_dir = os.path.join(src.instances_path, '_base')
    assert os.lstat(base_dir).st_uid == SESSION[0]


# -- stash, finish, revert: qemu-img on the disk --------------------------

def _stashed(src, instance, data_mib=0):
    """Spawn, write ``data_mib`` MiB into the disk, stash for a resize;
    the path of the stashed disk."""
    src.spawn(instance, SMALL, power_on=False)
    if data_mib:
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0xa5 0 %dM'
                        % data_mib, src.disk_info(instance['uuid']).path],
                       check=True, capture_output=True)
    src.stash_for_resize(instance['uuid'], SNAP)
    return os.path.join(src.instance_dir(instance['uuid'], RESIZE), 'disk')


@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
def test_snapshot_of_a_planted_disk_is_refused(hosts, root, instance, kind):
    src, _dst = hosts
    src.spawn(instance, SMALL, power_on=False)
    path = os.path.join(src.instance_dir(instance['uuid']), 'disk')
    os.unlink(path)
    plant(kind, path, root, root.qcow2)
    before = root.state()
    _refused(lambda: src.stash_for_resize(instance['uuid'], SNAP))
    assert root.state() == before


@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
def test_finish_migration_on_a_planted_disk_is_refused(hosts, root, instance,
                                                       kind):
    src, _dst = hosts
    folder = src.instance_dir(instance['uuid'])
    _session_dir(folder)
    plant(kind, os.path.join(folder, 'disk'), root, root.qcow2)
    before = root.state()
    _refused(lambda: src.finish_migration(instance, LARGE, SNAP, False))
    assert root.state() == before


def test_stash_refuses_an_instance_directory_that_is_a_link(hosts, root,
                                                            instance):
    src, _dst = hosts
    src.spawn(instance, SMALL, power_on=False)
    folder = src.instance_dir(instance['uuid'])
    shutil.rmtree(folder)
    plant('symlink', folder, root, root.dir)
    before = root.state()
    with pytest.raises(exception.DiskError, match='refused: '):
        src.stash_for_resize(instance['uuid'], SNAP)
    assert root.state() == before


# -- the copy between two hosts of this machine --------------------------

@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
def test_copy_refuses_a_planted_source_disk(hosts, root, instance, kind):
    """root's file must not become a disk the guests' user can read."""
    src, dst = hosts
    stashed = _stashed(src, instance)
    os.unlink(stashed)
    plant(kind, stashed, root)
    before = root.state()
    _refused(lambda: src.copy_disk_to(instance['uuid'], dst))
    assert root.state() == before
    assert not os.path.lexists(os.path.join(
        dst.instance_dir(instance['uuid']), 'disk'))


@pytest.mark.parametrize('name', ['disk.part', 'disk.part.progress',
                                  'disk.part.progress.tmp'])
@pytest.mark.parametrize('kind', KINDS)
def test_copy_refuses_what_is_planted_in_the_destination(
        hosts, root, instance, name, kind, monkeypatch):
    src, dst = hosts
    # Data for several chunks of 4 MiB: the progress of the copy is
    # committed (through disk.part.progress.tmp) while it goes on.
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', 4 * disk.MiB)
    _stashed(src, instance, data_mib=24)
    folder = dst.instance_dir(instance['uuid'])
    _session_dir(folder)
    plant(kind, os.path.join(folder, name), root)
    before = root.state()
    _refused(lambda: src.copy_disk_to(instance['uuid'], dst))
    assert root.state() == before


@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
def test_copy_refuses_a_planted_disk_of_the_size_of_the_copy(
        hosts, root, instance, kind):
    """A destination disk of the source's size counts as a finished copy
    and is given to the owner: never root's file behind a link."""
    src, dst = hosts
    stashed = _stashed(src, instance)
    with open(root.secret, 'r+b') as handle:
        handle.truncate(os.path.getsize(stashed))
    folder = dst.instance_dir(instance['uuid'])
    _session_dir(folder)
    plant(kind, os.path.join(folder, 'disk'), root)
    before = root.state()
    _refused(lambda: src.copy_disk_to(instance['uuid'], dst))
    assert root.state() == before


def test_copy_refuses_a_destination_directory_that_is_a_link(
        hosts, root, instance):
    src, dst = hosts
    _stashed(src, instance)
    plant('symlink', dst.instance_dir(instance['uuid']), root, root.dir)
    before = root.state()
    _refused(lambda: src.copy_disk_to(instance['uuid'], dst))
    assert root.state() == before


def test_copied_disk_is_private_to_the_session_user(hosts, instance):
    src, dst = hosts
    _stashed(src, instance)
    info = src.copy_disk_to(instance['uuid'], dst)
    folder = os.path.dirname(info.path)
    names = sorted(os.listdir(folder))
    assert names == ['disk', 'disk.info', 'libvirt.xml']
    for name in names:
        st = os.lstat(os.path.join(folder, name))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            SESSION + (0o600,)), name


# -- removal and renames ---------------------------------------------------

def test_confirm_refuses_a_stash_that_is_a_link(hosts, root, instance):
    src, _dst = hosts
    plant('symlink', src.instance_dir(instance['uuid'], RESIZE), root,
          root.dir)
    before = root.state()
    _refused(lambda: src.confirm_migration(instance['uuid'], SNAP, False))
    assert root.state() == before


def test_removal_follows_no_link_inside(hosts, root, instance):
    src, _dst = hosts
    stashed = _stashed(src, instance)
    plant('symlink', os.path.join(os.path.dirname(stashed), 'escape'), root,
          root.dir)
    before = root.state()
    src.confirm_migration(instance['uuid'], SNAP, False)
    assert root.state() == before
    assert not os.path.lexists(os.path.dirname(stashed))


def test_revert_refuses_a_stash_that_is_a_link(hosts, root, instance):
    src, _dst = hosts
    plant('symlink', src.instance_dir(instance['uuid'], RESIZE), root,
          root.dir)
    before = root.state()
    _refused(lambda: src.finish_revert_migration(instance, SNAP, False))
    assert root.state() == before
