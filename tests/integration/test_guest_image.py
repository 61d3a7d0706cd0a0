"""The test guest (resize_flows.testing.guest) on real QEMU, judged from
outside the project's driver: build it, boot it with a root overlay, an
ephemeral disk, swap, a volume-like fourth disk with a serial, a config
drive and two NICs, read what it reports on its serial console, compare
with what the test put in (the serial and both MACs too) and see the data it
wrote itself on the ephemeral disk, press the ACPI power button and see it
power off by itself; boot again and see its boot counter and its data kept.

The image is built once into ``guest.default_dir()`` (under /var/tmp),
keyed on the builder's inputs, so repeated runs reuse it.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from resize_flows.testing import guest

pytestmark = pytest.mark.integration

QEMU = '/usr/bin/qemu-system-x86_64'
MAC = '52:54:00:5e:a1:13'
# A second NIC, as a port of the ports plugin is.
MAC2 = 'fa:16:3e:5e:a1:14'
# The serial of the fourth disk, as a volume of the volumes plugin has.
SERIAL = 'vol-6f1c2d'
# Generous: TCG on a loaded 2-core machine. Never a measure of speed.
REPORT_TIMEOUT = 180
SHUTDOWN_TIMEOUT = 120


@pytest.fixture(scope='module')
def image(guest_image):
    """The guest's (vmlinuz, initrd.img); see conftest's guest_image."""
    return guest_image


@pytest.fixture
def work():
    # Short: the monitor's unix socket path must fit in 108 bytes.
    path = tempfile.mkdtemp(prefix='rf-guest-', dir='/tmp')
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _virtual_size(path):
    out = subprocess.run(['qemu-img', 'info', '--output=json', '-U', path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)['virtual-size']


class Guest:
    """One QEMU process running the guest, started by the test."""

    def __init__(self, work, image, disks, cdrom, log, serials=None):
        self.log = log
        self.monitor = os.path.join(work, 'monitor.sock')
        kernel, initrd = image
        argv = [QEMU, '-machine', 'pc', '-accel', 'tcg', '-m', '256',
                '-smp', '2', '-kernel', kernel, '-initrd', initrd,
                '-append', 'console=ttyS0 quiet panic=-1']
        # In this order on the PCI bus: vda, vdb... (a serial as the
        # virtio-blk device's property: -drive serial= is gone).
        for index, disk in enumerate(disks):
            argv += ['-drive', 'file=%s,if=none,id=d%d,format=qcow2'
                     % (disk, index)]
            serial = (serials or {}).get(index)
            argv += ['-device', 'virtio-blk-pci,drive=d%d%s' % (
                index, ',serial=%s' % serial if serial else '')]
        argv += ['-cdrom', cdrom,
                 '-nic', 'user,model=virtio,mac=%s' % MAC,
                 '-nic', 'user,model=virtio,mac=%s' % MAC2,
                 '-serial', 'file:%s' % log,
                 '-monitor', 'unix:%s,server,nowait' % self.monitor,
                 '-display', 'none', '-no-reboot']
        self.stderr = open(os.path.join(work, 'qemu.stderr'), 'w+')
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)

    def console(self):
        try:
            with open(self.log, errors='replace') as handle:
                return handle.read()
        except FileNotFoundError:
            return ''

    def _trouble(self, what):
        self.stderr.seek(0)
        return '%s; qemu exit %s, stderr %r; console:\n%s' % (
            what, self.proc.poll(), self.stderr.read()[-2000:],
            self.console()[-3000:])

    def wait_for(self, tag, timeout):
        """The guest's ``tag`` lines once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            found = guest.parse_reports(self.console(), tag)
            if found:
                return found
            assert 'Kernel panic' not in self.console(), \
                self._trouble('the guest panicked')
            assert self.proc.poll() is None, \
                self._trouble('qemu ended before %s' % tag)
            assert time.monotonic() < deadline, \
                self._trouble('no %s line' % tag)
            time.sleep(0.2)

    def press_power_button(self):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(self.monitor)
            sock.sendall(b'system_powerdown\n')
            sock.settimeout(10)
            seen = b''
            while b'system_powerdown' not in seen:
                seen += sock.recv(4096)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(self._trouble('qemu did not power off'))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@pytest.fixture
def booted():
    """Start guests; kill any left running at the end."""
    started = []

    def boot(*args):
        started.append(Guest(*args))
        return started[-1]

    yield boot
    for one in started:
        one.stop()


def test_the_guest_reports_what_it_was_given(image, work, booted):
    root_files = {'hello.txt': b'hello from the root disk\n',
                  'deep/dir/blob.bin': os.urandom(300 * 1024)}
    ephemeral_files = {'ephemeral.bin': os.urandom(1024 * 1024)}
    instance_uuid = '6d1e6a3c-5b9a-4c39-9f6a-%012x' % (os.getpid() % 2**48)

    # Nova's layout: a raw base, the instance's qcow2 overlay on it with an
    # explicit backing format and a larger virtual size.
    base = guest.make_data_disk(os.path.join(work, 'base.raw'), root_files,
                                size_mb=16, fmt='raw')
    root = os.path.join(work, 'disk')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw',
                    '-b', base, root, '32M'], check=True)
    ephemeral = guest.make_data_disk(os.path.join(work, 'disk.local'),
                                     ephemeral_files, size_mb=8,
                                     fmt='qcow2')
    # a swap disk, as Nova makes one: mkswap on a blank disk
    swap_raw = os.path.join(work, 'swap.raw')
    with open(swap_raw, 'wb') as handle:
        handle.truncate(8 * 2**20)
    subprocess.run([shutil.which('mkswap', path='/usr/sbin:/sbin:/usr/bin')
                    or 'mkswap', '-q', swap_raw], check=True)
    swap = os.path.join(work, 'disk.swap')
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2',
                    swap_raw, swap], check=True)
    # a volume: ext4 with rf-data, a serial, mounted read-only (vdd)
    volume_files = {'volume.bin': os.urandom(64 * 1024)}
    volume = guest.make_data_disk(os.path.join(work, 'volume.qcow2'),
                                  volume_files, size_mb=8, fmt='qcow2')
    config = guest.make_config_drive(
        os.path.join(work, 'disk.config'),
        {'uuid': instance_uuid, 'name': 'guest-check', 'hostname': 'gc'})
    expected_files = {
        'vda': {k: _sha256(v) for k, v in root_files.items()},
        'vdb': {k: _sha256(v) for k, v in ephemeral_files.items()},
        'vdd': {k: _sha256(v) for k, v in volume_files.items()}}
    sizes = {'vda': _virtual_size(root), 'vdb': _virtual_size(ephemeral),
             'vdc': _virtual_size(swap), 'vdd': _virtual_size(volume)}
    assert sizes == {'vda': 32 * 2**20, 'vdb': 8 * 2**20, 'vdc': 8 * 2**20,
                     'vdd': 8 * 2**20}
    disks = [root, ephemeral, swap, volume]

    first = booted(work, image, disks, config,
                   os.path.join(work, 'console.log'), {3: SERIAL})
    report = first.wait_for(guest.REPORT, REPORT_TIMEOUT)[-1]
    print('boot to report: %.1f s' % (time.monotonic() - first.started))
    assert report['boot'] == 1
    assert report['cpus'] == 2
    # 256 MiB less what the kernel keeps: Debian's cloud kernel reports
    # about 218 MiB.
    assert 160 * 1024 < report['mem_kb'] <= 256 * 1024
    assert report['disks'] == sizes
    # vdb (the ephemeral disk) also holds what the guest wrote itself
    written = report['files']['vdb'].pop('guest-written')
    assert len(written) == 64
    assert report['files'] == expected_files
    expected_files['vdb']['guest-written'] = written
    # the swap the kernel took: the disk less its header page, in KiB
    assert report['swap'] == {'vdc': 8 * 1024 - 4}
    assert report['config_drive'] == {'label': 'config-2',
                                      'uuid': instance_uuid}
    assert report['mac'] == MAC
    # every NIC's MAC, and the serial of the one disk that has one
    assert report['macs'] == {'eth0': MAC, 'eth1': MAC2}
    assert report['serials'] == {'vdd': SERIAL}

    first.press_power_button()
    shutdown = first.wait_for(guest.SHUTDOWN, SHUTDOWN_TIMEOUT)
    assert shutdown == [{'boot': 1, 'reason': 'acpi-power-button',
                         'press': 1}]
    assert first.wait_exit(SHUTDOWN_TIMEOUT) == 0

    # The boot counter was written to vda and the file system left clean:
    # the next boot counts 2 and reads the same data.
    second = booted(work, image, disks, config,
                    os.path.join(work, 'console2.log'), {3: SERIAL})
    again = second.wait_for(guest.REPORT, REPORT_TIMEOUT)[-1]
    assert again['boot'] == 2
    # the same data, the guest's own too: written once, kept
    assert again['files'] == expected_files
    second.press_power_button()
    second.wait_for(guest.SHUTDOWN, SHUTDOWN_TIMEOUT)
    assert second.wait_exit(SHUTDOWN_TIMEOUT) == 0


def test_the_build_is_cached_and_reproducible(image, tmp_path):
    kernel, initrd = image
    before = os.stat(initrd).st_mtime_ns
    assert guest.build(guest.default_dir()) == image
    assert os.stat(initrd).st_mtime_ns == before

    # A fresh build elsewhere (the .deb shared, not downloaded again)
    # gives the same bytes.
    debs = tmp_path / 'debs'
    shutil.copytree(os.path.join(os.path.dirname(os.path.dirname(kernel)),
                                 'debs'), debs)
    again = guest.build(str(tmp_path))
    assert again != image
    for mine, theirs in zip(image, again):
        with open(mine, 'rb') as a, open(theirs, 'rb') as b:
            assert _sha256(a.read()) == _sha256(b.read())
