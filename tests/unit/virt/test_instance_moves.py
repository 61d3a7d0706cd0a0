"""Moves carry Nova's whole instance directory (test-driver hosts, real
qemu-img): resize growing root and ephemeral and changing swap, to
another host and to the same one; migrate and confirm (``_base`` left
alone); revert restoring every disk exactly; a base missing on the
destination taken from the source's cache or the image store; a copy cut
off in the middle of each file (the base fetched into the destination's
cache too) resumed to byte-identical files."""
import filecmp
import json
import os
import shutil
import subprocess

import libvirt
import pytest

from resize_flows import exception
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import host as libvirt_host
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import sparsecopy

from tests.unit.virt import imagehelp

GiB = 1024 ** 3
MiB = 1024 ** 2
KiB = 1024
SNAP = 'resize-snap'
RESIZE = virt_driver.RESIZE_SUFFIX
# (disk name, offset MiB, pattern) written before a move.
WRITES = [(layout.DISK, 3, 0xa1), (layout.DISK, 40, 0xa2),
          (layout.EPHEMERAL, 0, 0xb1), (layout.EPHEMERAL, 700, 0xb2),
          (layout.SWAP, 2, 0xc1)]


@pytest.fixture
def image(tmp_path):
    return imagehelp.make_image(str(tmp_path / 'store'))


@pytest.fixture
def vm(src, instance, image):
    """An image-backed instance with every kind of file, data written on
    its disks."""
    src.spawn(instance, imagehelp.FULL, image=image, config_drive=True)
    folder = src.instance_dir(instance['uuid'])
    for name, offset, pattern in WRITES:
        _io(os.path.join(folder, name), 'write -P 0x%02x %dM 1M'
            % (pattern, offset))
    return instance


def _io(path, command):
    proc = subprocess.run(['qemu-io', '-f', 'qcow2', '-c', command, path],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and 'failed' not in proc.stdout


def _has_data(folder, names=(layout.DISK, layout.EPHEMERAL)):
    return all(_io(os.path.join(folder, n), 'read -P 0x%02x %dM 1M'
                   % (pattern, offset))
               for n, offset, pattern in WRITES if n in names) and _io(
        os.path.join(folder, layout.DISK), 'read -P 0x5a 1M 1M')


def _same_disk(a, b):
    return subprocess.run(['qemu-img', 'compare', '-q', a, b],
                          check=False).returncode == 0


def _keep(folder, into):
    """A copy of the directory's files, for comparing after the move."""
    shutil.copytree(folder, into)
    return into


def _domain(drv, uuid):
    dom = libvirt_host.get_connection(drv.uri).lookupByUUIDString(uuid)
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def _check_moved(src, dst, instance, image, flavor, kept):
    uuid = instance['uuid']
    folder = dst.instance_dir(uuid)
    base_dir = os.path.join(dst.instances_path, layout.BASE_DIR)
    root = imagehelp.qemu_info(os.path.join(folder, layout.DISK))
    assert root['backing-filename'] == os.path.join(base_dir,
                                                    image['sha256'])
    assert root['backing-filename-format'] == 'qcow2'
    assert root['virtual-size'] == flavor['root_gb'] * GiB
    local = imagehelp.qemu_info(os.path.join(folder, layout.EPHEMERAL))
    assert local['virtual-size'] == flavor['ephemeral_gb'] * GiB
    assert local['backing-filename'] == os.path.join(
        base_dir, layout.ephemeral_base_name(1))
    swap = imagehelp.qemu_info(os.path.join(folder, layout.SWAP))
    assert swap['virtual-size'] == flavor['swap_mb'] * MiB
    assert swap['backing-filename'] == os.path.join(
        base_dir, layout.swap_base_name(flavor['swap_mb']))
    for name in layout.VIRTIO_DISKS:
        assert 'snapshots' not in imagehelp.qemu_info(
            os.path.join(folder, name)), name
    assert _has_data(folder)
    for name in (layout.CONFIG_DRIVE, layout.KERNEL, layout.RAMDISK):
        assert filecmp.cmp(os.path.join(kept, name),
                           os.path.join(folder, name), shallow=False)
    assert imagehelp.sha256(os.path.join(base_dir, image['sha256'])) == \
        image['sha256']
    with open(os.path.join(folder, layout.DISK_INFO)) as handle:
        assert sorted(json.load(handle)) == sorted(
            os.path.join(folder, n) for n in
            ('disk', 'disk.local', 'disk.swap', 'disk.config'))
    disks, mac = config.devices(_domain(dst, uuid))
    assert disks == {'vda': os.path.join(folder, 'disk'),
                     'vdb': os.path.join(folder, 'disk.local'),
                     'vdc': os.path.join(folder, 'disk.swap'),
                     'hda': os.path.join(folder, 'disk.config')}
    assert mac == layout.mac_address(uuid)
    info = dst.get_info(uuid)
    assert (info.vcpus, info.memory_mb) == (flavor['vcpus'],
                                            flavor['memory_mb'])


@pytest.mark.parametrize('same_host', [False, True])
def test_resize_grows_root_and_ephemeral_and_remakes_swap(
        src, dst, vm, image, tmp_path, same_host):
    dst = src if same_host else dst
    uuid = vm['uuid']
    kept = _keep(src.instance_dir(uuid), str(tmp_path / 'kept'))
    src.migrate_disk_and_power_off(uuid, dst, SNAP, image=image)
    dst.finish_migration(vm, imagehelp.BIGGER, SNAP, True)
    _check_moved(src, dst, vm, image, imagehelp.BIGGER, kept)
    # The source is kept whole, with its snapshots, for a revert.
    stashed = src.instance_dir(uuid, RESIZE)
    assert sorted(os.listdir(stashed)) == sorted(os.listdir(kept))
    for name in layout.SNAPSHOTTED:
        info = imagehelp.qemu_info(os.path.join(stashed, name))
        assert [s['name'] for s in info['snapshots']] == [SNAP]


def test_migrate_then_confirm_leaves_the_base_alone(src, dst, vm, image,
                                                    tmp_path):
    uuid = vm['uuid']
    kept = _keep(src.instance_dir(uuid), str(tmp_path / 'kept'))
    src_base = os.path.join(src.instances_path, layout.BASE_DIR)
    before = {n: os.stat(os.path.join(src_base, n)).st_ino
              for n in os.listdir(src_base)}
    src.migrate_disk_and_power_off(uuid, dst, SNAP, image=image)
    dst.finish_migration(vm, imagehelp.FULL, SNAP, True)
    _check_moved(src, dst, vm, image, imagehelp.FULL, kept)
    src.confirm_migration(uuid, SNAP, host_changed=True)
    assert not os.path.exists(src.instance_dir(uuid, RESIZE))
    assert before == {n: os.stat(os.path.join(src_base, n)).st_ino
                      for n in os.listdir(src_base)}
    assert len(before) == 3     # image, ephemeral and swap bases


@pytest.mark.parametrize('same_host', [False, True])
def test_revert_restores_every_disk_exactly(src, dst, vm, image, tmp_path,
                                            same_host):
    dst = src if same_host else dst
    uuid = vm['uuid']
    folder = src.instance_dir(uuid)
    kept = _keep(folder, str(tmp_path / 'kept'))
    xml_before = _domain(src, uuid)
    src.migrate_disk_and_power_off(uuid, dst, SNAP, image=image)
    dst.finish_migration(vm, imagehelp.BIGGER, SNAP, True)
    # Writes after the snapshot, on the source's own disks, are undone.
    stashed = src.instance_dir(uuid, RESIZE)
    for name in layout.SNAPSHOTTED:
        assert _io(os.path.join(stashed, name), 'write -P 0xee 3M 1M')
    dst.destroy(uuid, destroy_disks=False)
    if same_host:
        dst.rename_instance_dir(uuid, '', virt_driver.REVERT_SUFFIX)
    src.finish_revert_migration(vm, SNAP, power_on=True)
    for name in layout.VIRTIO_DISKS:
        assert _same_disk(os.path.join(kept, name),
                          os.path.join(folder, name)), name
        assert 'snapshots' not in imagehelp.qemu_info(
            os.path.join(folder, name)), name
    for name in (layout.CONFIG_DRIVE, layout.KERNEL, layout.RAMDISK,
                 layout.DISK_INFO, layout.SWAP, layout.DOMAIN_XML):
        assert filecmp.cmp(os.path.join(kept, name),
                           os.path.join(folder, name), shallow=False), name
    assert config.devices(_domain(src, uuid)) == config.devices(xml_before)
    assert src.get_info(uuid).vcpus == imagehelp.FULL['vcpus']


def test_a_flavor_without_ephemeral_or_swap_gains_and_loses_them(
        src, dst, instance, image):
    small = dict(imagehelp.FULL, ephemeral_gb=0, swap_mb=0)
    src.spawn(instance, small, image=image, power_on=False)
    uuid = instance['uuid']
    src.migrate_disk_and_power_off(uuid, dst, SNAP, image=image)
    dst.finish_migration(instance, imagehelp.BIGGER, SNAP, False)
    folder = dst.instance_dir(uuid)
    assert imagehelp.qemu_info(os.path.join(folder, layout.EPHEMERAL))[
        'virtual-size'] == 2 * GiB
    dst.stash_for_resize(uuid, 'snap2')
    dst.copy_disk_to(uuid, src, image=image)
    src.finish_migration(instance, dict(imagehelp.BIGGER, swap_mb=0),
                         'snap2', False)
    names = os.listdir(src.instance_dir(uuid))
    assert layout.SWAP not in names and layout.EPHEMERAL in names
    assert set(config.devices(_domain(src, uuid))[0]) == {'vda', 'vdb'}


def test_finish_never_shrinks_a_disk(src, dst, vm, image):
    uuid = vm['uuid']
    src.migrate_disk_and_power_off(uuid, dst, SNAP, image=image)
    dst.finish_migration(vm, dict(imagehelp.FULL, root_gb=0, ephemeral_gb=0),
                         SNAP, False)
    folder = dst.instance_dir(uuid)
    assert imagehelp.qemu_info(os.path.join(folder, layout.DISK))[
        'virtual-size'] == 1 * GiB
    assert imagehelp.qemu_info(os.path.join(folder, layout.EPHEMERAL))[
        'virtual-size'] == 1 * GiB


def test_a_base_missing_on_the_destination_comes_from_the_source(
        src, dst, vm, image):
    uuid = vm['uuid']
    os.unlink(image['path'])           # the store cannot be what it used
    src.migrate_disk_and_power_off(uuid, dst, SNAP, image=image)
    base = os.path.join(dst.instances_path, layout.BASE_DIR, image['sha256'])
    assert imagehelp.sha256(base) == image['sha256']


def test_a_base_gone_from_the_source_comes_from_the_store(src, dst, vm,
                                                          image):
    uuid = vm['uuid']
    src.power_off(uuid)
    src.stash_for_resize(uuid, SNAP)
    os.unlink(os.path.join(src.instances_path, layout.BASE_DIR,
                           image['sha256']))
    src.copy_disk_to(uuid, dst, image=image)
    base = os.path.join(dst.instances_path, layout.BASE_DIR, image['sha256'])
    assert imagehelp.sha256(base) == image['sha256']
    dst.finish_migration(vm, imagehelp.FULL, SNAP, False)
    assert _has_data(dst.instance_dir(uuid))


def test_a_backing_file_outside_the_cache_is_refused(src, dst, instance,
                                                     image, tmp_path):
    src.spawn(instance, imagehelp.FULL, image=image, power_on=False)
    uuid = instance['uuid']
    path = os.path.join(src.instance_dir(uuid), layout.DISK)
    subprocess.run(['qemu-img', 'rebase', '-u', '-F', 'qcow2', '-b',
                    image['path'], path], check=True)
    src.stash_for_resize(uuid, SNAP)
    with pytest.raises(exception.DiskError, match='backing file'):
        src.copy_disk_to(uuid, dst, image=image)
    assert not os.path.exists(dst.instance_dir(uuid, '') + '/disk')


class _Cut(Exception):
    pass


@pytest.mark.parametrize('name', [layout.DISK, layout.EPHEMERAL,
                                  layout.SWAP, layout.CONFIG_DRIVE,
                                  layout.KERNEL, layout.RAMDISK, 'base'])
def test_a_copy_cut_off_in_a_file_resumes_to_identical_files(
        src, dst, vm, image, monkeypatch, name):
    dst_base = os.path.join(dst.instances_path, layout.BASE_DIR,
                            image['sha256'])
    if name == 'base':
        # The image's base, fetched into the destination's cache under
        # its fixed temporary name, from the source's cache.
        name = '.%s.fetch' % image['sha256']
        final = dst_base
    else:
        final = os.path.join(dst.instance_dir(vm['uuid']), name)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK', 64 * KiB)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', 64 * KiB)
    real = sparsecopy.sparse_copy
    calls = []

    def cutting(src_path, dst_path, host, owner=None, progress=None,
                **kwargs):
        stats = sparsecopy.CopyStats()
        calls.append((os.path.basename(dst_path), stats))

        def report(fraction):
            if cutting.armed and os.path.basename(dst_path) == name and \
                    0 < fraction < 1:
                cutting.armed = False
                raise _Cut(fraction)
            if progress is not None:
                progress(fraction)
        return real(src_path, dst_path, host, owner, progress=report,
                    stats=stats, **kwargs)
    cutting.armed = True
    monkeypatch.setattr(sparsecopy, 'sparse_copy', cutting)
    uuid = vm['uuid']
    src.power_off(uuid)
    src.stash_for_resize(uuid, SNAP)
    seen = []
    with pytest.raises(_Cut):
        src.copy_disk_to(uuid, dst, image=image, progress=seen.append)
    folder = dst.instance_dir(uuid)
    assert not os.path.exists(final)
    src.copy_disk_to(uuid, dst, image=image, progress=seen.append)
    cut, resumed = [stats for n, stats in calls if n == name]
    assert cut.copied > 0 and resumed.reused > 0
    assert seen[-1] == 1.0
    assert filecmp.cmp(os.path.join(src.instances_path, layout.BASE_DIR,
                                    image['sha256']), dst_base,
                       shallow=False)
    # Nothing of the fetch is left in the cache: no partial copy, no lock.
    assert [n for n in os.listdir(os.path.dirname(dst_base))
            if imagecache.is_temp_name(n)] == []
    stashed = src.instance_dir(uuid, RESIZE)
    for each in layout.VIRTIO_DISKS:
        assert _same_disk(os.path.join(stashed, each),
                          os.path.join(folder, each)), each
    for each in (layout.CONFIG_DRIVE, layout.KERNEL, layout.RAMDISK,
                 layout.DOMAIN_XML):
        assert filecmp.cmp(os.path.join(stashed, each),
                           os.path.join(folder, each), shallow=False), each
    assert not [n for n in os.listdir(folder) if n.endswith(('.part',
                                                             '.progress'))]
