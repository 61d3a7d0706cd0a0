"""Flow list / flow show benchmark: 100 stored flows against 100,000.

Fills a flow log with ``--small`` flows, times ``flow list`` (the default
first page of 50, filtered by server, by operation, by status, a rare
status, a page after a marker: the second page, then one in the middle
of the history) and ``flow show``, then grows the log
to ``--large`` flows and times the same queries again. Flows are written
straight into the tables in bulk (9 tasks each, as a resize flow has),
with resize-flows' meta so that ``flow show`` rebuilds them as it would a
real one. The newest ``--small`` flows hold the cloud's current activity
(four running with live leases, two interrupted, two stuck, the rest
ended); the history added before them has ended (94 % finished, 6 %
rolled back), since the number of flows under way follows the cloud's
activity, not the age of its log. Each figure is the median of
``--repeat`` runs, in the same process, on SQLite and (when reachable)
PostgreSQL.

    .venv/bin/python benchmarks/flow_list.py [--small 100 --large 100000]

Timings are figures to compare within one run, never test assertions.
"""
import argparse
import datetime
import json
import random
import statistics
import sys
import tempfile
import time
import uuid

from resize_flows import api
from resize_flows import conf as rf_conf
from resize_flows import flows as rf_flows
from resize_flows import flowstatus
from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration
from resize_flows.persistence import models
from resize_flows.testing import databases

CONF = rf_conf.CONF
TASKS = ('BeginMigration', 'SelectDestination', 'ClaimResources',
         'PowerOffSource', 'MoveSourceToResize', 'PrepareDestination',
         'CopyDisk', 'FinishMigration', 'MarkMigrationFinished')
#: Ended flows: what a flow log accumulates.
ENDED = ['SUCCESS'] * 94 + ['REVERTED'] * 6
#: Flows under way or needing an operator: as many at 100 stored flows as
#: at 100,000 (they follow the cloud's activity, not its history).
CURRENT = ['RUNNING'] * 4 + ['RUNNING'] * 2 + ['FAILURE'] * 2
BATCH = 5000


def fill(url, numbers, servers, rng, base_time, current=()):
    """Store flows created ``n`` seconds after ``base_time`` for each n in
    ``numbers``, ended ones; the first of them get the states of
    ``current`` (four RUNNING ones get a live lease)."""
    numbers = list(numbers)
    eng = db.get_engine(url)
    factory = {'name': rf_flows.OPERATIONS['resize'].factory, 'args': [],
               'kwargs': rf_flows.OPERATIONS['resize'].factory_kwargs}
    current = list(current)
    leased = 4
    for first in range(0, len(numbers), BATCH):
        books, flows, atoms, leases = [], [], [], []
        for n in numbers[first:first + BATCH]:
            created = base_time + datetime.timedelta(seconds=n)
            flow_id, book_id = str(uuid.uuid4()), str(uuid.uuid4())
            server = 'vm-%05d' % rng.randrange(servers)
            operation = rng.choice(('resize', 'migrate', 'confirm_resize',
                                    'revert_resize'))
            state = current.pop() if current else rng.choice(ENDED)
            meta = {'factory': factory, 'operation': operation,
                    'instance_uuid': server,
                    'migration_uuid': str(uuid.uuid4()),
                    'request_id': 'req-%d' % n}
            books.append({'uuid': book_id, 'name': 'resize-' + server,
                          'meta': '{}', 'created_at': created})
            flows.append({'uuid': flow_id, 'logbook_uuid': book_id,
                          'name': 'resize', 'state': state,
                          'meta': json.dumps(meta), 'operation': operation,
                          'instance_uuid': server,
                          'migration_uuid': meta['migration_uuid'],
                          'created_at': created, 'updated_at': created})
            for name in TASKS:
                atoms.append({
                    'uuid': str(uuid.uuid4()), 'flow_uuid': flow_id,
                    'name': name, 'atom_type': 'TASK_DETAIL',
                    'version': '1.0', 'intention': 'EXECUTE',
                    'state': 'SUCCESS' if state == 'SUCCESS' else 'PENDING',
                    'results': json.dumps({'host': 'host1'}),
                    'meta': '{}', 'created_at': created})
            if state == 'RUNNING' and leased:
                leased -= 1
                leases.append({'flow_id': flow_id, 'owner': 'bench',
                               'acquired_at': created,
                               'expires_at': datetime.datetime(2100, 1, 1)})
        with eng.begin() as conn:
            conn.execute(flowlog.BOOKS.insert(), books)
            conn.execute(flowlog.FLOWS.insert(), flows)
            conn.execute(flowlog.ATOMS.insert(), atoms)
            if leases:
                conn.execute(models.FlowLease.__table__.insert(), leases)


def median_ms(func, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def measure(repeat, server, shown, deep_marker):
    ctx = api.get_admin_context()
    return {
        'list (first page)': median_ms(
            lambda: api.list_flows(ctx, limit=50), repeat),
        'list --server': median_ms(
            lambda: api.list_flows(ctx, server=server, limit=50), repeat),
        'list --operation': median_ms(
            lambda: api.list_flows(ctx, operation='migrate', limit=50),
            repeat),
        'list --state finished': median_ms(
            lambda: api.list_flows(ctx, state='finished', limit=50), repeat),
        'list --state running': median_ms(
            lambda: api.list_flows(ctx, state='running', limit=50), repeat),
        'list --state stuck': median_ms(
            lambda: api.list_flows(ctx, state='stuck', limit=50), repeat),
        'list --marker': median_ms(
            lambda: api.list_flows(ctx, marker=deep_marker, limit=50),
            repeat),
        'show': median_ms(lambda: api.show_flow(ctx, shown), repeat),
    }


def newest(count):
    return [f['flow_id'] for f in flowstatus.list_flows(limit=count)]


def run(label, url, small, large, repeat):
    CONF.set_override('connection', url, group='database')
    migration.db_sync(url)
    rng = random.Random(42)
    base_time = datetime.datetime(2026, 1, 1)
    servers = max(10, large // 10)
    fill(url, range(small), servers, rng, base_time, current=CURRENT)
    pick = newest(small)
    server = flowstatus.list_flows(marker=pick[0],
                                   limit=1)[0]['instance_uuid']
    # --marker: the second page (a full one) here, the middle one later.
    small_figures = measure(repeat, server, pick[len(pick) // 2], pick[49])
    # The history before them: older flows, all ended.
    started = time.perf_counter()
    fill(url, range(small - large, 0), servers, rng, base_time)
    filled = time.perf_counter() - started
    # As a DBA would after a bulk load (and autovacuum would soon): fresh
    # statistics, and no vacuum running while the queries are timed.
    with db.get_engine(url).connect().execution_options(
            isolation_level='AUTOCOMMIT') as conn:
        conn.exec_driver_sql('VACUUM ANALYZE' if url.startswith('postgresql')
                             else 'ANALYZE')
    # The same flow shown, a marker as deep in as the small log's last.
    deep = flowstatus.list_flows(limit=large // 2)[-1]['flow_id']
    large_figures = measure(repeat, server, pick[len(pick) // 2], deep)
    print('\n%s (filled %d more flows in %.0f s)' % (label, large - small,
                                                     filled))
    print('%-24s %12s %12s %8s' % ('query', '%d ms' % small,
                                   '%d ms' % large, 'ratio'))
    for key in small_figures:
        print('%-24s %12.2f %12.2f %8.2f' % (
            key, small_figures[key], large_figures[key],
            large_figures[key] / small_figures[key]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--small', type=int, default=100)
    parser.add_argument('--large', type=int, default=100000)
    parser.add_argument('--repeat', type=int, default=21)
    args = parser.parse_args()
    rf_conf.register_opts(CONF)
    CONF([], project='resize-flows', default_config_files=[])
    print('flow list / flow show at %d and %d stored flows, %s' % (
        args.small, args.large,
        time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())))
    with tempfile.TemporaryDirectory(prefix='rf-list-', dir='/var/tmp') as tmp:
        for backend, label in (('sqlite', 'SQLite'),
                               ('postgresql', 'PostgreSQL')):
            try:
                with databases.throwaway(backend, tmp) as url:
                    run(label, url, args.small, args.large, args.repeat)
            except databases.DatabaseUnavailable as exc:
                print('(%s left out: %s)' % (label, exc))


if __name__ == '__main__':
    sys.exit(main())
