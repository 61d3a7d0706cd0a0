"""The driver's instance directory on real QEMU, judged by the test guest
itself: spawned from an image (root overlay on the cached base, direct
kernel boot, ephemeral, swap, config drive, NIC with the instance's MAC,
serial appended to console.log), resized onto the other host and reverted;
after each step the guest's own report on its console says what it sees.
"""
import hashlib
import os
import shutil
import tempfile
import time
import uuid as uuidlib

import pytest

from resize_flows.testing import guest
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import layout
from tests import needs

pytestmark = pytest.mark.integration

# Generous: TCG on a loaded 2-core machine. Never a measure of speed.
REPORT_TIMEOUT = 240
SNAP = 'resize-snap'
SMALL = {'name': 's', 'vcpus': 1, 'memory_mb': 256, 'root_gb': 1,
         'ephemeral_gb': 1, 'swap_mb': 16}
BIG = {'name': 'b', 'vcpus': 2, 'memory_mb': 384, 'root_gb': 2,
       'ephemeral_gb': 2, 'swap_mb': 32}
MiB = 1024 ** 2
GiB = 1024 ** 3


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path):
    with open(path, 'rb') as handle:
        return _sha256(handle.read())


@pytest.fixture(scope='module')
def guest_build():
    for tool in ('genisoimage', 'cpio', 'dpkg-deb'):
        if shutil.which(tool) is None:
            needs.unavailable('%s is not installed' % tool,
                              'RESIZE_FLOWS_REQUIRE_GUEST',
                              'run make deps, which installs it')
    if not os.access(guest.BUSYBOX, os.X_OK):
        needs.unavailable('busybox-static is not installed',
                          'RESIZE_FLOWS_REQUIRE_GUEST',
                          'run make deps, which installs it')
    return guest.build(guest.default_dir())


@pytest.fixture
def image(guest_build):
    """A raw root image with known files, the guest's kernel and ramdisk,
    in a store directory, as imagestore.for_driver describes them."""
    store = tempfile.mkdtemp(prefix='rf-store-', dir='/tmp')
    files = {'hello.txt': b'hello from the image\n',
             'blob.bin': os.urandom(200 * 1024)}
    path = guest.make_data_disk(os.path.join(store, str(uuidlib.uuid4())),
                                files, size_mb=16, fmt='raw')
    kernel, ramdisk = guest_build
    out = {'uuid': os.path.basename(path), 'sha256': _file_sha256(path),
           'disk_format': 'raw', 'virtual_size': 16 * MiB, 'path': path,
           'files': {k: _sha256(v) for k, v in files.items()}}
    for key, src in (('kernel', kernel), ('ramdisk', ramdisk)):
        dst = os.path.join(store, '%s.%s' % (out['uuid'], key))
        shutil.copyfile(src, dst)
        out[key + '_path'] = dst
        out[key + '_sha256'] = _file_sha256(dst)
    yield out
    shutil.rmtree(store, ignore_errors=True)


def _next_report(drv, uuid, seen):
    """The guest's report after the ``seen`` first ones in its
    console.log on ``drv``'s host."""
    log = os.path.join(drv.instance_dir(uuid), layout.CONSOLE_LOG)
    deadline = time.monotonic() + REPORT_TIMEOUT
    while True:
        try:
            with open(log, errors='replace') as handle:
                text = handle.read()
        except FileNotFoundError:
            text = ''
        reports = guest.parse_reports(text)
        if len(reports) > seen:
            return reports[seen]
        assert 'Kernel panic' not in text, text[-3000:]
        assert time.monotonic() < deadline, 'no report:\n' + text[-3000:]
        time.sleep(0.5)


def test_resize_and_revert_seen_from_inside_the_guest(qemu_hosts, image):
    one, two = qemu_hosts['h1'], qemu_hosts['h2']
    instance = {'uuid': str(uuidlib.uuid4()), 'name': 'inside'}
    uuid = instance['uuid']
    one.spawn(instance, SMALL, image=image, config_drive=True)
    first = _next_report(one, uuid, 0)
    assert first['cpus'] == 1
    assert first['disks']['vda'] == 1 * GiB
    assert first['disks']['vdb'] == 1 * GiB
    assert first['disks']['vdc'] == 16 * MiB
    assert first['files']['vda'] == image['files']
    assert first['config_drive'] == {'label': 'config-2', 'uuid': uuid}
    assert first['mac'] == layout.mac_address(uuid)

    one.migrate_disk_and_power_off(uuid, two, SNAP, timeout=60,
                                   image=image)
    two.finish_migration(instance, BIG, SNAP, power_on=True)
    # console.log moved with the directory: its reports come first.
    moved = _next_report(two, uuid, 1)
    assert moved['cpus'] == 2
    assert moved['mem_kb'] > first['mem_kb']
    assert moved['disks']['vda'] == 2 * GiB
    assert moved['disks']['vdb'] == 2 * GiB
    assert moved['disks']['vdc'] == 32 * MiB
    assert moved['files']['vda'] == image['files']
    assert moved['config_drive'] == first['config_drive']
    assert moved['mac'] == first['mac']
    assert moved['boot'] == first['boot'] + 1

    two.power_off(uuid, timeout=60)
    two.destroy(uuid, destroy_disks=False)
    two.rename_instance_dir(uuid, '', virt_driver.REVERT_SUFFIX)
    one.finish_revert_migration(instance, SNAP, power_on=True)
    reverted = _next_report(one, uuid, 1)
    assert reverted['cpus'] == 1
    assert reverted['disks'] == first['disks']
    assert reverted['files']['vda'] == image['files']
    assert reverted['mac'] == first['mac']
    # The root disk went back to the snapshot taken before the move.
    assert reverted['boot'] == first['boot'] + 1
    one.destroy(uuid)
    two.remove_instance_dir(uuid, virt_driver.REVERT_SUFFIX)
