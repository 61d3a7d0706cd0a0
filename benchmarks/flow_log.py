"""Flow log benchmark: what persisting a flow costs per task.

Runs the same linear flow of ``--tasks`` small tasks (each returns a small
dict, as resize-flows' tasks do) through TaskFlow's serial engine with, side
by side in one run:

- TaskFlow's in-memory backend (the baseline: no persistence at all);
- our flow log (``resize_flows.persistence.flowlog``) on SQLite and on
  PostgreSQL (and MariaDB when reachable);
- TaskFlow's stock SQLAlchemy backend on the same databases.

Every flow is stored as resize-flows stores one (a logbook of its own, a
flow detail with meta), loaded into an engine and run. Rounds interleave
the backends so that the machine's noise hits them alike; the figure is
the median over rounds of the time per task, and the ratio to the memory
backend. Before that, ``--memory-flows`` flows run on our flow log
(SQLite) with the process's resident memory read at the start and at the
end. "async" is PostgreSQL with ``[flows]/log_synchronous_commit = false``.

    .venv/bin/python benchmarks/flow_log.py [--flows 20 --rounds 5]

Timings are figures to compare within one run, never test assertions.
"""
import argparse
import contextlib
import gc
import platform
import statistics
import sys
import tempfile
import time
import uuid

import sqlalchemy
import taskflow
from taskflow import engines
from taskflow.patterns import linear_flow
from taskflow.persistence.backends import impl_memory
from taskflow.persistence.backends import impl_sqlalchemy
from taskflow.persistence import models
from taskflow import task

from resize_flows import conf as rf_conf
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration
from resize_flows.testing import databases


class Step(task.Task):
    def execute(self):
        return {'step': self.name, 'host': 'host1', 'size': 1073741824}


def make_flow(tasks):
    return linear_flow.Flow('bench').add(
        *[Step('step-%02d' % i) for i in range(tasks)])


def run_flows(backend, flows, tasks):
    """Seconds to store and run ``flows`` flows on ``backend``."""
    started = time.perf_counter()
    for _ in range(flows):
        book = models.LogBook('bench')
        fd = models.FlowDetail('bench', str(uuid.uuid4()))
        fd.meta = {'operation': 'resize', 'instance_uuid': str(uuid.uuid4()),
                   'migration_uuid': str(uuid.uuid4())}
        book.add(fd)
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(book)
        engine = engines.load(make_flow(tasks), flow_detail=fd, book=book,
                              backend=backend, engine='serial')
        engine.run()
    return time.perf_counter() - started


def rss_mib():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def stock_backend(url):
    backend = impl_sqlalchemy.SQLAlchemyBackend({'connection': url})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    return backend


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tasks', type=int, default=10)
    parser.add_argument('--flows', type=int, default=20,
                        help='flows per backend per round')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--memory-flows', type=int, default=1000)
    parser.add_argument('--no-stock', action='store_true',
                        help='leave out TaskFlow\'s stock SQL backend')
    args = parser.parse_args()
    rf_conf.register_opts(rf_conf.CONF)
    rf_conf.CONF([], project='resize-flows', default_config_files=[])

    print('Flow log benchmark, %s' % time.strftime('%Y-%m-%d %H:%M UTC',
                                                   time.gmtime()))
    print('Python %s, taskflow %s, SQLAlchemy %s, %s' % (
        platform.python_version(), _version(taskflow), sqlalchemy.__version__,
        platform.platform()))
    print('%d tasks per flow, %d flows per backend per round, %d rounds' % (
        args.tasks, args.flows, args.rounds))

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(
            prefix='rf-bench-', dir='/var/tmp'))
        backends = [('memory', impl_memory.MemoryBackend({}))]
        for db_backend, label in (('sqlite', 'SQLite'),
                                  ('postgresql', 'PostgreSQL'),
                                  ('mysql', 'MariaDB')):
            try:
                ours_url = stack.enter_context(
                    databases.throwaway(db_backend, tmp))
                migration.db_sync(ours_url)
                backends.append(('ours, ' + label,
                                 flowlog.FlowLogBackend(
                                     {'connection': ours_url})))
                if db_backend == 'postgresql':
                    backends.append(('ours, %s, async' % label,
                                     flowlog.FlowLogBackend(
                                         {'connection': ours_url,
                                          'synchronous_commit': False})))
                if not args.no_stock:
                    stock_url = stack.enter_context(
                        databases.throwaway(db_backend, tmp))
                    backends.append(('stock, ' + label,
                                     stock_backend(stock_url)))
            except databases.DatabaseUnavailable as exc:
                print('(%s left out: %s)' % (label, exc))

        if args.memory_flows:
            # First, before the other backends have run in this process.
            ours = dict(backends).get('ours, SQLite')
            gc.collect()
            start = rss_mib()
            run_flows(ours, 20, args.tasks)
            gc.collect()
            warm = rss_mib()
            blocks_before = sys.getallocatedblocks()
            seconds = run_flows(ours, args.memory_flows, args.tasks)
            gc.collect()
            blocks_after = sys.getallocatedblocks()
            end = rss_mib()
            print('memory over %d flows on our flow log (SQLite):' %
                  args.memory_flows)
            print('  resident: %.1f MiB at the start, %.1f MiB after 20 '
                  'flows, %.1f MiB at the end (%+.1f KiB per flow: SQLite\'s '
                  'page cache and the allocator, both capped)' % (
                      start, warm, end,
                      (end - warm) * 1024 / args.memory_flows))
            print('  Python objects (allocated blocks): %d before, %d after '
                  '(%+.2f per flow; %.1f s)' % (
                      blocks_before, blocks_after,
                      (blocks_after - blocks_before) / args.memory_flows,
                      seconds))
            print()

        per_task = {name: [] for name, _ in backends}
        for name, backend in backends:             # warm up
            run_flows(backend, 2, args.tasks)
        for _round in range(args.rounds):
            for name, backend in backends:
                seconds = run_flows(backend, args.flows, args.tasks)
                per_task[name].append(seconds / (args.flows * args.tasks))

        base = statistics.median(per_task['memory'])
        print()
        print('%-22s %12s %12s %10s' % ('backend', 'ms/task med',
                                        'ms/task best', 'x memory'))
        for name, _backend in backends:
            med = statistics.median(per_task[name])
            print('%-22s %12.3f %12.3f %10.2f' % (
                name, med * 1e3, min(per_task[name]) * 1e3, med / base))


def _version(module):
    try:
        from importlib import metadata
        return metadata.version(module.__name__)
    except Exception:
        return '?'


if __name__ == '__main__':
    sys.exit(main())
