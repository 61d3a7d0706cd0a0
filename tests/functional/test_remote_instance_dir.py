"""An image-backed instance directory on other machines (ssh), for each
kind of host pair: spawned there (the base fetched from the image store
here, kernel, ramdisk and config drive written over ssh), resized to the
other host (bases made sure of there, overlays rebased, every file the
session user's) and reverted (the disks rolled back)."""
import json

import pytest

from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import remote
from tests.functional.test_remote_planted import PAIRS
from tests.functional.test_remote_planted import base  # noqa: F401
from tests.functional.test_remote_planted import instance  # noqa: F401
from tests.functional.test_remote_planted import pair  # noqa: F401
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)
from tests.unit.virt import imagehelp

SNAP = 'resize-snap'
GiB = 1024 ** 3
MiB = 1024 ** 2
q = remote.q


def _info(place, path):
    return json.loads(place.sh('qemu-img info --output=json -U %s'
                               % q(path)))


def _io(place, path, command):
    out = place.sh('qemu-io -f qcow2 -c %s %s || echo failed'
                   % (q(command), q(path)))
    return 'failed' not in out


def _sums(place, folder, names):
    out = place.sh('cd %s && sha256sum %s' % (
        q(folder), ' '.join(q(n) for n in names)))
    return sorted(line.split()[0] for line in out.splitlines())


@pytest.mark.parametrize('pair', PAIRS, indirect=True)
def test_an_image_backed_instance_moves_between_machines(
        pair, instance, tmp_path):
    src_place, dst_place = pair
    src, dst = src_place.driver('a'), dst_place.driver('b')
    image = imagehelp.make_image(str(tmp_path / 'store'))
    uuid = instance['uuid']
    src.spawn(instance, imagehelp.FULL, power_on=False, image=image,
              config_drive=True)
    src_dir = src.instance_dir(uuid)
    for name, pattern in ((layout.DISK, 0xa1), (layout.EPHEMERAL, 0xb1)):
        assert _io(src_place, '%s/%s' % (src_dir, name),
                   'write -P 0x%02x 4M 1M' % pattern)
    plain = (layout.CONFIG_DRIVE, layout.KERNEL, layout.RAMDISK)
    sums = _sums(src_place, src_dir, plain)

    src.migrate_disk_and_power_off(uuid, dst, SNAP, image=image)
    dst.finish_migration(instance, imagehelp.BIGGER, SNAP, False)
    folder = dst.instance_dir(uuid)
    bases = '%s/%s' % (dst.instances_path, layout.BASE_DIR)
    root = _info(dst_place, '%s/disk' % folder)
    assert root['backing-filename'] == '%s/%s' % (bases, image['sha256'])
    assert root['virtual-size'] == 2 * GiB and 'snapshots' not in root
    local = _info(dst_place, '%s/disk.local' % folder)
    assert local['backing-filename'] == bases + '/ephemeral_1_ext4'
    assert local['virtual-size'] == 2 * GiB
    swap = _info(dst_place, '%s/disk.swap' % folder)
    assert (swap['backing-filename'], swap['virtual-size']) == (
        bases + '/swap_32', 32 * MiB)
    assert _io(dst_place, folder + '/disk', 'read -P 0xa1 4M 1M')
    assert _io(dst_place, folder + '/disk', 'read -P 0x5a 1M 1M')
    assert _io(dst_place, folder + '/disk.local', 'read -P 0xb1 4M 1M')
    assert _sums(dst_place, folder, plain) == sums
    owners = dst_place.sh('cd %s && stat -c "%%n %%u %%g %%a" *' % q(folder))
    assert sorted(owners.split('\n')[:-1]) == sorted(
        '%s 65534 65534 600' % n for n in (
            'disk', 'disk.config', 'disk.info', 'disk.local', 'disk.swap',
            'kernel', 'libvirt.xml', 'ramdisk'))
    assert json.loads(dst_place.sh('cat %s/disk.info' % q(folder))) == {
        '%s/%s' % (folder, n): f for n, f in (
            ('disk', 'qcow2'), ('disk.local', 'qcow2'),
            ('disk.swap', 'qcow2'), ('disk.config', 'raw'))}

    # Written on the source after its snapshot: a revert undoes it.
    stashed = src.instance_dir(uuid, virt_driver.RESIZE_SUFFIX)
    assert _io(src_place, stashed + '/disk', 'write -P 0xee 4M 1M')
    dst.destroy(uuid, destroy_disks=False)
    src.finish_revert_migration(instance, SNAP, power_on=False)
    assert _io(src_place, src_dir + '/disk', 'read -P 0xa1 4M 1M')
    assert 'snapshots' not in _info(src_place, src_dir + '/disk')
    assert _info(src_place, src_dir + '/disk.swap')['virtual-size'] == \
        16 * MiB
    assert _sums(src_place, src_dir, plain) == sums
