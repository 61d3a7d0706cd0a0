"""Hosts on other machines: ssh file operations and the rsync disk copy,
each against a baseline run in the same script.

The other machines are those of the tests (resize_flows.testing.machines:
an sshd in a mount namespace of its own on 127.0.0.1), so the "network"
is loopback: the figures show what our ssh and rsync layer costs, not
what a real network costs. Needs root.

1. File operations, per call: ``exists``, ``disk_info`` (qemu-img info)
   and ``write_atomic`` on this machine (LocalFiles) and on another
   (SshFiles) with one shared ssh connection and with a new connection
   per call (``[remote]/ssh_control_persist = 0``).
2. The disk copy of a qcow2 of ``--size-gib`` GiB holding ``--data-gib``
   GiB of data, between two other machines, interleaved ``--repeat``
   times, page cache dropped before each run:
   ours (``transfer.copy_disk``: the source pushes with rsync, progress
   parsed, stopped with us) against the same rsync typed by hand
   (``ssh A rsync --sparse --fsync -e ssh SRC B:DST``), and against the
   local resumable copy on this machine (``sparsecopy.sparse_copy``).
   Then a copy stopped at half way and run again: the share of the data
   sent again.
3. migrate + confirm on libvirt's test driver (SQLite records), hosts on
   this machine against hosts on two other machines: seconds per
   operation.

    sudo .venv/bin/python benchmarks/remote_hosts.py [--size-gib 2 --data-gib 1 --repeat 3]

Timings are figures to compare within one run, never test assertions.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import disk_copy  # noqa: E402 (benchmarks/disk_copy.py: the source disk)

from resize_flows import api  # noqa: E402
from resize_flows import conf as rf_conf  # noqa: E402
from resize_flows.persistence import migration  # noqa: E402
from resize_flows.testing import databases  # noqa: E402
from resize_flows.testing import machines as test_machines  # noqa: E402
from resize_flows import virt  # noqa: E402
from resize_flows.virt.libvirt import disk  # noqa: E402
from resize_flows.virt.libvirt import files  # noqa: E402
from resize_flows.virt.libvirt import local  # noqa: E402
from resize_flows.virt.libvirt import remote  # noqa: E402
from resize_flows.virt.libvirt import sparsecopy  # noqa: E402
from resize_flows.virt.libvirt import transfer  # noqa: E402

CONF = rf_conf.CONF
GiB = 1024 ** 3


def per_call(func, count):
    func()                                              # warm up
    started = time.perf_counter()
    for _ in range(count):
        func()
    return (time.perf_counter() - started) / count * 1e3


def file_ops(work, one, count):
    here = files.for_host('here', work)
    there = files.for_host('there', one.path('i'), one.address)
    one.run('mkdir -p %s' % one.path('i'))
    src = os.path.join(work, 'tiny.qcow2')
    disk.create(src, GiB, 'here')
    there.create_disk(one.path('i', 'tiny.qcow2'), GiB)
    print('file operations, ms per call:')
    print('    %-12s %10s %12s %14s' % ('', 'here', 'ssh shared',
                                        'ssh new conn'))
    for name, local_call, remote_call in (
            ('exists', lambda: here.exists(src),
             lambda: there.exists(one.path('i', 'tiny.qcow2'))),
            ('disk_info', lambda: here.disk_info(src),
             lambda: there.disk_info(one.path('i', 'tiny.qcow2'))),
            ('write_atomic',
             lambda: here.write_atomic(os.path.join(work, 'x.xml'), '<x/>'),
             lambda: there.write_atomic(one.path('i', 'x.xml'), '<x/>'))):
        mine = per_call(local_call, count)
        shared = per_call(remote_call, count)
        CONF.set_override('ssh_control_persist', 0, group='remote')
        fresh = per_call(remote_call, max(3, count // 4))
        CONF.clear_override('ssh_control_persist', group='remote')
        print('    %-12s %10.2f %12.2f %14.2f' % (name, mine, shared, fresh))


def disk_copies(args, work, one, two):
    src_local = os.path.join(work, 'src.qcow2')
    disk_copy.build_source(src_local, args.size_gib, args.data_gib)
    data = disk_copy.data_bytes(src_local)
    here = files.for_host('here', work)
    a = files.for_host('a', one.path('i'), one.address)
    b = files.for_host('b', two.path('i'), two.address)
    for machine in (one, two):
        machine.run('mkdir -p %s' % machine.path('i'))
    src = one.path('i', 'src.qcow2')
    transfer.copy_disk(here, src_local, a, src)         # put it there
    hand_ssh = ' '.join(remote.q(x) for x in remote.ssh_argv(
        two.address, control=False)[:-1])

    def ours():
        b.rmtree(two.path('i', 'ours'))
        transfer.copy_disk(a, src, b, two.path('i', 'ours'))

    def by_hand():
        b.rmtree(two.path('i', 'hand'))
        subprocess.run(remote.ssh_argv(one.address) + ['--', ' '.join(
            remote.q(x) for x in [
                'rsync', '--sparse', '--fsync', '-e', hand_ssh, src,
                'root@127.0.0.1:' + two.path('i', 'hand')])], check=True)

    def local_copy():
        target = os.path.join(work, 'local.qcow2')
        if os.path.exists(target):
            os.unlink(target)
        sparsecopy.sparse_copy(src_local, target, 'here')

    runs = {'ours (rsync, source pushes)': ours,
            'rsync by hand, same path': by_hand,
            'local sparse_copy here': local_copy}
    times = {name: [] for name in runs}
    cold = None
    for _ in range(args.repeat):
        for name, func in runs.items():
            cold = disk_copy.drop_caches()
            started = time.monotonic()
            func()
            times[name].append(time.monotonic() - started)
    base = min(times['rsync by hand, same path'])
    print('disk copy between two machines, %.2f GiB of data in a %g GiB '
          'qcow2, %d runs each%s:' % (data / GiB, args.size_gib, args.repeat,
                                      '' if cold else ' (warm cache)'))
    for name, spent in times.items():
        print('    %-30s best %6.2f s  median %6.2f s  %7.1f MB/s  '
              '%5.2f x by hand' % (name, min(spent), statistics.median(spent),
                                   data / min(spent) / 1e6,
                                   min(spent) / base))

    # Stopped at half way, then run again.
    class Stop(Exception):
        pass

    def stop_at_half(fraction):
        if fraction >= 0.5:
            raise Stop()
    b.rmtree(two.path('i', 'cut'))
    CONF.set_override('rsync_options', ['--bwlimit=%d' % max(
        1, data // 1024 // 8)], group='remote')        # about 8 s
    try:
        transfer.copy_disk(a, src, b, two.path('i', 'cut'),
                           progress=stop_at_half)
    except Stop:
        pass
    CONF.clear_override('rsync_options', group='remote')
    time.sleep(1)            # the receiver saves its part as it sees us go
    stats = transfer.copy_disk(a, src, b, two.path('i', 'cut'))
    # copied: literal data the second run sent; reused: what it found in
    # the partial copy (rsync's Literal and Matched data).
    print('    stopped at half way, run again: it sent %.1f %% of the data '
          'and reused %.1f %% from the partial copy' % (
              100.0 * stats.copied / data, 100.0 * stats.reused / data))


def moves(work, one, two, count):
    with databases.throwaway('sqlite', work) as url:
        CONF.set_override('connection', url, group='database')
        CONF.set_override('state_dir', os.path.join(work, 'state'))
        CONF.set_override('local_hypervisor', 'test', group='libvirt')
        CONF.set_override('shutdown_timeout', 0, group='compute')
        virt.reset()
        migration.db_sync(url)
        ctx = api.get_admin_context()
        api.create_flavor(ctx, 'small', 1, 64, 1)
        for name in ('l1', 'l2'):
            api.create_host(ctx, name, 64, 65536, 400)
        for name, machine in (('r1', one), ('r2', two)):
            node = os.path.join(work, name + '.xml')
            with open(node, 'w') as handle:
                handle.write(local.NODE_XML % {'cpus': 16,
                                               'memory_kib': 32 * 1024 ** 2})
            machine.run('mkdir -p %s' % machine.path(name))
            api.create_host(ctx, name, 64, 65536, 400, uri='test://' + node,
                            instances_path=machine.path(name),
                            ssh=machine.address)
        print('migrate + confirm on the test driver (SQLite), %d each, s '
              'per operation:' % count)
        results = {}
        for label, pair in (('this machine', ('l1', 'l2')),
                            ('two other machines', ('r1', 'r2'))):
            vm = api.create_server(ctx, 'vm-' + pair[0], 'small', pair[0])
            spent = []
            for i in range(count + 1):
                started = time.perf_counter()
                api.migrate(ctx, vm['uuid'], host=pair[(i + 1) % 2],
                            wait=True)
                api.confirm_resize(ctx, vm['uuid'], wait=True)
                spent.append(time.perf_counter() - started)
            results[label] = statistics.median(spent[1:])
        base = results['this machine']
        for label, spent in results.items():
            print('    %-20s %6.3f s  %5.2f x this machine' % (
                label, spent, spent / base))
        virt.reset()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size-gib', type=float, default=2)
    parser.add_argument('--data-gib', type=float, default=1)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--calls', type=int, default=40)
    parser.add_argument('--moves', type=int, default=6)
    args = parser.parse_args()
    reason = test_machines.unavailable()
    if reason:
        print('remote_hosts.py cannot run here: %s' % reason)
        return 0
    rf_conf.register_opts(CONF)
    CONF([], project='resize-flows', default_config_files=[])
    print('hosts on other machines (loopback sshd), %s' % time.strftime(
        '%Y-%m-%d %H:%M UTC', time.gmtime()))
    keys = test_machines.Keys()
    work = tempfile.mkdtemp(prefix='rf-remote-bench-', dir='/var/tmp')
    one = two = None
    try:
        for name, value in keys.conf_overrides().items():
            CONF.set_override(name, value, group='remote')
        one = test_machines.Machine(keys, base='/var/tmp').start()
        two = test_machines.Machine(keys, base='/var/tmp').start()
        file_ops(work, one, args.calls)
        moves(work, one, two, args.moves)
        disk_copies(args, work, one, two)
    finally:
        for machine in (one, two):
            if machine is not None:
                machine.remove()
        keys.remove()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
