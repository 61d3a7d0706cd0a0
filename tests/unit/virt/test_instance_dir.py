"""spawn lays out Nova's instance directory (layout.py) on test-driver
hosts with real qemu-img: overlays on cached bases, ephemeral, swap,
config drive, kernel and ramdisk, disk.info, and the domain's devices."""
import filecmp
import json
import os

import libvirt
import pytest

from resize_flows import exception
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import host as libvirt_host
from resize_flows.virt.libvirt import layout

from tests.unit.virt import imagehelp

GiB = 1024 ** 3
MiB = 1024 ** 2


@pytest.fixture
def image(tmp_path):
    return imagehelp.make_image(str(tmp_path / 'store'))


def _path(drv, instance, name):
    return os.path.join(drv.instance_dir(instance['uuid']), name)


def test_spawn_from_an_image_lays_out_every_file(src, instance, image):
    src.spawn(instance, imagehelp.FULL, image=image, config_drive=True)
    base = os.path.join(src.instances_path, layout.BASE_DIR,
                        image['sha256'])
    assert imagehelp.sha256(base) == image['sha256']
    root = imagehelp.qemu_info(_path(src, instance, layout.DISK))
    assert root['format'] == 'qcow2'
    assert root['backing-filename'] == base
    assert root['backing-filename-format'] == 'qcow2'
    assert root['virtual-size'] == 1 * GiB
    local = imagehelp.qemu_info(_path(src, instance, layout.EPHEMERAL))
    assert local['virtual-size'] == 1 * GiB
    assert local['backing-filename'] == os.path.join(
        src.instances_path, layout.BASE_DIR, layout.ephemeral_base_name(1))
    assert local['backing-filename-format'] == 'raw'
    swap = imagehelp.qemu_info(_path(src, instance, layout.SWAP))
    assert swap['virtual-size'] == 16 * MiB
    assert swap['backing-filename'].endswith('/_base/swap_16')
    label, meta = imagehelp.iso_meta(_path(src, instance,
                                           layout.CONFIG_DRIVE))
    assert label == 'config-2'
    assert meta == {'uuid': instance['uuid'], 'name': instance['name'],
                    'hostname': 'vm-under-test'}
    assert filecmp.cmp(image['kernel_path'],
                       _path(src, instance, layout.KERNEL), shallow=False)
    assert filecmp.cmp(image['ramdisk_path'],
                       _path(src, instance, layout.RAMDISK), shallow=False)
    with open(_path(src, instance, layout.DISK_INFO)) as handle:
        info = json.load(handle)
    folder = src.instance_dir(instance['uuid'])
    assert info == {os.path.join(folder, 'disk'): 'qcow2',
                    os.path.join(folder, 'disk.local'): 'qcow2',
                    os.path.join(folder, 'disk.swap'): 'qcow2',
                    os.path.join(folder, 'disk.config'): 'raw'}
    assert not os.path.exists(_path(src, instance, layout.CONSOLE_LOG))
    for name in os.listdir(folder):
        st = os.lstat(os.path.join(folder, name))
        assert (st.st_mode & 0o777, st.st_uid) == (
            0o600, os.stat(src.instances_path).st_uid), name


def test_the_domain_holds_every_device(src, instance, image):
    src.spawn(instance, imagehelp.FULL, image=image, config_drive=True)
    dom = libvirt_host.get_connection(src.uri).lookupByUUIDString(
        instance['uuid'])
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    folder = src.instance_dir(instance['uuid'])
    disks, mac = config.devices(xml)
    assert disks == {'vda': os.path.join(folder, 'disk'),
                     'vdb': os.path.join(folder, 'disk.local'),
                     'vdc': os.path.join(folder, 'disk.swap'),
                     'hda': os.path.join(folder, 'disk.config')}
    assert mac == layout.mac_address(instance['uuid'])
    assert '<kernel>%s/kernel</kernel>' % folder in xml
    assert '<initrd>%s/ramdisk</initrd>' % folder in xml
    assert "append='on'" in xml and '<readonly/>' in xml
    assert config.summary(xml) == (instance['uuid'], 1, 256,
                                   os.path.join(folder, 'disk'))
    with open(os.path.join(folder, 'libvirt.xml')) as handle:
        assert config.devices(handle.read()) == (disks, mac)


def test_qemu_domain_xml_has_cache_none_and_user_nic():
    xml = config.domain_xml('00000000-0000-0000-0000-000000000001', 1, 128,
                            '/i/u', 'qemu', present=layout.MOVED)
    assert xml.count("cache=\"none\"") + xml.count("cache='none'") == 3
    assert 'type="user"' in xml or "type='user'" in xml


def test_spawn_a_raw_image_without_kernel(src, instance, tmp_path):
    image = imagehelp.make_image(str(tmp_path / 'store'), 'raw',
                                 kernel=False)
    src.spawn(instance, {'name': 'tiny', 'vcpus': 1, 'memory_mb': 128,
                         'root_gb': 1}, image=image)
    root = imagehelp.qemu_info(_path(src, instance, layout.DISK))
    assert root['backing-filename-format'] == 'raw'
    assert sorted(os.listdir(src.instance_dir(instance['uuid']))) == [
        'disk', 'disk.info', 'libvirt.xml']


def test_spawn_again_finishes_what_a_crash_left(src, instance, image):
    src.spawn(instance, imagehelp.FULL, image=image, config_drive=True,
              power_on=False)
    folder = src.instance_dir(instance['uuid'])
    before = {n: os.stat(os.path.join(folder, n)).st_ino
              for n in ('disk', 'disk.local', 'kernel')}
    for name in ('disk.swap', 'disk.config', 'ramdisk', 'libvirt.xml'):
        os.unlink(os.path.join(folder, name))
    src.spawn(instance, imagehelp.FULL, image=image, config_drive=True,
              power_on=False)
    assert set(os.listdir(folder)) >= {
        'disk', 'disk.local', 'disk.swap', 'disk.config', 'kernel',
        'ramdisk', 'disk.info', 'libvirt.xml'}
    assert before == {n: os.stat(os.path.join(folder, n)).st_ino
                      for n in before}


def test_spawn_refuses_a_wrong_leftover_disk(src, instance, image):
    src.spawn(instance, imagehelp.FULL, image=image, power_on=False)
    other = dict(imagehelp.FULL, ephemeral_gb=2)
    with pytest.raises(exception.InstanceExistsOnHost):
        src.spawn(instance, other, image=image, power_on=False)


def test_spawn_refuses_a_root_smaller_than_the_image(src, instance,
                                                     tmp_path):
    image = imagehelp.make_image(str(tmp_path / 'store'), size='2G',
                                 kernel=False)
    with pytest.raises(exception.FlavorDiskSmallerThanImage):
        src.spawn(instance, imagehelp.FULL, image=image)
    assert not os.listdir(src.instance_dir(instance['uuid']))
    assert not src.instance_exists(instance['uuid'])


def test_spawn_refuses_a_kernel_with_a_wrong_checksum(src, instance, image):
    with open(image['kernel_path'], 'ab') as handle:
        handle.write(b'tampered')
    with pytest.raises(exception.DiskError, match='checksum'):
        src.spawn(instance, imagehelp.FULL, image=image)
    assert not os.path.exists(_path(src, instance, layout.KERNEL))


def test_blank_spawn_has_swap_and_ephemeral_of_the_flavor(src, instance):
    src.spawn(instance, dict(imagehelp.FULL, swap_mb=8), power_on=False)
    root = imagehelp.qemu_info(_path(src, instance, layout.DISK))
    assert 'backing-filename' not in root
    assert imagehelp.qemu_info(_path(src, instance, layout.SWAP))[
        'virtual-size'] == 8 * MiB
