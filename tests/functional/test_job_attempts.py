"""Attempt caps for jobs: ``[jobboard]/max_attempts``.

Conductors are threads of the test process on a Redis board of the test's
own (see test_jobboard.py); the fault is in every conductor: the run of
the job's flow raises before any task runs, as a conductor that cannot
reach a host or the database would, leaving the flow unfinished and the
job given back. tests/integration/test_conductors.py kills real
conductor processes holding the job instead.
"""
import io
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows.cmd import shell
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows.persistence import attempts
from resize_flows.persistence import repository
from resize_flows import recovery
from resize_flows import states
from resize_flows.testing import state
from tests.functional.test_jobboard import conductors  # noqa: F401
from tests.redis_fixtures import jobboard_conf  # noqa: F401 (a fixture)


@pytest.fixture
def max_attempts(conf):
    conf.set_override('max_attempts', 2, group='jobboard')
    yield 2
    conf.clear_override('max_attempts', group='jobboard')


@pytest.fixture
def failing_run(monkeypatch):
    """Every conductor's run of a job's flow raises, the first
    ``failing['times']`` times (all of them by default)."""
    real = recovery.run_job
    failing = {'times': None, 'calls': 0}

    def run_job(flow_id, *args, **kwargs):
        failing['calls'] += 1
        if failing['times'] is None or failing['calls'] <= failing['times']:
            raise RuntimeError('host2 unreachable (attempt %d)'
                               % failing['calls'])
        return real(flow_id, *args, **kwargs)
    monkeypatch.setattr(recovery, 'run_job', run_job)
    return failing


def _wait(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _cli(*argv):
    """Run a command in this process (its configuration: the test's)."""
    out, err = io.StringIO(), io.StringIO()
    code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(list(argv))
    assert code == 0, err.getvalue()
    return out.getvalue()


def _board_keys(board):
    """(uuids in the board's listings, uuids in its trash), from Redis."""
    from tests import redis_fixtures
    import msgpack
    client = redis_fixtures._client()
    listed = {msgpack.unpackb(v, raw=False).get('uuid') for v in
              client.hvals(board.listings_key)}
    trashed = {msgpack.unpackb(v, raw=False, strict_map_key=False)
               .get('uuid') for v in client.hvals(board.trash_key)}
    return listed, trashed


def test_a_job_failing_on_every_conductor_ends_stuck_in_the_trash(
        cloud, conductors, max_attempts, failing_run):
    server = cloud.server()
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    job = jobboard.list_jobs()[0]['job']
    ca, cb = conductors('ca'), conductors('cb')

    # Given back after each failure, claimed again, then given up.
    _wait(lambda: (attempts.get(op.flow_id) or {}).get('gave_up_at'),
          'the conductors never gave up')
    row = attempts.get(op.flow_id)
    assert row['attempts'] == max_attempts
    assert row['reason'] == ('gave up after 2 attempts: RuntimeError: host2 '
                             'unreachable (attempt 2)')
    # Not claimed again: TaskFlow's trash holds it, the listings do not.
    board = jobboard.get_board()
    _wait(lambda: _board_keys(board) == (set(), {job}), 'not in the trash')
    time.sleep(2)
    assert failing_run['calls'] == max_attempts
    outcomes = [o for r in (ca, cb) for _f, o in r.conductor.outcomes]
    assert sorted(outcomes) == ['error', 'error']

    flow = api.show_flow(cloud.ctx, op.flow_id)
    assert (flow['status'], flow['attempts'], flow['reason']) == (
        flowstatus.STUCK, 2, row['reason'])
    stuck = api.list_flows(cloud.ctx, state=flowstatus.STUCK)
    assert [(f['flow_id'], f['reason']) for f in stuck] == [
        (op.flow_id, row['reason'])]
    assert api.list_flows(cloud.ctx, state=flowstatus.QUEUED) == []
    assert api.list_flows(cloud.ctx, state=flowstatus.INTERRUPTED) == []
    jobs = jobboard.list_jobs()
    assert [(j['job'], j['state'], j['attempts'], j['flow_id'])
            for j in jobs] == [(job, jobboard.TRASHED, 2, op.flow_id)]

    # The CLI says the same.
    assert _cli('job', 'list', '-f', 'value', '-c', 'Job', '-c', 'State',
                '-c', 'Attempts').split() == [job, 'TRASHED', '2']
    assert _cli('flow', 'show', op.flow_id, '-f', 'value', '-c', 'status',
                '-c', 'reason').splitlines() == ['stuck', row['reason']]

    # An operator still resumes it, here and now.
    failing_run['times'] = 0
    result = api.resume_flow(cloud.ctx, op.flow_id)
    assert result['flow_state'] == tf_states.SUCCESS
    assert api.show_flow(cloud.ctx, op.flow_id)['status'] == \
        flowstatus.FINISHED
    assert repository.instance_get(server['uuid'])['task_state'] is None
    assert repository.migration_list(server['uuid'])[0]['status'] == \
        states.MIGRATION_FINISHED
    api.confirm_resize(cloud.ctx, server['uuid'], wait=True)
    assert state.leaks() == []


def test_a_job_under_the_cap_is_claimed_again_and_finishes(
        cloud, conductors, max_attempts, failing_run):
    failing_run['times'] = 1
    server = cloud.server()
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    conductors('ca')
    op.wait(timeout=120)
    assert op.flow_state == tf_states.SUCCESS
    # The conductor notes the end of its attempt after the flow's end.
    row = _wait(lambda: (lambda r: not r['running'] and r)(
        attempts.get(op.flow_id)), 'the attempt never ended')
    assert (row['attempts'], row['gave_up_at']) == (2, None)
    assert row['last_error'] == 'RuntimeError: host2 unreachable (attempt 1)'
    flow = api.show_flow(cloud.ctx, op.flow_id)
    assert (flow['status'], flow['reason']) == (flowstatus.FINISHED, None)
    _wait(lambda: jobboard.list_jobs() == [], 'the job stays on the board')


def test_an_operator_rolls_back_a_flow_given_up_on(
        cloud, conductors, max_attempts, failing_run):
    server = cloud.server()
    before = state.capture()
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    conductors('ca')
    _wait(lambda: (attempts.get(op.flow_id) or {}).get('gave_up_at'),
          'the conductor never gave up')
    assert flowstatus.flow_brief(op.flow_id)['status'] == flowstatus.STUCK
    result = api.rollback_flow(cloud.ctx, op.flow_id)
    assert result['flow_state'] == tf_states.REVERTED
    assert repository.instance_get(server['uuid'])['vm_state'] == \
        states.ACTIVE
    assert state.capture() == before
    assert state.leaks() == []


def test_a_conductor_that_died_holding_the_job_spent_an_attempt(
        cloud, conductors, max_attempts):
    """Counted at the claim, before anything runs: a conductor that never
    says how its attempt ended spent it, and the next says so."""
    server = cloud.server()
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    job = jobboard.list_jobs()[0]['job']
    for dead in ('dead-a', 'dead-b'):
        assert attempts.begin(op.flow_id, job, dead, max_attempts)[0] == \
            attempts.RUN
    # The third conductor finds both spent: the job is given up.
    verdict, reason = attempts.begin(op.flow_id, job, 'cc', max_attempts)
    assert (verdict, reason) == (
        attempts.GIVE_UP, 'gave up after 2 attempts: conductor dead-b '
        'stopped while holding the job')
    # ... and a live conductor that claims it trashes it unrun.
    ca = conductors('ca')
    board = jobboard.get_board()
    _wait(lambda: _board_keys(board) == (set(), {job}), 'not in the trash')
    assert ca.conductor.outcomes == [(op.flow_id, 'gave up')]
    assert flowstatus.flow_brief(op.flow_id)['status'] == flowstatus.STUCK


def test_a_claim_not_counted_gives_the_job_back_never_trashes_it(
        cloud, conductors, max_attempts, monkeypatch):
    """The database does not answer when a conductor counts its claim:
    the job goes back to the board (not to the trash), and runs later."""
    real = attempts.begin
    calls = []

    def begin(*args):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError('database unreachable')
        return real(*args)
    monkeypatch.setattr(attempts, 'begin', begin)
    server = cloud.server()
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    ca = conductors('ca')
    op.wait(timeout=120)
    assert op.flow_state == tf_states.SUCCESS
    assert len(calls) == 2
    assert attempts.get(op.flow_id)['attempts'] == 1
    _wait(lambda: len(ca.conductor.outcomes) == 2, 'no second outcome')
    assert [o for _f, o in ca.conductor.outcomes] == [
        'error', tf_states.SUCCESS]
    board = jobboard.get_board()
    _wait(lambda: _board_keys(board) == (set(), set()), 'left on the board')
