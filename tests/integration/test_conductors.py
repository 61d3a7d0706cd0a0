"""Two conductor processes on a Redis jobboard and real QEMU hosts.

The conductors are ``resize-flows conductor`` processes sharing the
session's QEMU hosts and database (``crash_cloud``); the test process
posts the operations. One conductor dies (``OS_TESTING__FAULTS=CopyDisk:
before-execute:crash``: the process exits at once, as under SIGKILL, in
the middle of its flow, as its disk copy starts); the other takes its job
over once the claim expires and finishes the flow from the flow log.
Without Redis the test skips (it fails where CI=true).
"""
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows.virt.libvirt import daemon
from tests.integration.conftest import domains_of
from tests.integration.conftest import IMAGE
from tests import redis_fixtures
from tests.unit.virt import imagehelp

pytestmark = pytest.mark.integration

CLAIM_EXPIRY = 4

_JOBBOARD_CONFIG = """\
[jobboard]
enabled = true
backend_url = {url}
board_name = {board}
claim_expiry = {expiry}
wait_poll_interval = 0.2
"""


@pytest.fixture
def board(crash_cloud, conf, tmp_path):
    """A jobboard of this test's own, on in this process too; the config
    file that gives it to the conductors."""
    redis_fixtures.require_redis()
    name = redis_fixtures.unique_board()
    path = os.path.join(crash_cloud.hosts.base, '%s.conf' % name)
    with open(path, 'w') as handle:
        handle.write(_JOBBOARD_CONFIG.format(
            url=redis_fixtures.URL, board=name, expiry=CLAIM_EXPIRY))
    conf.set_override('enabled', True, group='jobboard')
    conf.set_override('backend_url', redis_fixtures.URL, group='jobboard')
    conf.set_override('board_name', name, group='jobboard')
    conf.set_override('claim_expiry', CLAIM_EXPIRY, group='jobboard')
    conf.set_override('wait_poll_interval', 0.2, group='jobboard')
    jobboard.reset()
    try:
        yield path
    finally:
        jobboard.reset()
        redis_fixtures.delete_board(name)
        for opt in ('enabled', 'backend_url', 'board_name', 'claim_expiry',
                    'wait_poll_interval'):
            conf.clear_override(opt, group='jobboard')
        os.unlink(path)


def _conductor(crash_cloud, board, name, fault=None, extra=()):
    env = dict(os.environ)
    env.pop('OS_TESTING__FAULTS', None)
    env.pop(faults.SWITCH, None)
    if fault is not None:
        env['OS_TESTING__FAULTS'] = fault
        env[faults.SWITCH] = '1'
    log = open(os.path.join(crash_cloud.hosts.base, name + '.log'), 'w')
    return subprocess.Popen(
        [sys.executable, '-m', 'resize_flows.cmd.shell',
         '--config-file', crash_cloud.hosts.config_file,
         '--config-file', board]
        + [a for path in extra for a in ('--config-file', path)]
        + ['conductor', '--name', name],
        env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_telling(crash_cloud, op, timeout=300):
    """``op.wait(timeout)``; when it does not end, fail with the end of
    each conductor's log."""
    try:
        op.wait(timeout=timeout)
    except TimeoutError as exc:
        logs = []
        for name in ('ca', 'cb'):
            path = os.path.join(crash_cloud.hosts.base, name + '.log')
            with open(path, errors='replace') as handle:
                lines = [line for line in handle.read().splitlines()
                         if ' DEBUG ' not in line]
            logs.append('--- %s.log:\n%s' % (name, '\n'.join(lines[-40:])))
        raise AssertionError('%s\n%s' % (exc, '\n'.join(logs))) from None


def _wait_lost(crash_cloud, op):
    """Wait until conductor ca's log says it lost the flow of ``op``."""
    log = os.path.join(crash_cloud.hosts.base, 'ca.log')
    deadline = time.monotonic() + 60
    while 'lost flow %s' % op.flow_id not in open(log).read():
        assert time.monotonic() < deadline, open(log).read()[-3000:]
        time.sleep(0.2)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_a_killed_conductors_flow_is_finished_by_the_other(crash_cloud,
                                                           board):
    vms = [crash_cloud.server(host='host1'), crash_cloud.server(host='host2'),
           crash_cloud.server(host='host1')]
    ctx = crash_cloud.ctx
    ops = [api.resize(ctx, vms[0], 'bigger'), api.migrate(ctx, vms[1]),
           api.migrate(ctx, vms[2])]
    assert all(isinstance(op, api.PostedOperation) for op in ops)

    # ca dies as its first disk copy starts; cb starts once ca holds a job.
    ca = _conductor(crash_cloud, board, 'ca',
                    fault='CopyDisk:before-execute:crash')
    cb = None
    try:
        deadline = time.monotonic() + 120
        while not any((j['owner'] or '').startswith('ca:')
                      for j in jobboard.list_jobs()):
            assert ca.poll() is None, 'ca exited early: %s' % ca.returncode
            assert time.monotonic() < deadline, jobboard.list_jobs()
            time.sleep(0.1)
        cb = _conductor(crash_cloud, board, 'cb')
        assert ca.wait(180) == faults.CRASH_EXIT_CODE
        for op in ops:
            op.wait(timeout=300)
    finally:
        _stop(ca)
        cb_exit = _stop(cb) if cb is not None else None
    assert cb_exit == 0          # SIGTERM: a clean stop

    for op in ops:
        assert op.flow_state == tf_states.SUCCESS
        assert op.migration['status'] == states.MIGRATION_FINISHED
    assert state.leaks() == []
    # The flow log shows the takeover: exactly one flow was taken by ca,
    # then by cb (with a greater fencing token), and finished by cb.
    shown = [flowstatus.show_flow(op.flow_id) for op in ops]
    taken = [f for f in shown if len(f['holders']) > 1]
    assert len(taken) == 1, [f['holders'] for f in shown]
    holders = taken[0]['holders']
    assert [h['owner'].split(':')[0] for h in holders] == ['ca', 'cb']
    assert holders[1]['token'] > holders[0]['token']
    assert all(t['state'] == tf_states.SUCCESS for t in taken[0]['tasks'])
    for f in shown:
        if f is not taken[0]:
            assert [h['owner'].split(':')[0] for h in f['holders']] in (
                ['ca'], ['cb'])

    # Confirm every move in this process (jobboard off): one guest each.
    jobboard.CONF.set_override('enabled', False, group='jobboard')
    for vm in vms:
        api.confirm_resize(ctx, vm, wait=True)
        inst = repository.instance_get(vm)
        assert list(domains_of(vm)) == [inst['host']]
    assert state.leaks() == []


@contextlib.contextmanager
def _sqlite_write_lock(url):
    """Hold the write lock of the SQLite database at ``url``."""
    conn = sqlite3.connect(sa.engine.make_url(url).database,
                           isolation_level=None, timeout=120)
    try:
        conn.execute('BEGIN IMMEDIATE')
        yield
        conn.execute('ROLLBACK')
    finally:
        conn.close()


def test_a_stalled_conductor_process_is_fenced(crash_cloud, board):
    """ca is stopped (SIGSTOP) while it runs a flow: it is alive, but its
    claim and its lease run out. cb takes the flow over and finishes it.
    When ca goes on (SIGCONT), its next write of the flow is refused and
    it gives the flow up. No task ran twice, except the one that was
    running at the takeover, which cb ran again from its start. Nothing
    was undone."""
    vm = crash_cloud.server(host='host1')
    op = api.resize(crash_cloud.ctx, vm, 'bigger')
    ca = _conductor(crash_cloud, board, 'ca')
    cb = None
    try:
        deadline = time.monotonic() + 120
        while True:
            flows = flowstatus.list_flows(server=vm, operation='resize')
            if flows and (flows[0]['owner'] or '').startswith('ca:') and \
                    flows[0]['state'] == tf_states.RUNNING:
                break
            assert time.monotonic() < deadline, flows
            time.sleep(0.05)
        # Stopped while it holds SQLite's write lock, ca would hold up
        # every writer, cb too, until it goes on: SQLite cannot do
        # better. Stop it while this process holds the lock, so that it is
        # in no write transaction. (Before reads stopped taking the write
        # lock, the poll above happened to ensure that.)
        with _sqlite_write_lock(crash_cloud.hosts.connection):
            ca.send_signal(signal.SIGSTOP)
        cb = _conductor(crash_cloud, board, 'cb')
        _wait_telling(crash_cloud, op)
        ca.send_signal(signal.SIGCONT)
        _wait_lost(crash_cloud, op)
        assert ca.poll() is None        # alive, claiming other jobs
    finally:
        ca.send_signal(signal.SIGCONT)
        ca_exit = _stop(ca)
        cb_exit = _stop(cb) if cb is not None else None
    assert (ca_exit, cb_exit) == (0, 0)

    assert op.flow_state == tf_states.SUCCESS
    flow = flowstatus.show_flow(op.flow_id)
    assert [h['owner'].split(':')[0] for h in flow['holders']] == ['ca', 'cb']
    assert all(t['state'] == tf_states.SUCCESS for t in flow['tasks'])
    action = [a for a in instance_actions.action_list(vm)
              if a['request_id'] == op.request_id][0]
    started = [e['event'] for e in action['events']]
    assert not [e for e in started if e.startswith('revert ')], started
    twice = {e for e in started if started.count(e) > 1}
    assert len(twice) <= 1 and all(started.count(e) == 2 for e in twice), \
        started
    assert state.leaks() == []
    jobboard.CONF.set_override('enabled', False, group='jobboard')
    api.confirm_resize(crash_cloud.ctx, vm, wait=True)
    assert list(domains_of(vm)) == [repository.instance_get(vm)['host']]
    assert state.leaks() == []


#: The stall time of the conductors of the test below: a fetch whose lock
#: went this long without a beat is passed by.
_STALL_CONFIG = """\
[flows]
copy_stall_timeout = 10
"""


def test_a_conductor_stalled_in_an_image_fetch_is_passed_by(
        crash_cloud, board):
    """ca stops (SIGSTOP, at the fault window fetch-locked) while it
    fetches the image base onto the destination, holding that base's
    fetch lock there. cb takes the flow over; its fetch waits for the
    lock only until the lock file went copy_stall_timeout without a beat
    of its holder (not [image_cache]/fetch_lock_timeout, 600 s), fetches
    the base under a name of its own and finishes the move. When ca goes
    on, it loses the flow."""
    dest_base = os.path.join(daemon.hosts_dir(), 'host2', 'instances',
                             '_base')
    image = api.get_image(crash_cloud.ctx, IMAGE)
    base = os.path.join(dest_base, image['sha256'])
    if os.path.exists(base):
        os.unlink(base)     # no server uses it: each test deletes its own
    stall = os.path.join(crash_cloud.hosts.base, 'stall.conf')
    with open(stall, 'w') as handle:
        handle.write(_STALL_CONFIG)
    vm = crash_cloud.server(host='host1')
    op = api.resize(crash_cloud.ctx, vm, 'bigger')
    ca = _conductor(crash_cloud, board, 'ca', fault='fetch-locked:window:stop',
                    extra=[stall])
    cb = None
    try:
        deadline = time.monotonic() + 120
        while _proc_state(ca.pid) != 'T':
            assert ca.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        cb = _conductor(crash_cloud, board, 'cb', extra=[stall])
        _wait_telling(crash_cloud, op)
        ca.send_signal(signal.SIGCONT)
        _wait_lost(crash_cloud, op)
    finally:
        ca.send_signal(signal.SIGCONT)
        ca_exit = _stop(ca)
        cb_exit = _stop(cb) if cb is not None else None
        os.unlink(stall)
    assert (ca_exit, cb_exit) == (0, 0)
    cb_log = open(os.path.join(crash_cloud.hosts.base, 'cb.log')).read()
    assert 'has not moved for 10 seconds' in cb_log, cb_log[-3000:]

    assert op.flow_state == tf_states.SUCCESS
    flow = flowstatus.show_flow(op.flow_id)
    assert [h['owner'].split(':')[0] for h in flow['holders']] == ['ca', 'cb']
    assert imagehelp.sha256(base) == image['sha256']
    jobboard.CONF.set_override('enabled', False, group='jobboard')
    api.confirm_resize(crash_cloud.ctx, vm, wait=True)
    assert list(domains_of(vm)) == ['host2']
    assert state.leaks() == []


def _proc_state(pid):
    """The state letter of process ``pid`` (T: stopped)."""
    with open('/proc/%d/stat' % pid) as handle:
        return handle.read().rsplit(')', 1)[-1].split()[0]
