"""Instance move benchmark: a whole instance directory carried between two
hosts against ``cp --sparse=always`` of the same files, and what the
image cache saves.

Builds, on host A (an instances path on this machine, libvirt's test
driver for the domain), an image-backed instance as ``server create``
lays it out: a root qcow2 overlay on the image's base in ``_base``, an
ephemeral overlay, swap, config drive, ``disk.info``. Then ``--data-gib``
GiB of data (qemu-io writes of varied patterns) go into the root overlay
and the ephemeral disk, half each. In one run, side by side:

- ``copy_disk_to`` (what CopyDisk runs): every file of ``<uuid>_resize``
  to host B, each one resumable and synced, backing files made sure of,
  overlays rebased, with B's cache already holding the base;
- ``cp --sparse=always`` of the same files followed by an fsync of each
  (``cp`` alone is not durable; ours is when it returns);

repeated ``--runs`` times alternately (the page cache is dropped before
each run as root). Reported: the median wall time, the throughput in
MB/s of the files' data, and the ratio of ours to cp's (above 1.0: we are
faster). Last, the base: fetched into an empty cache of host B from the
store (its bytes and time), then again with it cached (0 bytes).
Timings are figures to compare within one run, never test assertions.

    .venv/bin/python benchmarks/instance_move.py [--data-gib 1 --runs 3]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuid_lib

from resize_flows.conf import CONF
from resize_flows.virt.libvirt import driver as libvirt_driver
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import instancedir
from resize_flows.virt.libvirt import layout

MiB = 1024 ** 2
GiB = 1024 ** 3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import disk_copy  # noqa: E402  (a sibling script: its helpers)


def make_image(store):
    """A 256 MiB qcow2 image with 64 MiB of data, as the store keeps it."""
    os.makedirs(store)
    image_id = str(uuid_lib.uuid4())
    path = os.path.join(store, image_id)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path,
                    '256M'], check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c',
                    'write -q -P 0x3c 0 64M', path], check=True,
                   capture_output=True)
    info = subprocess.run(['qemu-img', 'info', '--output=json', path],
                          check=True, capture_output=True, text=True).stdout
    sha256 = instancedir.store_files({'path': path}).sha256(path)
    return {'uuid': image_id, 'sha256': sha256,
            'disk_format': 'qcow2',
            'virtual_size': json.loads(info)['virtual-size'],
            'path': path, 'kernel_path': None, 'ramdisk_path': None,
            'kernel_sha256': None, 'ramdisk_sha256': None}


def fill(path, data_bytes, seed):
    """``data_bytes`` of patterns in 16 MiB extents over the disk."""
    extent = 16 * MiB
    commands = []
    for i in range(max(1, data_bytes // extent)):
        commands += ['-c', 'write -q -P 0x%02x %d %d' % (
            (i * 37 + seed) % 255 + 1, i * 2 * extent, extent)]
    subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                   check=True, capture_output=True)


def run(args):
    work = tempfile.mkdtemp(prefix='instance-move-bench-', dir=args.dir)
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args, work):
    CONF([], project='resize-flows')
    image = make_image(os.path.join(work, 'store'))
    paths = {}
    for name in ('a', 'b'):
        paths[name] = os.path.join(work, name)
        os.makedirs(paths[name])
    src = libvirt_driver.LibvirtDriver('a', 'test:///default', paths['a'])
    dest = libvirt_driver.LibvirtDriver('b', 'test:///default', paths['b'])
    uuid = str(uuid_lib.uuid4())
    gib = max(2, int(args.data_gib) + 1)
    flavor = {'name': 'bench', 'vcpus': 1, 'memory_mb': 64,
              'root_gb': gib, 'ephemeral_gb': gib, 'swap_mb': 64}
    have_iso = shutil.which('genisoimage') is not None
    src.spawn({'uuid': uuid, 'name': 'bench'}, flavor, power_on=False,
              image=image, config_drive=have_iso)
    folder = src.instance_dir(uuid)
    half = int(args.data_gib * GiB) // 2
    fill(os.path.join(folder, layout.DISK), half, 11)
    fill(os.path.join(folder, layout.EPHEMERAL), half, 53)
    src.stash_for_resize(uuid, 'resize-bench')
    stash = src.instance_dir(uuid, '_resize')
    names = sorted(os.listdir(stash))
    held = {n: disk_copy.data_bytes(os.path.join(stash, n)) for n in names}
    data = sum(held.values())
    print('instance: %s, files %s, data %.2f GiB (root + ephemeral %.2f '
          'GiB)' % (uuid, ', '.join(names), data / GiB,
                    (held[layout.DISK] + held[layout.EPHEMERAL]) / GiB))
    cold = disk_copy.drop_caches()
    print('page cache: %s' % ('dropped before each run' if cold else
                              'cannot drop it (not root): warm reads'))

    # The bases on B once (the image's, the blank ephemeral and swap ones
    # B makes itself), so the timed moves compare file copies alone.
    imagecache.ensure_image_base(dest.files, image['sha256'], [
        (instancedir.store_files(image), image['path'])])
    imagecache.ensure_blank_base(dest.files, 'ephemeral', gib)
    imagecache.ensure_blank_base(dest.files, 'swap', flavor['swap_mb'])

    def ours():
        src.copy_disk_to(uuid, dest, image=image)

    def cp():
        target = os.path.join(work, 'cp')
        os.makedirs(target)
        for name in names:
            out = os.path.join(target, name)
            subprocess.run(['cp', '--sparse=always',
                            os.path.join(stash, name), out], check=True)
            disk_copy.fsync_file(out)

    def reset():
        dest.remove_instance_dir(uuid)
        shutil.rmtree(os.path.join(work, 'cp'), ignore_errors=True)
        os.sync()
        disk_copy.drop_caches()

    times = {'ours': [], 'cp': []}
    for _ in range(args.runs):
        for name, func in (('ours', ours), ('cp', cp)):
            reset()
            times[name].append(disk_copy.timed(func))
    reset()
    med = {k: statistics.median(v) for k, v in times.items()}
    print('\n%-34s %9s %9s %8s' % ('copy of the instance directory',
                                   'median s', 'MB/s', 'vs cp'))
    for name, label in (('ours', 'copy_disk_to (resumable, synced)'),
                        ('cp', 'cp --sparse=always + fsync')):
        print('%-34s %9.2f %9.1f %7.2fx' % (
            label, med[name], data / MiB / med[name],
            med['cp'] / med[name]))
    print('runs: %s' % ', '.join('%s %s' % (k, ' '.join(
        '%.2f' % t for t in v)) for k, v in times.items()))

    # The base: into an empty cache, then cached.
    base = imagecache.base_path(dest.files, image['sha256'])
    os.unlink(base)
    disk_copy.drop_caches()
    start = time.monotonic()
    _path, first = imagecache.ensure_image_base(
        dest.files, image['sha256'],
        [(instancedir.store_files(image), image['path'])])
    took = time.monotonic() - start
    start = time.monotonic()
    _path, again = imagecache.ensure_image_base(
        dest.files, image['sha256'],
        [(instancedir.store_files(image), image['path'])])
    took_again = time.monotonic() - start
    print('\nbase image (%d MiB file, %.0f MiB data): not cached: %d '
          'bytes copied once in %.2fs (allocated on B: %d MiB); cached: '
          '%d bytes copied (checked in %.2fs)' % (
              os.path.getsize(image['path']) // MiB,
              disk_copy.data_bytes(image['path']) / MiB, first, took,
              os.stat(base).st_blocks * 512 // MiB, again, took_again))
    return med['cp'] / med['ours'], first, again


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-gib', type=float, default=1.0)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--dir', default='/var/tmp',
                        help='where the files go (not tmpfs)')
    args = parser.parse_args()
    print('%s, %s, %s, python %s' % (
        datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'), platform.node(), platform.machine(),
        platform.python_version()))
    run(args)


if __name__ == '__main__':
    main()
