"""A real instance moved and judged from inside: the test guest booted
from an image (root disk with known files, kernel, ramdisk) with an
ephemeral disk, swap and a config drive on one local QEMU host, resized
onto the other to a bigger flavor, then reverted. After each step the
guest's own report, read from its console log file on the host where the
instance is (not through the project's code), must show the flavor's
vCPUs, memory and disk sizes, the same data (the image's files and what
the guest wrote itself), the same MAC and config drive; before the move,
the guest's own clean shutdown."""
import hashlib
import os
import time

import pytest

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows.testing import guest
from resize_flows.testing import guestlog
from resize_flows.virt.libvirt import layout
from tests.integration.conftest import assert_consistent

pytestmark = pytest.mark.integration

# Generous: TCG on a loaded 2-core machine. Never a measure of speed.
BOOT_TIMEOUT = 180
MiB = 1024 ** 2
GiB = 1024 ** 3


def _console_path(vm):
    """The console log of the instance, on the host the records name."""
    inst = repository.instance_get(vm)
    host = repository.host_get(inst['host'])
    return os.path.join(host['instances_path'], inst['uuid'],
                        layout.CONSOLE_LOG)


def _read(path):
    try:
        with open(path, errors='replace') as handle:
            return handle.read()
    except FileNotFoundError:
        return ''


def _report(vm):
    """The running boot's report, once the guest has written it."""
    path = _console_path(vm)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        text = _read(path)
        report = guestlog.current_report(text)
        if report is not None:
            return report
        assert 'Kernel panic' not in text, text[-3000:]
        assert time.monotonic() < deadline, 'no report in %s after %ss:\n%s' \
            % (path, BOOT_TIMEOUT, text[-3000:])
        time.sleep(0.5)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def test_resize_and_revert_seen_from_inside_the_guest(
        qemu_cloud, guest_image, conf):
    # The guest answers ACPI: a clean shutdown before the move.
    conf.set_override('shutdown_timeout', 60, group='compute')
    conf.set_override('shutdown_retry_interval', 5, group='compute')
    ctx = qemu_cloud.ctx
    kernel, initrd = guest_image
    root_files = {'hello.txt': b'hello from the image\n',
                  'deep/blob.bin': os.urandom(256 * 1024)}
    root_sums = {k: _sha256(v) for k, v in root_files.items()}
    root = guest.make_data_disk(os.path.join(qemu_cloud.base, 'root.qcow2'),
                                root_files, size_mb=16)
    api.create_image(ctx, 'guest', root, kernel=kernel, ramdisk=initrd)
    api.create_flavor(ctx, 'g.small', 1, 128, 1, ephemeral_gb=1,
                      swap_mb=16)
    api.create_flavor(ctx, 'g.big', 2, 256, 2, ephemeral_gb=2, swap_mb=32)

    inst = api.create_server(ctx, 'real-vm', 'g.small', 'host1',
                             image='guest', config_drive=True)
    vm = inst['uuid']
    first = _report(vm)
    assert first['cpus'] == 1
    assert first['disks'] == {'vda': 1 * GiB, 'vdb': 1 * GiB,
                              'vdc': 16 * MiB}
    # the kernel counts swap less its header page
    assert first['swap'] == {'vdc': 16 * 1024 - 4}
    assert first['files']['vda'] == root_sums
    written = first['files']['vdb']['guest-written']
    assert first['files']['vdb'] == {'guest-written': written}
    assert first['config_drive'] == {'label': 'config-2', 'uuid': vm}
    assert first['mac'] == layout.mac_address(vm)

    api.resize(ctx, vm, 'g.big', wait=True)
    assert repository.instance_get(vm)['host'] == 'host2'
    after = _report(vm)
    # the guest shut itself down before it was moved
    shutdowns = guest.parse_reports(_read(os.path.join(
        repository.host_get('host1')['instances_path'], vm + '_resize',
        layout.CONSOLE_LOG)), guest.SHUTDOWN)
    assert shutdowns and shutdowns[-1]['boot'] == first['boot']
    assert shutdowns[-1]['reason'] == 'acpi-power-button'
    assert after['cpus'] == 2
    assert after['mem_kb'] > first['mem_kb'] + 100 * 1024
    assert after['disks'] == {'vda': 2 * GiB, 'vdb': 2 * GiB,
                              'vdc': 32 * MiB}
    assert after['swap'] == {'vdc': 32 * 1024 - 4}
    assert after['files'] == first['files']
    assert after['config_drive'] == first['config_drive']
    assert after['mac'] == first['mac']
    assert after['boot'] == first['boot'] + 1
    assert_consistent(vm)

    api.revert_resize(ctx, vm, wait=True)
    assert repository.instance_get(vm)['host'] == 'host1'
    back = _report(vm)
    assert back['cpus'] == first['cpus']
    assert back['mem_kb'] == first['mem_kb']
    assert back['disks'] == first['disks']
    assert back['swap'] == first['swap']
    assert back['files'] == first['files']
    assert back['config_drive'] == first['config_drive']
    assert back['mac'] == first['mac']
    # the root disk is the one from before the move: its boot counter too
    assert back['boot'] == first['boot'] + 1
    assert_consistent(vm)

    api.delete_server(ctx, vm)
