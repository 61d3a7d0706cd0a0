"""Operations benchmark: resize + confirm on libvirt's test driver.

Sets up a small cloud (four test-driver hosts, two flavors, ``--servers``
servers) with the flow log on SQLite (and on PostgreSQL when reachable),
then resizes each server to the other flavor and confirms, round after
round, through the embedding API as a controller would. Reports
operations per second (one operation = a resize and its confirm: two
flows, 13 tasks) and the share of the wall time spent inside the flow log
(every call of its backend, timed).

    .venv/bin/python benchmarks/resize_ops.py [--servers 4 --rounds 10]

Timings are figures to compare within one run, never test assertions.
"""
import argparse
import collections
import contextlib
import functools
import sys
import tempfile
import time

from resize_flows import api
from resize_flows import conf as rf_conf
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration
from resize_flows.testing import databases
from resize_flows import virt

CONF = rf_conf.CONF

# Time spent inside the flow log backend's calls, per method.
SPENT = collections.Counter()
CALLS = collections.Counter()


def _timed(name, method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            result = method(*args, **kwargs)
            if hasattr(result, '__next__'):
                result = list(result)
            return result
        finally:
            SPENT[name] += time.perf_counter() - started
            CALLS[name] += 1
    return wrapper


def instrument():
    for name in ('update_atom_details', 'update_flow_details',
                 'save_logbook', 'destroy_logbook', 'get_logbook',
                 'get_flow_details', 'get_atoms_for_flow', 'find_flow'):
        method = getattr(flowlog.Connection, name)
        setattr(flowlog.Connection, name, _timed(name, method))


def run(label, url, state_dir, servers, rounds):
    CONF.set_override('connection', url, group='database')
    CONF.set_override('state_dir', state_dir)
    virt.reset()
    migration.db_sync(url)
    ctx = api.get_admin_context()
    for i in range(4):
        api.create_host(ctx, 'host%d' % i, 64, 65536, 400)
    api.create_flavor(ctx, 'small', 1, 64, 1)
    api.create_flavor(ctx, 'big', 2, 128, 1)  # same disk: resizes both ways
    names = ['vm%d' % i for i in range(servers)]
    for i, name in enumerate(names):
        api.create_server(ctx, name, 'small', 'host%d' % (i % 4))
    flavor = {name: 'small' for name in names}

    def one_round():
        for name in names:
            new = 'big' if flavor[name] == 'small' else 'small'
            api.resize(api.get_admin_context(), name, new, wait=True)
            api.confirm_resize(api.get_admin_context(), name, wait=True)
            flavor[name] = new

    one_round()                                        # warm up
    SPENT.clear()
    CALLS.clear()
    started = time.perf_counter()
    for _ in range(rounds):
        one_round()
    wall = time.perf_counter() - started
    ops = rounds * servers
    in_log = sum(SPENT.values())
    print('%-12s %5d ops in %6.2f s: %6.2f ops/s, %6.1f ms per op; '
          'flow log %5.1f %% of the time (%.1f ms per op, %d calls per op)'
          % (label, ops, wall, ops / wall, wall / ops * 1e3,
             100.0 * in_log / wall, in_log / ops * 1e3,
             sum(CALLS.values()) / ops))
    for name, spent in SPENT.most_common():
        print('    %-22s %6d calls %8.3f ms each' % (
            name, CALLS[name], spent / CALLS[name] * 1e3))
    virt.reset()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--servers', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=10)
    args = parser.parse_args()
    rf_conf.register_opts(CONF)
    CONF([], project='resize-flows', default_config_files=[])
    CONF.set_override('local_hypervisor', 'test', group='libvirt')
    CONF.set_override('shutdown_timeout', 0, group='compute')
    instrument()
    print('resize + confirm on the libvirt test driver, %d servers x %d '
          'rounds, %s' % (args.servers, args.rounds,
                          time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())))
    with tempfile.TemporaryDirectory(prefix='rf-ops-', dir='/var/tmp') as tmp:
        for backend, label in (('sqlite', 'SQLite'),
                               ('postgresql', 'PostgreSQL')):
            try:
                with databases.throwaway(backend, tmp) as url:
                    run(label, url, '%s/%s' % (tmp, backend), args.servers,
                        args.rounds)
            except databases.DatabaseUnavailable as exc:
                print('(%s left out: %s)' % (label, exc))


if __name__ == '__main__':
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
