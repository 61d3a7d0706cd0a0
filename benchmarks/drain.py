"""Host drain benchmark: draining a host against its disk copies alone.

Sets up, for each ``--parallel`` value, a fresh cloud on libvirt's test
driver (real instance directories and disk files, simulated domains;
the flow log and records on SQLite): host1 with ``--servers`` (K)
servers, each root disk holding ``--data-gib`` (D) GiB of data (qemu-io
writes of varied patterns), and two empty destination hosts. Side by
side in that cloud:

- the baseline: every file of each server's instance directory copied
  with the project's copy function (``sparsecopy.sparse_copy``, what
  CopyDisk runs for each file), one server after another; its time is
  the sum of those copies;
- ``api.drain_host(host1, parallel=N)``: disable, migrate every server
  off (the whole flow: power off, stash, copy, define, power on) and
  confirm each (with ``--no-confirm``, the moves alone).

The process is warmed up first (one small move between the destination
hosts, untimed). Reported: the baseline, the drain's wall time, their
ratio (target: at most 1.3x with N=1), where the servers went, and with
N=2 the speed-up over N=1. As root the page cache is dropped before
each baseline copy and before the drain (cold reads for both). Timings
are figures to compare within one run, never test assertions.

    .venv/bin/python benchmarks/drain.py [--servers 4 --data-gib 0.25
                                          --parallel 1 2 --no-confirm]
"""
import argparse
import collections
import datetime
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from resize_flows import api
from resize_flows import conf as rf_conf
from resize_flows.persistence import migration
from resize_flows.persistence import repository
from resize_flows.testing import databases
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import sparsecopy
from resize_flows import virt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import disk_copy  # noqa: E402  (sibling scripts: their helpers)
import instance_move  # noqa: E402

CONF = rf_conf.CONF
GiB = 1024 ** 3


def _instance_dir(uuid):
    inst = repository.instance_get(uuid)
    host = repository.host_get(inst['host'])
    return os.path.join(host['instances_path'], uuid)


def make_image(ctx, work, image_gib):
    """Image 'bench-image' in the store: a qcow2 of ``image_gib`` GiB,
    all of it data. Returns its record."""
    path = os.path.join(work, 'image.qcow2')
    size = int(image_gib * GiB)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path,
                    str(size)], check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c',
                    'write -q -P 0x5a 0 %d' % size, path], check=True,
                   capture_output=True)
    image = api.create_image(ctx, 'bench-image', path)
    os.unlink(path)
    return image


def build(work, servers, data_gib, image_gib=0):
    """A cloud in ``work``: host1 with the servers (booted from an image
    of ``image_gib`` GiB when it is not 0), host2 and host3 empty.
    Returns the servers' uuids, their data in bytes, and the image."""
    CONF.set_override('state_dir', os.path.join(work, 'state'))
    virt.reset()
    url = 'sqlite:///' + os.path.join(work, 'rf.sqlite')
    CONF.set_override('connection', url, group='database')
    migration.db_sync(url)
    ctx = api.get_admin_context()
    for name in ('host1', 'host2', 'host3'):
        api.create_host(ctx, name, 64, 65536, 1000)
    api.create_flavor(ctx, 'bench', 1, 64, max(
        int(math.ceil(2 * data_gib)) + 1, int(math.ceil(image_gib))))
    warm_up(ctx)
    image = make_image(ctx, work, image_gib) if image_gib else None
    uuids, data = [], 0
    for i in range(servers):
        uuid = api.create_server(
            ctx, 'vm%d' % i, 'bench', 'host1',
            image=image['name'] if image else None)['uuid']
        disk = os.path.join(_instance_dir(uuid), layout.DISK)
        instance_move.fill(disk, int(data_gib * GiB), 7 + 13 * i)
        data += disk_copy.data_bytes(disk)
        uuids.append(uuid)
    return uuids, data, image


def warm_up(ctx):
    """One small move and confirm between the destination hosts, and the
    server deleted, untimed: the process then has its connections and
    imports, as a long-running one has (the first move of a fresh process
    pays about two seconds for them)."""
    uuid = api.create_server(ctx, 'warm-up', 'bench', 'host2')['uuid']
    api.migrate(ctx, uuid, host='host3', wait=True)
    api.confirm_resize(ctx, uuid, wait=True)
    api.delete_server(ctx, uuid)


def base_copy(work, image):
    """One copy of the image's base on host1 with sparse_copy, as a
    move's fetch of it into a destination's cache copies it."""
    src = os.path.join(repository.host_get('host1')['instances_path'],
                       '_base', layout.image_base_name(image['sha256']))
    target = os.path.join(work, 'baseline-base')
    disk_copy.drop_caches()
    start = time.monotonic()
    sparsecopy.sparse_copy(src, target, 'bench')
    took = time.monotonic() - start
    os.unlink(target)
    return took


def baseline(work, uuids):
    """The sum of the copies of each server's files with sparse_copy."""
    total = 0.0
    for uuid in uuids:
        folder = _instance_dir(uuid)
        target = os.path.join(work, 'baseline', uuid)
        os.makedirs(target)
        disk_copy.drop_caches()
        start = time.monotonic()
        for name in sorted(os.listdir(folder)):
            if name == layout.DISK_INFO or not os.path.isfile(
                    os.path.join(folder, name)):
                continue
            sparsecopy.sparse_copy(os.path.join(folder, name),
                                   os.path.join(target, name), 'bench')
        total += time.monotonic() - start
        shutil.rmtree(target)
    return total


def run_one(args, parallel):
    work = tempfile.mkdtemp(prefix='drain-bench-', dir=args.dir)
    try:
        uuids, data, image = build(work, args.servers, args.data_gib,
                                   args.image_gib)
        base = baseline(work, uuids)
        one_base = base_copy(work, image) if image else 0.0
        disk_copy.drop_caches()
        start = time.monotonic()
        rows = api.drain_host(api.get_admin_context(), 'host1',
                              parallel=parallel, confirm=args.confirm)
        wall = time.monotonic() - start
        statuses = collections.Counter(r['status'] for r in rows)
        spread = collections.Counter(r['to'] for r in rows)
        # The image's base is fetched once into each destination's cache.
        base += one_base * len(spread)
        wanted = 'confirmed' if args.confirm else 'moved'
        if statuses != {wanted: len(uuids)}:
            raise SystemExit('the drain did not end every server %s: %s'
                             % (wanted, rows))
        print('N=%d  %d servers, %.2f GiB of data%s: disk copies alone '
              '%6.2f s, drain %6.2f s: %.2fx   (to %s; per server %s s)' % (
                  parallel, len(uuids), data / GiB,
                  ' (image %.2f GiB)' % args.image_gib if image else '',
                  base, wall, wall / base,
                  ', '.join('%s %d' % kv for kv in sorted(spread.items())),
                  ' '.join('%.1f' % r['seconds'] for r in rows)))
        return base, wall
    finally:
        virt.reset()
        databases.forget_engines()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--servers', type=int, default=4, metavar='K')
    parser.add_argument('--data-gib', type=float, default=0.25,
                        metavar='D')
    parser.add_argument('--parallel', type=int, nargs='+', default=[1, 2],
                        metavar='N')
    parser.add_argument('--image-gib', type=float, default=0, metavar='I',
                        help='boot the servers from one image of I GiB '
                        '(all data); the baseline then adds one copy of '
                        'its base per destination host')
    parser.add_argument('--no-confirm', dest='confirm',
                        action='store_false',
                        help='the drain leaves each move unconfirmed (as '
                        'host drain --no-confirm): the moves alone')
    parser.add_argument('--dir', default='/var/tmp',
                        help='where the files go (not tmpfs)')
    args = parser.parse_args()
    rf_conf.register_opts(CONF)
    CONF([], project='resize-flows', default_config_files=[])
    CONF.set_override('local_hypervisor', 'test', group='libvirt')
    CONF.set_override('shutdown_timeout', 0, group='compute')
    print('host drain on the libvirt test driver, %s, %s, python %s' % (
        datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'), platform.node(),
        platform.python_version()))
    print('confirms: %s' % ('each move confirmed' if args.confirm else
                            'none (--no-confirm)'))
    print('page cache: %s' % ('dropped before each copy and each drain'
                              if disk_copy.drop_caches() else
                              'cannot drop it (not root): warm reads'))
    walls = {}
    for parallel in args.parallel:
        walls[parallel] = run_one(args, parallel)[1]
    if 1 in walls:
        for parallel, wall in sorted(walls.items()):
            if parallel != 1:
                print('N=%d drains in %.2fx the time of N=1 (%.2f s against '
                      '%.2f s)' % (parallel, wall / walls[1], wall,
                                   walls[1]))


if __name__ == '__main__':
    main()
