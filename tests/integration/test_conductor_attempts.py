"""Attempt caps with real conductor processes on real QEMU hosts.

``[jobboard]/max_attempts`` = 2. Conductors ca and cb each die
(``OS_TESTING__FAULTS=CopyDisk:before-execute:crash``: the process exits
at once, as under SIGKILL) holding the same job, one after the other; a
third conductor, cc, finds both attempts spent and trashes the job
without running anything. The flow is stuck with the reason; an operator
resumes it and it finishes. (tests/functional/test_job_attempts.py: a
fault in every conductor, the cap not reached, rollback.)
"""
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows.persistence import attempts
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from tests.integration.conftest import domains_of
from tests.integration.test_conductors import _conductor
from tests.integration.test_conductors import _stop
from tests.integration.test_conductors import board  # noqa: F401
from tests.integration.conftest import full_crash_run
from tests import redis_fixtures

# Real conductor processes killed: with the crash matrix (make
# crash-matrix, as CI runs it); tests/functional/test_job_attempts.py
# covers the caps in make test.
pytestmark = [pytest.mark.integration, pytest.mark.crash_matrix]


@pytest.fixture(autouse=True)
def _with_the_crash_matrix(request):
    if not full_crash_run(request.config):
        pytest.skip('conductors killed: runs with -m crash_matrix or '
                    'RESIZE_FLOWS_CRASH_MATRIX=full')


CRASH = 'CopyDisk:before-execute:crash'


def _until(condition, what, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)


def _trash():
    """The keys in the board's trash hash, read from Redis."""
    client = redis_fixtures._client()
    return list(client.hkeys(jobboard.get_board().trash_key))


def test_a_job_whose_conductors_die_is_given_up_after_max_attempts(
        crash_cloud, board, conf):
    with open(board, 'a') as handle:
        handle.write('max_attempts = 2\n')
    conf.set_override('max_attempts', 2, group='jobboard')
    vm = crash_cloud.server(host='host1')
    op = api.resize(crash_cloud.ctx, vm, 'bigger')
    job = jobboard.list_jobs()[0]['job']
    procs = []
    try:
        for name in ('ca', 'cb'):
            proc = _conductor(crash_cloud, board, name, fault=CRASH)
            procs.append(proc)
            assert proc.wait(240) == faults.CRASH_EXIT_CODE
            row = attempts.get(op.flow_id)
            assert (row['owner'].split(':')[0], row['running']) == (
                name, True)
        assert attempts.get(op.flow_id)['attempts'] == 2
        cc = _conductor(crash_cloud, board, 'cc')
        procs.append(cc)
        row = _until(
            lambda: (attempts.get(op.flow_id) or {}).get('gave_up_at')
            and attempts.get(op.flow_id),
            lambda: attempts.get(op.flow_id))
        assert row['reason'].startswith(
            'gave up after 2 attempts: conductor cb:')
        assert row['reason'].endswith('stopped while holding the job')
        assert row['attempts'] == 2
        # Out of the listings, into TaskFlow's trash; cc ran nothing.
        jobs = _until(lambda: [j for j in jobboard.list_jobs()
                               if j['state'] == jobboard.TRASHED],
                      lambda: jobboard.list_jobs())
        assert [(j['job'], j['attempts']) for j in jobs] == [(job, 2)]
        assert len(jobboard.list_jobs()) == 1
        assert len(_trash()) == 1
        assert cc.poll() is None
    finally:
        exits = [_stop(p) for p in procs]
    assert exits == [faults.CRASH_EXIT_CODE, faults.CRASH_EXIT_CODE, 0]

    # Stuck with the reason, once cb's lease has run out.
    flow = _until(
        lambda: (lambda f: f['status'] == flowstatus.STUCK and f)(
            flowstatus.show_flow(op.flow_id)),
        lambda: flowstatus.show_flow(op.flow_id)['status'])
    assert flow['reason'] == row['reason']
    assert [h['owner'].split(':')[0] for h in flow['holders']] == [
        'ca', 'cb']
    assert repository.migration_list(vm)[0]['status'] != \
        states.MIGRATION_FINISHED

    # An operator resumes it (in this process, the jobboard off).
    conf.set_override('enabled', False, group='jobboard')
    result = api.resume_flow(crash_cloud.ctx, op.flow_id)
    assert result['flow_state'] == tf_states.SUCCESS
    assert flowstatus.show_flow(op.flow_id)['status'] == flowstatus.FINISHED
    assert repository.migration_list(vm)[0]['status'] == \
        states.MIGRATION_FINISHED
    assert state.leaks() == []
    api.confirm_resize(crash_cloud.ctx, vm, wait=True)
    assert list(domains_of(vm)) == [repository.instance_get(vm)['host']]
    assert state.leaks() == []
