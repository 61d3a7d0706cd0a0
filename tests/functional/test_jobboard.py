"""Operations as jobs on a Redis jobboard, run by conductors.

The conductors here are threads of the test process (the libvirt test
driver keeps its hypervisors in the process); tests/integration/
test_conductors.py runs them as separate processes on real QEMU hosts and
kills one. Each test has a board of its own; without Redis they skip (they
fail where CI=true).
"""
import threading
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import conductor
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows.persistence import flowindex
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from tests.redis_fixtures import jobboard_conf  # noqa: F401 (a fixture)


class Runner:
    """A conductor running in a thread named after it."""

    def __init__(self, label):
        self.label = label
        self.conductor = conductor.Conductor(
            name='%s:%s' % (label, jobboard.conductor_name()))
        self.thread = threading.Thread(target=self.conductor.run,
                                       name=label, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.conductor.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def conductors(jobboard_conf, cloud):
    started = []

    def start(label):
        runner = Runner(label).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner.thread.is_alive():
            runner.stop()


def _conductor_of_thread():
    """The label of the Runner whose conductor runs this job's thread
    (named ``<label>:<flow id>``)."""
    return threading.current_thread().name.split(':')[0]


def _servers(cloud, count):
    servers = []
    for i in range(count):
        servers.append(cloud.server('vm%d' % i,
                                    host='host1' if i % 2 else 'host2'))
    return servers


def test_posted_operations_return_at_once_and_conductors_run_them(
        cloud, conductors):
    servers = _servers(cloud, 4)
    ops = [api.resize(cloud.ctx, s['uuid'], 'big') for s in servers]
    # Posted, nothing ran yet: every job waits unclaimed on the board.
    assert all(isinstance(op, api.PostedOperation) for op in ops)
    assert not any(op.done() for op in ops)
    jobs = {j['flow_id']: j for j in jobboard.list_jobs()}
    assert set(jobs) == {op.flow_id for op in ops}
    assert {j['state'] for j in jobs.values()} == {'UNCLAIMED'}
    assert {j['operation'] for j in jobs.values()} == {'resize'}

    a, b = conductors('ca'), conductors('cb')
    for op in ops:
        op.wait(timeout=120)
    for op, server in zip(ops, servers):
        mig = op.migration
        assert mig['status'] == states.MIGRATION_FINISHED
        inst = repository.instance_get(server['uuid'])
        assert inst['vm_state'] == states.RESIZED
        assert op.flow_state == tf_states.SUCCESS
    assert state.leaks() == []
    # Consumed: the board is empty, no lease is left.
    deadline = time.monotonic() + 10
    while jobboard.list_jobs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert jobboard.list_jobs() == []
    assert flowindex.lease_list() == {}
    names = {c['name'] for c in jobboard.list_conductors()}
    assert {a.conductor.name, b.conductor.name} <= names
    ran = [flow for r in (a, b) for flow, outcome in r.conductor.outcomes
           if outcome == tf_states.SUCCESS]
    assert sorted(ran) == sorted(op.flow_id for op in ops)

    # Confirm goes through the board too; wait=True follows it to its end.
    for server in servers:
        api.confirm_resize(cloud.ctx, server['uuid'], wait=True)
    assert state.leaks() == []


def test_a_failed_posted_operation_raises_its_error_as_text(
        cloud, conductors, rf_faults):
    server = cloud.server()
    rf_faults.inject('CopyDisk', 'before-execute', 'raise')
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    conductors('ca')
    with pytest.raises(exception.OperationFailed) as info:
        op.wait(timeout=60)
    assert 'CopyDisk' in str(info.value)
    assert op.flow_state == tf_states.REVERTED
    assert repository.instance_get(server['uuid'])['vm_state'] == \
        states.ACTIVE
    assert state.leaks() == []


@pytest.fixture
def short_lease(conf):
    conf.set_override('lease_seconds', 2, group='flows')
    yield
    conf.clear_override('lease_seconds', group='flows')


def test_a_stalled_conductor_is_fenced_and_no_task_runs_twice(
        cloud, short_lease, conductors, monkeypatch):
    """Conductor ca stalls inside CopyDisk: its claim and its lease stop
    being extended (as when a process is stopped) and run out; cb claims
    the job, takes the lease over and finishes the flow. When ca wakes up,
    its write of CopyDisk's success is refused, it stops working on the
    flow, and no task after CopyDisk ran on it."""
    server = cloud.server()
    stalled = {'entered': threading.Event(), 'wake': threading.Event()}
    runs = []
    frozen = set()

    # Who runs which task (every task passes its fault points).
    real_hit = faults.hit

    def hit(task, point):
        who = _conductor_of_thread()
        if point == faults.BEFORE_EXECUTE:
            runs.append((who, task))
            if task == 'CopyDisk' and who == 'ca' and \
                    not stalled['entered'].is_set():
                frozen.add('ca')
                stalled['entered'].set()
                assert stalled['wake'].wait(120)
        elif point == faults.BEFORE_REVERT:
            runs.append((who, 'revert ' + task))
        return real_hit(task, point)

    monkeypatch.setattr(faults, 'hit', hit)

    # A stalled process extends nothing: neither its claims nor its lease.
    real_renew = flowindex.lease_renew
    real_extend = conductor.Conductor.extend_claims

    def renew(flow_id, owner, seconds, token=None):
        if owner.startswith('ca:') and 'ca' in frozen:
            return True
        return real_renew(flow_id, owner, seconds, token)

    def extend(self):
        if self.name.startswith('ca:') and 'ca' in frozen:
            return
        return real_extend(self)

    monkeypatch.setattr(flowindex, 'lease_renew', renew)
    monkeypatch.setattr(conductor.Conductor, 'extend_claims', extend)

    ca = conductors('ca')
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    assert stalled['entered'].wait(60)
    cb = conductors('cb')
    op.wait(timeout=120)
    assert op.flow_state == tf_states.SUCCESS
    flow = flowstatus.show_flow(op.flow_id)

    # ca wakes up: refused, it gives the flow up.
    stalled['wake'].set()
    deadline = time.monotonic() + 30
    while ('' if not ca.conductor.outcomes else
           ca.conductor.outcomes[-1][1]) != 'fenced':
        assert time.monotonic() < deadline, ca.conductor.outcomes
        time.sleep(0.1)
    assert (op.flow_id, 'fenced') in ca.conductor.outcomes
    assert (op.flow_id, tf_states.SUCCESS) in cb.conductor.outcomes

    tasks = [name for _who, name in runs]
    after = set(tasks[tasks.index('CopyDisk') + 1:]) - {'CopyDisk'}
    # CopyDisk ran on ca (stalled) and again on cb, which took the flow
    # over while it was RUNNING (resume runs such a task again); every
    # other task ran once, those after CopyDisk on cb only.
    assert [(w, n) for w, n in runs if n == 'CopyDisk'] == [
        ('ca', 'CopyDisk'), ('cb', 'CopyDisk')]
    assert len(tasks) == len(set(tasks)) + 1
    assert all(who == 'cb' for who, name in runs if name in after)
    # The log is cb's, unchanged by ca's late write.
    assert flowstatus.show_flow(op.flow_id)['tasks'] == flow['tasks']
    assert repository.instance_get(server['uuid'])['vm_state'] == \
        states.RESIZED
    assert state.leaks() == []


def test_a_stopped_conductor_gives_its_job_back(cloud, conductors,
                                                monkeypatch):
    """stop() (SIGTERM): the running task ends, the flow is suspended
    there and its job given back; another conductor finishes it."""
    server = cloud.server()
    entered = threading.Event()
    release = threading.Event()
    real_hit = faults.hit

    def slow_copy(task, point):
        if (task, point) == ('CopyDisk', faults.BEFORE_EXECUTE) and \
                _conductor_of_thread() == 'ca':
            entered.set()
            assert release.wait(60)
        return real_hit(task, point)

    monkeypatch.setattr(faults, 'hit', slow_copy)
    ca = conductors('ca')
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    assert entered.wait(60)
    stopper = threading.Thread(target=ca.stop)
    stopper.start()
    time.sleep(0.5)
    release.set()
    stopper.join(60)
    assert flowstatus.flow_brief(op.flow_id)['state'] == tf_states.SUSPENDED
    assert (op.flow_id, tf_states.SUSPENDED) in ca.conductor.outcomes
    conductors('cb')
    op.wait(timeout=120)
    assert op.flow_state == tf_states.SUCCESS
    assert state.leaks() == []


def _board_state():
    """What a refused request must not change: jobs and leases."""
    return ([(j['job'], j['state'], j['owner']) for j in jobboard.list_jobs()],
            flowindex.lease_list())


def test_a_posted_flow_is_queued_until_a_conductor_starts_it(
        cloud, conductors):
    """Not interrupted: a second operation is refused as queued, without
    advice to resume or roll back; resume is refused, and so is a resume
    of every interrupted flow; then a conductor runs it as always."""
    server = cloud.server()
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    job = jobboard.list_jobs()[0]['job']
    assert flowstatus.flow_brief(op.flow_id) == {
        'operation': 'resize', 'state': None, 'status': flowstatus.QUEUED,
        'job_uuid': job}
    assert [f['flow_id'] for f in api.list_flows(
        cloud.ctx, state=flowstatus.QUEUED)] == [op.flow_id]
    assert api.list_flows(cloud.ctx, state=flowstatus.INTERRUPTED) == []
    shown = api.show_flow(cloud.ctx, op.flow_id)
    assert (shown['status'], shown['job_uuid']) == (flowstatus.QUEUED, job)

    before = (state.capture(), repository.migration_list(server['uuid']),
              _board_state())
    with pytest.raises(exception.InstanceHasQueuedFlow) as e:
        api.migrate(cloud.ctx, server['uuid'])
    message = str(e.value)
    assert 'has an operation queued' in message
    assert op.flow_id in message and job in message
    assert 'resume' not in message and 'roll' not in message
    with pytest.raises(exception.FlowStateConflict) as e:
        api.resume_flow(cloud.ctx, op.flow_id)
    assert 'queued as job %s' % job in str(e.value)
    assert api.resume_interrupted(cloud.ctx) == {}
    assert (state.capture(), repository.migration_list(server['uuid']),
            _board_state()) == before

    conductors('ca')
    op.wait(timeout=120)
    assert op.flow_state == tf_states.SUCCESS
    assert flowstatus.flow_brief(op.flow_id)['status'] == flowstatus.FINISHED
    assert state.leaks() == []


@pytest.mark.parametrize('operation', ['resize', 'confirm_resize'])
def test_rollback_cancels_a_queued_flow(cloud, conductors, operation):
    """The records are as before the request, the job is off the board,
    a client waiting on the flow hears it was cancelled, and the server
    takes a new operation."""
    server = cloud.server()
    if operation == 'confirm_resize':
        # Resized by a conductor that is gone then: nobody claims the
        # confirm's job.
        runner = conductors('ca')
        api.resize(cloud.ctx, server['uuid'], 'big', wait=True)
        runner.stop()
    before = state.capture()
    mig_before = repository.migration_list(server['uuid'])
    if operation == 'resize':
        op = api.resize(cloud.ctx, server['uuid'], 'big')
    else:
        op = api.confirm_resize(cloud.ctx, server['uuid'])
    assert flowstatus.flow_brief(op.flow_id)['status'] == flowstatus.QUEUED

    result = api.rollback_flow(cloud.ctx, op.flow_id)
    assert result['flow_state'] == tf_states.REVERTED
    assert state.capture() == before
    assert jobboard.list_jobs() == []
    assert flowindex.lease_list() == {}
    migs = repository.migration_list(server['uuid'])
    if operation == 'resize':
        assert migs[-1]['status'] == states.MIGRATION_ERROR
    else:
        # The move waits for confirm or revert again, as before.
        assert [m['status'] for m in migs] == \
            [m['status'] for m in mig_before] == [states.MIGRATION_FINISHED]
    flow = api.show_flow(cloud.ctx, op.flow_id)
    assert flow['status'] == flowstatus.ROLLED_BACK
    assert [t['state'] for t in flow['tasks']][0] == tf_states.REVERTED
    assert {t['state'] for t in flow['tasks'][1:]} == {tf_states.PENDING}
    with pytest.raises(exception.OperationFailed, match='FlowCancelled'):
        op.wait(timeout=10)
    # Rolled back already: refused, with one line.
    with pytest.raises(exception.FlowStateConflict):
        api.rollback_flow(cloud.ctx, op.flow_id)
    again = (api.resize(cloud.ctx, server['uuid'], 'big')
             if operation == 'resize'
             else api.confirm_resize(cloud.ctx, server['uuid']))
    assert flowstatus.flow_brief(again.flow_id)['status'] == flowstatus.QUEUED


def test_a_cancelled_flow_left_on_the_board_is_only_consumed(
        cloud, conductors, conf):
    """Rolled back where the board is not configured, its job stays; the
    conductor that claims it runs no task and consumes it."""
    server = cloud.server()
    before = state.capture()
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    conf.set_override('enabled', False, group='jobboard')
    try:
        api.rollback_flow(cloud.ctx, op.flow_id)
    finally:
        conf.set_override('enabled', True, group='jobboard')
    assert [j['flow_id'] for j in jobboard.list_jobs()] == [op.flow_id]
    tasks = api.show_flow(cloud.ctx, op.flow_id)['tasks']

    ca = conductors('ca')
    deadline = time.monotonic() + 30
    while jobboard.list_jobs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert jobboard.list_jobs() == []
    assert ca.conductor.outcomes == [(op.flow_id, tf_states.REVERTED)]
    assert api.show_flow(cloud.ctx, op.flow_id)['tasks'] == tasks
    assert state.capture() == before


def test_an_unreachable_jobboard_refuses_and_changes_nothing(cloud, conf):
    conf.set_override('enabled', True, group='jobboard')
    conf.set_override('backend_url', 'redis://127.0.0.1:1', group='jobboard')
    jobboard.reset()
    try:
        server = cloud.server()
        before = state.capture()
        with pytest.raises(exception.JobboardUnavailable):
            api.resize(cloud.ctx, server['uuid'], 'big')
        assert state.capture() == before
    finally:
        jobboard.reset()
        conf.clear_override('enabled', group='jobboard')
        conf.clear_override('backend_url', group='jobboard')


def test_the_cli_posts_follows_and_lists(conf, tmp_path):
    """server resize returns once posted; --wait follows the flow while a
    conductor runs it; job list and conductor list say who holds what."""
    import io
    import json

    from resize_flows.cmd import shell
    from resize_flows import virt
    from tests import redis_fixtures

    redis_fixtures.require_redis()
    board = redis_fixtures.unique_board()
    conf_file = tmp_path / 'rf.conf'
    conf_file.write_text(
        '[DEFAULT]\nstate_dir = %s\n[libvirt]\nlocal_hypervisor = test\n'
        '[compute]\nshutdown_timeout = 0\n[jobboard]\nenabled = true\n'
        'backend_url = %s\nboard_name = %s\nclaim_expiry = 4\n'
        'wait_poll_interval = 0.1\n'
        % (tmp_path / 'cli-state', redis_fixtures.URL, board))
    conf.clear_override('state_dir')
    conf.clear_override('local_hypervisor', group='libvirt')
    virt.reset()
    jobboard.reset()

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(
            ['--config-file', str(conf_file)] + list(argv))
        assert code == 0, err.getvalue()
        return out.getvalue(), err.getvalue()

    def refused(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(
            ['--config-file', str(conf_file)] + list(argv))
        assert code != 0
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1, err.getvalue()
        return lines[0]

    runner = None
    try:
        run('db', 'sync')
        for host in ('host1', 'host2'):
            run('host', 'create', host, '--vcpus', '4', '--memory-mb',
                '1024', '--disk-gb', '10')
        run('flavor', 'create', 'tiny', '--vcpus', '1', '--ram', '64',
            '--disk', '1')
        run('flavor', 'create', 'small', '--vcpus', '2', '--ram', '96',
            '--disk', '2')
        run('server', 'create', 'vm1', '--flavor', 'tiny', '--host', 'host1')
        posted = json.loads(run('server', 'resize', 'vm1', '--flavor',
                                'small', '-f', 'json')[0])
        assert posted['status'] == 'pre-migrating'
        jobs = json.loads(run('job', 'list', '-f', 'json')[0])
        assert [(j['Flow'], j['State'], j['Owner']) for j in jobs] == [
            (posted['flow'], 'UNCLAIMED', None)]
        # Queued, not interrupted, until a conductor starts it.
        queued = json.loads(run('flow', 'list', '--state', 'queued',
                                '-f', 'json')[0])
        assert [(f['Flow'], f['Status']) for f in queued] == [
            (posted['flow'], 'queued')]
        shown = json.loads(run('flow', 'show', posted['flow'], '-f',
                               'json')[0])
        assert (shown['status'], shown['job_uuid']) == ('queued',
                                                        jobs[0]['Job'])
        line = refused('server', 'migrate', 'vm1')
        assert 'has an operation queued' in line and posted['flow'] in line
        assert 'resume' not in line
        assert 'is queued as job' in refused('flow', 'resume',
                                             posted['flow'])
        assert json.loads(run('job', 'list', '-f', 'json')[0]) == jobs
        runner = Runner('ca').start()
        deadline = time.monotonic() + 60
        while flowstatus.flow_brief(posted['flow'])['state'] != \
                tf_states.SUCCESS:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        out, err = run('server', 'resize', 'confirm', 'vm1', '--wait',
                       '-f', 'json')
        # The confirm, posted, then followed task by task to its end.
        assert json.loads(out)['status'] == 'confirmed'
        assert 'CleanupSource' in err and 'SUCCESS' in err
        names = [c['Name'] for c in json.loads(
            run('conductor', 'list', '-f', 'json')[0])]
        assert runner.conductor.name in names
        assert flowstatus.flow_brief(posted['flow'])['state'] == \
            tf_states.SUCCESS
    finally:
        if runner is not None:
            runner.stop()
        jobboard.reset()
        redis_fixtures.delete_board(board)
        virt.reset()


def test_a_claim_taken_over_is_never_extended_by_its_old_owner(
        jobboard_conf, cloud, monkeypatch):
    """The owner check and the extension are one step: a claim another
    conductor took between them is not extended by the old owner."""
    jobboard_conf.set_override('claim_expiry', 30, group='jobboard')
    board = jobboard.connect()
    try:
        board.post('test-job', details={'flow_uuid': 'no-such-flow'})
        [job] = list(board.iterjobs(only_unclaimed=True))
        ca = conductor.Conductor(name='ca', board=board)
        ca._board.claim(job, 'ca')
        client = board._client
        client.pexpire(job.owner_key, 2000)
        ca.extend_claims()
        assert client.pttl(job.owner_key) > 20000         # ours: extended

        # cb takes the claim over right after ca checked that it owns it.
        client.set(job.owner_key, board._encode_owner('cb'), px=2000)
        monkeypatch.setattr(type(board), 'find_owner',
                            lambda self, job: 'ca')
        ca.extend_claims()
        assert board._client.get(job.owner_key) == board._encode_owner('cb')
        assert client.pttl(job.owner_key) <= 2000        # not extended
    finally:
        board.close()


def test_one_conductor_runs_several_jobs_at_once(jobboard_conf, cloud,
                                                 conductors, monkeypatch):
    """With [jobboard]/simultaneous_jobs = 2, one conductor has two flows
    in CopyDisk at the same time, and both finish."""
    jobboard_conf.set_override('simultaneous_jobs', 2, group='jobboard')
    both_in = threading.Barrier(2, timeout=60)
    met = []
    real_hit = faults.hit

    def hit(task, point):
        if task == 'CopyDisk' and point == faults.BEFORE_EXECUTE:
            both_in.wait()             # breaks (and fails) if run one by one
            met.append(threading.current_thread().name)
        return real_hit(task, point)

    monkeypatch.setattr(faults, 'hit', hit)
    servers = _servers(cloud, 2)
    runner = conductors('solo')
    ops = [api.resize(cloud.ctx, s['uuid'], 'big') for s in servers]
    for op in ops:
        op.wait(timeout=120)
        assert op.flow_state == tf_states.SUCCESS
    assert len(met) == 2 and len(set(met)) == 2
    # The flow log says SUCCESS a moment before the conductor's thread
    # notes the job's outcome: wait for both notes.
    for _ in range(600):
        if len(runner.conductor.outcomes) >= 2:
            break
        time.sleep(0.1)
    assert sorted(outcome for _flow, outcome in runner.conductor.outcomes
                  ) == [tf_states.SUCCESS] * 2
    assert state.leaks() == []
