"""Conductors benchmark: one conductor against two, and one running two
jobs at once, on the same batch.

Sets up two real local QEMU hosts (as the crash matrix does: one libvirt
session daemon each, a SQLite database) and ``--servers`` servers, then
for one and for two ``resize-flows conductor`` processes on a Redis
jobboard (a board of its own per run) posts a batch of operations, a cold
migration of every server and then its confirm, and times the batch from
the first post to the last flow's end. Reports operations per second (one
operation = one flow) and the ratios of two conductors, and of one
conductor with ``--simultaneous-jobs 2``, to one conductor running one
job at a time.

    .venv/bin/python benchmarks/conductors.py [--servers 4 --rounds 2]

Needs QEMU, libvirtd and Redis at 127.0.0.1:6379. Timings are figures to
compare within one run, never test assertions.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from resize_flows import api  # noqa: E402
from resize_flows import conf as rf_conf  # noqa: E402
from resize_flows import jobboard  # noqa: E402
from resize_flows import virt  # noqa: E402
from tests.integration import conftest as integration  # noqa: E402

CONF = rf_conf.CONF
REDIS = 'redis://127.0.0.1:6379'


def _board_config(base, board):
    path = os.path.join(base, board + '.conf')
    with open(path, 'w') as handle:
        handle.write('[jobboard]\nenabled = true\nbackend_url = %s\n'
                     'board_name = %s\nclaim_expiry = 10\n'
                     'wait_poll_interval = 0.1\n' % (REDIS, board))
    return path


def _conductors(hosts, board_conf, count, jobs):
    procs = []
    for i in range(count):
        log = open(os.path.join(hosts.base, 'conductor-%d.log' % i), 'a')
        procs.append(subprocess.Popen(
            [sys.executable, '-m', 'resize_flows.cmd.shell',
             '--config-file', hosts.config_file, '--config-file',
             board_conf, 'conductor', '--name', 'bench%d' % i,
             '--simultaneous-jobs', str(jobs)],
            stdout=log, stderr=subprocess.STDOUT))
    return procs


def _batch(servers):
    """Post a migration of every server, wait; then their confirms."""
    ctx = api.get_admin_context()
    flows = 0
    for call in (api.migrate, api.confirm_resize):
        ops = [call(ctx, vm) for vm in servers]
        for op in ops:
            op.wait(timeout=600)
        flows += len(ops)
    return flows


def run(hosts, servers, count, jobs, rounds):
    board = 'rf-bench-' + uuidlib.uuid4().hex[:8]
    board_conf = _board_config(hosts.base, board)
    CONF(['--config-file', hosts.config_file, '--config-file', board_conf],
         project='resize-flows')
    jobboard.reset()
    virt.reset()
    procs = _conductors(hosts, board_conf, count, jobs)
    try:
        _batch(servers[:1])          # warm up: both daemons, the board
        started = time.perf_counter()
        flows = 0
        for _ in range(rounds):
            flows += _batch(servers)
        took = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(120)
        jobboard.reset()
    return flows / took, flows, took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--servers', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args()
    rf_conf.register_opts(CONF)
    base = tempfile.mkdtemp(prefix='rf-bench-', dir='/tmp')
    os.chmod(base, 0o755)
    hosts = integration.SharedQemuHosts(base)
    try:
        hosts.setup()
        CONF(['--config-file', hosts.config_file], project='resize-flows')
        ctx = api.get_admin_context()
        servers = [api.create_server(ctx, 'b%d' % i, 'tiny',
                                     'host%d' % (i % 2 + 1))['uuid']
                   for i in range(args.servers)]
        results = {}
        setups = ((1, 1), (2, 1), (1, 2))
        for count, jobs in setups * 2:
            rate, flows, took = run(hosts, servers, count, jobs,
                                    args.rounds)
            results.setdefault((count, jobs), []).append(rate)
            print('%d conductor(s) x %d job(s) at once: %d flows in %.1f s: '
                  '%.2f flows/s' % (count, jobs, flows, took, rate),
                  flush=True)
        one = max(results[(1, 1)])
        for count, jobs in setups[1:]:
            best = max(results[(count, jobs)])
            print('best: %d conductor(s) x %d job(s) %.2f flows/s against '
                  'one x one %.2f flows/s: ratio %.2f'
                  % (count, jobs, best, one, best / one))
    finally:
        virt.reset()
        hosts.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    main()
