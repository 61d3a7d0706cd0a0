"""Two conductor processes on a Redis jobboard and real QEMU hosts.

The conductors are ``resize-flows conductor`` processes sharing the
session's QEMU hosts and database (``crash_cloud``); the test process
posts the operations. One conductor dies (``OS_TESTING__FAULTS=CopyDisk:
before-execute:crash``: the process exits at once, as under SIGKILL, in
the middle of its flow, as its disk copy starts); the other takes its job
over once the claim expires and finishes the flow from the flow log.
Without Redis the test skips (it fails where CI=true).
"""
import os
import signal
import subprocess
import sys
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import engine
from resize_flows import jobboard
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests import redis_fixtures

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


def _conductor(crash_cloud, board, name, fault=None):
    env = dict(os.environ)
    env.pop('OS_TESTING__FAULTS', None)
    if fault is not None:
        env['OS_TESTING__FAULTS'] = fault
    log = open(os.path.join(crash_cloud.hosts.base, name + '.log'), 'w')
    return subprocess.Popen(
        [sys.executable, '-m', 'resize_flows.cmd.cli',
         '--config-file', crash_cloud.hosts.config_file,
         '--config-file', board, 'conductor', '--name', name],
        env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _domains(vm):
    out = {}
    for host in repository.host_list():
        drv = virt.get_driver(host)
        if drv.instance_exists(vm):
            out[host['name']] = drv.get_info(vm)
    return out


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
    shown = [engine.show_flow(op.flow_id) for op in ops]
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
        assert list(_domains(vm)) == [inst['host']]
    assert state.leaks() == []
