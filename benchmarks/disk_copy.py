"""Disk copy benchmark: our resumable sparse copy against cp and qemu-img.

Builds a qcow2 of ``--size-gib`` GiB virtual size holding about
``--data-gib`` GiB of data (qemu-io writes of varied byte patterns at
scattered offsets), then, side by side in one run, copies it with:

- ``sparse_copy`` (resize_flows.virt.libvirt.disk), as CopyDisk does;
- ``cp --sparse=always``, and the same followed by ``sync`` of the file
  (our copy is durable when it returns, cp's is not);
- ``qemu-img convert -O qcow2``;

and prints, for each, the wall time, the throughput in MB/s of source data,
the allocated bytes of the destination against the source's, and the ratio
to cp. Last, a copy killed (SIGKILL) once half the data is written, then
resumed: the share of the data copied twice.

As root the page cache is dropped before each run (cold reads for all);
otherwise every run after the first reads a warm cache, said in the output.
Timings are figures to compare within one run, never test assertions.

    .venv/bin/python benchmarks/disk_copy.py [--size-gib 2 --data-gib 1]
"""
import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import sparsecopy

MiB = 1024 ** 2
GiB = 1024 ** 3


# The copy that gets killed: argv is src, dst.
_CHILD = (
    'import sys\n'
    'from resize_flows.virt.libvirt import sparsecopy\n'
    'sparsecopy.sparse_copy(sys.argv[1], sys.argv[2], "bench")\n')


def build_source(path, size_gib, data_gib, extent_mib=16):
    """A qcow2 of ``size_gib`` GiB with ``data_gib`` GiB of data written by
    qemu-io in ``extent_mib`` MiB extents spread over the virtual disk."""
    size, data = int(size_gib * GiB), int(data_gib * GiB)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path,
                    str(size)], check=True)
    extent = extent_mib * MiB
    count = max(1, data // extent)
    slots = size // extent
    step = max(1, slots // count)
    # Scattered: walk the slots with a stride coprime to their number.
    stride = next(s for s in range(step * 7 + 1, slots * 2 + 1)
                  if _gcd(s, slots) == 1) if slots > 1 else 1
    commands = []
    for i in range(count):
        slot = (i * stride) % slots
        commands += ['-c', 'write -P 0x%02x %d %d' % (
            (i * 37 + 11) % 255 + 1, slot * extent, extent)]
    subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                   check=True, stdout=subprocess.DEVNULL)
    os.sync()


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def allocated(path):
    return os.stat(path).st_blocks * 512


def data_bytes(path):
    with open(path, 'rb') as handle:
        size = os.fstat(handle.fileno()).st_size
        return sum(end - start for start, end in sparsecopy._data_extents(
            handle.fileno(), size))


def drop_caches():
    """Drop the page cache (root only); True if it worked."""
    try:
        os.sync()
        with open('/proc/sys/vm/drop_caches', 'w') as handle:
            handle.write('3\n')
        return True
    except OSError:
        return False


def timed(func):
    start = time.monotonic()
    func()
    return time.monotonic() - start


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run(args):
    work = tempfile.mkdtemp(prefix='disk-copy-bench-', dir=args.dir)
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args, work):
    src = os.path.join(work, 'src.qcow2')
    took = timed(lambda: build_source(src, args.size_gib, args.data_gib))
    data = data_bytes(src)
    print('source: %s, %.2f GiB virtual, file %.2f GiB, data %.2f GiB, '
          'allocated %.2f GiB (built in %.1fs)' % (
              src, args.size_gib, os.path.getsize(src) / GiB, data / GiB,
              allocated(src) / GiB, took))
    cold = drop_caches()
    print('page cache: %s' % ('dropped before each run' if cold else
                              'cannot drop it (not root): warm for all '
                              'runs after the first'))

    def ours(dst):
        sparsecopy.sparse_copy(src, dst, 'bench')

    def cp(dst):
        subprocess.run(['cp', '--sparse=always', src, dst], check=True)

    def cp_sync(dst):
        cp(dst)
        fsync_file(dst)

    def convert(dst):
        subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', src, dst],
                       check=True)

    methods = (('cp --sparse=always', cp),
               ('cp --sparse=always + fsync', cp_sync),
               ('sparse_copy (ours)', ours),
               ('qemu-img convert -O qcow2', convert))
    times = {name: [] for name, _func in methods}
    alloc = {}
    dst = os.path.join(work, 'dst')
    for _ in range(args.repeat):          # interleaved: noise hits all
        for name, func in methods:
            drop_caches()
            times[name].append(timed(lambda: func(dst)))
            os.sync()                  # cp's blocks are allocated now too
            alloc[name] = allocated(dst)
            os.unlink(dst)

    def ratios(name, reference):
        return '%4.2f/%4.2f' % (
            min(times[reference]) / min(times[name]),
            statistics.median(times[reference])
            / statistics.median(times[name]))

    src_alloc = allocated(src)
    print()
    print('%-27s %6s %6s %9s %12s %9s %9s' % (
        'copy', 'best s', 'median', 'MB/s best', 'alloc-src KiB',
        'vs cp', 'vs cp+fs'))
    for name, _func in methods:
        best = min(times[name])
        print('%-27s %6.2f %6.2f %9.0f %12d %9s %9s' % (
            name, best, statistics.median(times[name]), data / 1e6 / best,
            (alloc[name] - src_alloc) // 1024,
            ratios(name, 'cp --sparse=always'),
            ratios(name, 'cp --sparse=always + fsync')))
    print('(%d interleaved runs each; MB/s of source data; alloc-src: '
          'allocated bytes of the copy minus the source\'s (%d KiB); "vs" '
          'columns: throughput relative to cp, best/median; chunk of '
          'sparse_copy: %d MiB)' % (
              args.repeat, src_alloc // 1024,
              sparsecopy._default_chunk(data) // MiB))

    # Killed (SIGKILL, from outside, wherever it is) once half the data is
    # in disk.part, then resumed here.
    dst = os.path.join(work, 'dst')
    part = dst + disk.PART_SUFFIX
    drop_caches()
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, '-c', _CHILD, src, dst])
    written = 0
    while child.poll() is None:
        if os.path.exists(part):
            try:
                written = data_bytes(part)
            except OSError:
                written = 0
            if written >= data / 2:
                child.send_signal(signal.SIGKILL)
                break
        time.sleep(0.002)
    child.wait()
    killed_at = time.monotonic() - start
    written = data_bytes(part)        # all it wrote, up to the kill
    drop_caches()
    second = sparsecopy.sparse_copy(src, dst, 'bench')
    again = (written + second.copied - data) / data
    print()
    print('killed at half way (%.2fs, %.0f MiB of data in disk.part), then '
          'resumed: verified %.0f MiB, reused %.0f MiB, copied %.0f MiB; '
          'copied again: %.2f %% of the data' % (
              killed_at, written / MiB, second.verified / MiB,
              second.reused / MiB, second.copied / MiB, 100 * again))
    same = subprocess.run(['cmp', '-s', src, dst]).returncode == 0
    print('resumed copy identical to the source: %s' % same)
    os.unlink(dst)
    return 0 if same else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-gib', type=float, default=2)
    parser.add_argument('--data-gib', type=float, default=1)
    parser.add_argument('--repeat', type=int, default=5,
                        help='Runs of each copy (interleaved).')
    parser.add_argument('--dir', default=None,
                        help='Where to work (default: the temp dir).')
    args = parser.parse_args(argv)
    print('%s  %s  kernel %s  python %s' % (
        datetime.datetime.now().isoformat(timespec='seconds'),
        platform.node(), platform.release(), platform.python_version()))
    return run(args)


if __name__ == '__main__':
    sys.exit(main())
