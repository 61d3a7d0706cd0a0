"""Links and files planted in an instances path on another machine.

As tests/unit/virt/test_planted_files.py, over ssh: the instances paths
on the machines (tests/ssh_fixtures.py) belong to ``nobody``, the
guests' user; root's files on the same machine must stay as they were
(contents, owner, mode) whatever is planted where a step writes, and
the step is refused with a clear error. The disk copy is checked for
each kind of host pair, the source's disk and the destination's
directory planted.
"""
import os
import shutil
import subprocess
import tempfile
import uuid as uuid_lib

import pytest

from resize_flows import exception
from resize_flows import virt
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import local
from resize_flows.virt.libvirt import remote
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)

SMALL = {'name': 'small', 'vcpus': 1, 'memory_mb': 64, 'root_gb': 1}
LARGE = {'name': 'large', 'vcpus': 1, 'memory_mb': 64, 'root_gb': 2}
SNAP = 'resize-snap'
RESIZE = virt_driver.RESIZE_SUFFIX
q = remote.q

PLANT = {
    'symlink': 'ln -s {target} {path} && chown -h 65534:65534 {path}',
    'hardlink': 'ln {target} {path}',
    'directory': 'mkdir {path} && chown 65534:65534 {path}',
}


class Place:
    """Where hosts' files are: ``machine`` (None: this machine, under
    ``base``), with root's things there: a secret file, a qcow2 disk
    and a directory, all root's and private."""

    def __init__(self, machine, base):
        self.machine = machine
        self.top = machine.path() if machine else base
        self.secret = os.path.join(self.top, 'secret')
        self.qcow2 = os.path.join(self.top, 'root.qcow2')
        self.dir = os.path.join(self.top, 'rootdir')
        self.sh('head -c 65536 /dev/urandom > {0} && chmod 600 {0} && '
                'qemu-img create -q -f qcow2 {1} 1G && chmod 600 {1} && '
                'mkdir -m 700 {2} && echo keep > {2}/keep'.format(
                    q(self.secret), q(self.qcow2), q(self.dir)))

    def sh(self, script):
        if self.machine:
            return self.machine.run(script)
        return subprocess.run(['sh', '-c', script], check=True, text=True,
                              capture_output=True).stdout

    def state(self):
        """Contents, owner and mode of root's things."""
        return self.sh(
            'cd {0} && stat -c "%n %u %g %a %s %h" secret root.qcow2 '
            'rootdir rootdir/keep && sha256sum secret root.qcow2 '
            'rootdir/keep && ls -A rootdir'.format(q(self.top)))

    def plant(self, kind, path, target=None):
        self.sh(PLANT[kind].format(target=q(target or self.secret),
                                   path=q(path)))

    def session_dir(self, path):
        self.sh('mkdir -m 700 {0} && chown 65534:65534 {0}'.format(q(path)))

    def driver(self, name):
        uri = local.create_local_host(name, 'test')['uri']
        path = os.path.join(self.top, name)
        self.session_dir(path)
        return virt.get_driver({
            'name': name, 'uri': uri, 'instances_path': path,
            'ssh': self.machine.address if self.machine else None})


@pytest.fixture
def base():
    path = tempfile.mkdtemp(prefix='rf-planted-')
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def far(conf, machines, base):
    yield Place(machines(), base)
    virt.reset()


@pytest.fixture
def instance():
    return {'uuid': str(uuid_lib.uuid4()), 'name': 'vm'}


def _refused(call):
    with pytest.raises(exception.DiskError, match='refused: ') as info:
        call()
    return str(info.value)


@pytest.mark.parametrize('name, kind', [
    (name, kind) for name in ('disk.part', 'libvirt.xml.part')
    for kind in PLANT] + [('disk', 'symlink'), ('disk', 'hardlink'),
                          ('libvirt.xml', 'directory')])
def test_spawn_there_refuses_what_is_planted(far, instance, name, kind):
    drv = far.driver('a')
    folder = drv.instance_dir(instance['uuid'])
    far.session_dir(folder)
    far.plant(kind, os.path.join(folder, name),
              far.qcow2 if name == 'disk' else far.secret)
    before = far.state()
    _refused(lambda: drv.spawn(instance, SMALL, power_on=False))
    assert far.state() == before


def test_spawn_there_refuses_an_instance_directory_that_is_a_link(
        far, instance):
    drv = far.driver('a')
    far.plant('symlink', drv.instance_dir(instance['uuid']), far.dir)
    before = far.state()
    _refused(lambda: drv.spawn(instance, SMALL, power_on=False))
    assert far.state() == before


def test_spawn_there_makes_private_files_of_the_session_user(far, instance):
    drv = far.driver('a')
    drv.spawn(instance, SMALL, power_on=False)
    folder = drv.instance_dir(instance['uuid'])
    out = far.sh('cd {0} && stat -c "%n %u %g %a" . disk disk.info '
                 'libvirt.xml && ls -A'.format(q(folder)))
    assert out.split('\n') == [
        '. 65534 65534 700', 'disk 65534 65534 600',
        'disk.info 65534 65534 600', 'libvirt.xml 65534 65534 600', 'disk',
        'disk.info', 'libvirt.xml', '']


@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
def test_qemu_img_there_refuses_a_planted_disk(far, instance, kind):
    drv = far.driver('a')
    drv.spawn(instance, SMALL, power_on=False)
    path = os.path.join(drv.instance_dir(instance['uuid']), 'disk')
    far.sh('rm %s' % q(path))
    far.plant(kind, path, far.qcow2)
    before = far.state()
    _refused(lambda: drv.stash_for_resize(instance['uuid'], SNAP))
    _refused(lambda: drv.finish_migration(instance, LARGE, SNAP, False))
    assert far.state() == before


def test_confirm_there_refuses_a_stash_that_is_a_link(far, instance):
    drv = far.driver('a')
    far.plant('symlink', drv.instance_dir(instance['uuid'], RESIZE),
              far.dir)
    before = far.state()
    _refused(lambda: drv.confirm_migration(instance['uuid'], SNAP, False))
    assert far.state() == before


PAIRS = ['here->there', 'there->here', 'one other machine', 'two machines']


@pytest.fixture
def pair(request, conf, machines, base):
    """(source Place, destination Place) for the kind of pair."""
    kind = request.param
    one = Place(machines(), base) if kind != 'here->there' else None
    here = Place(None, base)
    if kind == 'here->there':
        places = (here, Place(machines(), base))
    elif kind == 'there->here':
        places = (one, here)
    elif kind == 'one other machine':
        places = (one, one)
    else:
        places = (one, Place(machines(), base))
    yield places
    virt.reset()


def _stashed(src, instance):
    src.spawn(instance, SMALL, power_on=False)
    src.stash_for_resize(instance['uuid'], SNAP)
    return os.path.join(src.instance_dir(instance['uuid'], RESIZE), 'disk')


@pytest.mark.parametrize('pair', PAIRS, indirect=True)
def test_copy_gives_the_disk_to_the_session_user(pair, instance):
    src_place, dst_place = pair
    src, dst = src_place.driver('a'), dst_place.driver('b')
    _stashed(src, instance)
    info = src.copy_disk_to(instance['uuid'], dst)
    assert info.virtual_size == disk.GiB
    folder = dst.instance_dir(instance['uuid'])
    out = dst_place.sh('cd {0} && stat -c "%n %u %g %a" . * && '
                       'ls -A'.format(q(folder)))
    assert out.split('\n') == [
        '. 65534 65534 700', 'disk 65534 65534 600',
        'disk.info 65534 65534 600', 'libvirt.xml 65534 65534 600',
        'disk', 'disk.info', 'libvirt.xml', '']


@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
@pytest.mark.parametrize('pair', PAIRS, indirect=True)
def test_copy_refuses_a_planted_source_disk(pair, instance, kind):
    """root's file on the source's machine must not become a disk of
    the guests' user on the destination's."""
    src_place, dst_place = pair
    src, dst = src_place.driver('a'), dst_place.driver('b')
    stashed = _stashed(src, instance)
    src_place.sh('rm %s' % q(stashed))
    src_place.plant(kind, stashed)
    before = src_place.state(), dst_place.state()
    _refused(lambda: src.copy_disk_to(instance['uuid'], dst))
    assert (src_place.state(), dst_place.state()) == before
    folder = dst.instance_dir(instance['uuid'])
    assert dst.files.listdir(folder) == []


@pytest.mark.parametrize('name, kind', [
    (host_files.RSYNC_PARTIAL_DIR, 'symlink'), ('disk', 'symlink'),
    ('disk', 'hardlink')])
@pytest.mark.parametrize('pair', PAIRS, indirect=True)
def test_copy_refuses_what_is_planted_in_the_destination(pair, instance,
                                                         name, kind):
    src_place, dst_place = pair
    src, dst = src_place.driver('a'), dst_place.driver('b')
    stashed = _stashed(src, instance)
    size = src.files.getsize(stashed)
    # root's file has the size of the copy: a disk of that size would
    # count as the finished copy and be given to the session user.
    dst_place.sh('truncate -s %d %s' % (size, q(dst_place.secret)))
    folder = dst.instance_dir(instance['uuid'])
    dst_place.session_dir(folder)
    dst_place.plant(kind, os.path.join(folder, name),
                    dst_place.dir if name != 'disk' else dst_place.secret)
    before = src_place.state(), dst_place.state()
    _refused(lambda: src.copy_disk_to(instance['uuid'], dst))
    assert (src_place.state(), dst_place.state()) == before
