"""``flow abandon``: a move interrupted (a simulated crash), its source
host then gone for good; neither resume nor rollback can finish it, so an
operator abandons it. The flow ends ``abandoned`` with its log kept, the
server goes to error, the migration to error, the allocations on the host
that is gone are released and ``audit`` lists what is left on the host
that answers. Refusals change nothing."""
import json

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows.persistence import flowindex
from resize_flows.persistence import repository
from resize_flows import recovery
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests.functional.conftest import Cloud
from tests.functional import test_audit
from tests.functional import test_cli
from tests import redis_fixtures

rf = test_cli.rf      # the CLI fixture

REASON = 'host1 lost its disks (ticket 4711)'


def _interrupt(cloud, task='CopyDisk', point=faults.BEFORE_EXECUTE):
    """A migration of a new server from host1 to host2 that dies at
    ``task``; returns (server uuid, flow id)."""
    vm = cloud.server()['uuid']
    faults.inject(task, point, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.migrate(cloud.ctx, vm, host='host2', wait=True)
    faults.clear()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    return vm, flow_id


def _atoms(flow_id):
    return [(t['name'], t['state'], t['intention'], t['result'])
            for t in flowstatus.show_flow(flow_id)['tasks']]


def test_abandon_a_move_whose_source_host_is_gone(cloud, tmp_path):
    # Interrupted once the disk was copied to host2.
    vm, flow_id = _interrupt(cloud, 'FinishMigration')
    mig = repository.migration_list(vm)[-1]
    atoms = _atoms(flow_id)
    test_audit.unplug('host1', tmp_path)
    done = api.abandon_flow(cloud.ctx, flow_id, REASON)
    assert done == {'flow_id': flow_id, 'status': 'abandoned',
                    'reason': REASON, 'released_on': ['host1']}
    shown = flowstatus.show_flow(flow_id)
    assert shown['status'] == flowstatus.ABANDONED
    assert shown['abandoned']['reason'] == REASON
    assert shown['abandoned']['user_id'] == cloud.ctx.user_id
    assert shown['abandoned']['abandoned_at']
    # The flow log keeps the story: every atom as it was.
    assert _atoms(flow_id) == atoms
    inst = repository.instance_get(vm)
    assert (inst['vm_state'], inst['task_state']) == (states.ERROR, None)
    assert repository.migration_get(mig['uuid'])['status'] == \
        states.MIGRATION_ERROR
    # host1's allocations are gone; host2, which answers, keeps its own.
    assert [(a['consumer_uuid'], a['host'])
            for a in repository.allocation_list()] == [(vm, 'host2')]
    action = api.list_actions(cloud.ctx, vm)[0]
    assert (action['action'], action['message']) == ('abandon', REASON)
    assert [e['event'] for e in action['events']] == [
        'abandon_flow', 'reset_state', 'migration_error',
        'release_allocations']
    # Listed as abandoned, and only there.
    assert [f['flow_id'] for f in api.list_flows(
        cloud.ctx, state='abandoned')] == [flow_id]
    for other in ('interrupted', 'stuck', 'running', 'queued'):
        assert api.list_flows(cloud.ctx, state=other) == []
    # Resume and rollback refuse it from now on.
    for verb in (api.resume_flow, api.rollback_flow):
        with pytest.raises(exception.FlowStateConflict, match='abandoned'):
            verb(cloud.ctx, flow_id)
    # What is left on host2 (which answers) is listed; host1 is a row.
    rows = api.audit(cloud.ctx)
    kinds = sorted((r['kind'], r['host']) for r in rows)
    assert ('host', 'host1') in kinds
    assert ('allocation', 'host1,host2') in kinds
    assert ('directory', 'host2') in kinds
    left = [r for r in rows if r['kind'] == 'directory'][0]
    assert left['object'] == vm and "not on its instance's host host1" in \
        left['detail']
    assert not [r for r in rows if r['kind'] == 'flow']
    # --repair leaves what involves the host that is gone.
    assert all(r['fix'] != 'repaired'
               for r in api.audit(cloud.ctx, repair=True))


def test_abandon_keeps_allocations_on_hosts_that_answer(cloud):
    vm, flow_id = _interrupt(cloud)
    api.abandon_flow(cloud.ctx, flow_id, REASON)
    mig = repository.migration_list(vm)[-1]
    assert sorted((a['consumer_uuid'], a['host'])
                  for a in repository.allocation_list()) == sorted(
        [(mig['uuid'], 'host1'), (vm, 'host2')])
    details = [r['detail'] for r in api.audit(cloud.ctx)]
    assert any('allocations of error migration %s' % mig['uuid'] in d
               for d in details)


@pytest.mark.parametrize('how', ['finished', 'rolled back', 'abandoned',
                                 'running'])
def test_abandon_refused(cloud, how):
    if how == 'finished':
        vm = cloud.server()['uuid']
        api.migrate(cloud.ctx, vm, wait=True)
        flow_id = repository.migration_list(vm)[-1]['flow_id']
    else:
        vm, flow_id = _interrupt(cloud)
        if how == 'rolled back':
            api.rollback_flow(cloud.ctx, flow_id)
        elif how == 'abandoned':
            api.abandon_flow(cloud.ctx, flow_id, REASON)
        else:
            flowindex.lease_acquire(flow_id, 'another-process', 600)
    before = (state.capture(), flowstatus.show_flow(flow_id),
              api.list_actions(cloud.ctx, vm))
    with pytest.raises(exception.FlowStateConflict) as e:
        api.abandon_flow(cloud.ctx, flow_id, 'again')
    assert 'Cannot abandon flow' in str(e.value)
    assert (state.capture(), flowstatus.show_flow(flow_id),
            api.list_actions(cloud.ctx, vm)) == before


def test_abandon_is_for_admins(cloud):
    _vm, flow_id = _interrupt(cloud)
    with pytest.raises(exception.Forbidden):
        api.abandon_flow(cloud.member(), flow_id, REASON)
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED


def test_cli_abandon_list_show_and_bad_input(rf):
    code, out, err = rf('server', 'migrate', 'vm1', '-q')
    assert code == 0, err
    vm = repository.instance_list()[0]['uuid']
    # A flow that ended is refused, one line, nothing changed; so are an
    # unknown flow and a reason that is empty or more than one line.
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    before = state.capture()
    for argv in (['flow', 'abandon', flow_id, '--reason', 'x'],
                 ['flow', 'abandon', 'no-such-flow', '--reason', 'x'],
                 ['flow', 'abandon', flow_id, '--reason', ''],
                 ['flow', 'abandon', flow_id, '--reason', 'a\nb']):
        code, out, err = rf(*argv)
        assert code != 0 and len(err.strip().splitlines()) == 1, (argv, err)
    assert state.capture() == before
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.FINISHED
    # An interrupted one is abandoned; list and show tell it.
    assert rf('server', 'resize', 'confirm', 'vm1', '-q')[0] == 0
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    try:
        with pytest.raises(faults.SimulatedCrash):
            rf('server', 'migrate', 'vm1', '-q')
    finally:
        faults.clear()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    code, out, err = rf('flow', 'abandon', flow_id, '--reason', REASON,
                        '-f', 'json')
    assert code == 0, err
    assert json.loads(out)['status'] == 'abandoned'
    code, out, err = rf('flow', 'list', '--state', 'abandoned', '-f', 'json')
    assert [f['Flow'] for f in json.loads(out)] == [flow_id]
    assert json.loads(out)[0]['Status'] == 'abandoned'
    code, out, err = rf('flow', 'show', flow_id)
    assert code == 0 and REASON in out and 'abandoned' in out
    for verb in ('resume', 'rollback'):
        code, out, err = rf('flow', verb, flow_id)
        assert code != 0 and 'abandoned' in err, err
        assert len(err.strip().splitlines()) == 1
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.ABANDONED


@pytest.fixture
def cloud_db(conf, any_db_url):
    """``cloud``, once per database backend."""
    virt.reset()
    faults.clear()
    yield Cloud()
    faults.clear()
    virt.reset()


def test_abandon_and_repair_on_every_database(cloud_db, tmp_path):
    """The abandon transaction, the abandoned filter and the repairs'
    writes on SQLite, PostgreSQL and MariaDB."""
    vm, flow_id = _interrupt(cloud_db, 'FinishMigration')
    test_audit.unplug('host1', tmp_path)
    api.abandon_flow(cloud_db.ctx, flow_id, REASON)
    assert [f['flow_id'] for f in api.list_flows(
        cloud_db.ctx, state='abandoned')] == [flow_id]
    assert api.list_flows(cloud_db.ctx, state='interrupted') == []
    assert flowstatus.show_flow(flow_id)['abandoned']['reason'] == REASON
    with pytest.raises(exception.FlowStateConflict):
        api.abandon_flow(cloud_db.ctx, flow_id, REASON)
    vm2 = cloud_db.server('vm2', host='host2')['uuid']
    repository.instance_update(vm2, {'power_state': 4})
    repository.release(vm2)
    fixed = [r for r in api.audit(cloud_db.ctx, repair=True)
             if r['object'] == vm2]
    assert sorted(r['kind'] for r in fixed) == ['allocation', 'power state']
    assert all(r['fix'] == 'repaired' for r in fixed)
    assert [r for r in api.audit(cloud_db.ctx) if r['object'] == vm2] == []


jobboard_conf = redis_fixtures.jobboard_conf      # a fixture


def test_abandoning_a_posted_flow_takes_its_job_off_the_board(
        cloud, jobboard_conf):
    vm = cloud.server()['uuid']
    op = api.migrate(cloud.ctx, vm, host='host2')
    # Queued: refused (rollback cancels it), the job left as it was.
    with pytest.raises(exception.FlowStateConflict, match='queued'):
        api.abandon_flow(cloud.ctx, op.flow_id, REASON)
    assert [j['flow_id'] for j in jobboard.list_jobs()] == [op.flow_id]
    # A conductor dies in it (run here, crashing): interrupted, the job
    # still on the board.
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        recovery.run_job(op.flow_id)
    faults.clear()
    assert flowstatus.flow_brief(op.flow_id)['status'] == \
        flowstatus.INTERRUPTED
    assert [j['flow_id'] for j in jobboard.list_jobs()] == [op.flow_id]
    api.abandon_flow(cloud.ctx, op.flow_id, REASON)
    assert jobboard.list_jobs() == []
    # A conductor handed the flow anyway runs nothing of it.
    tasks = flowstatus.show_flow(op.flow_id)['tasks']
    assert recovery.run_job(op.flow_id) == tf_states.RUNNING
    assert flowstatus.show_flow(op.flow_id)['tasks'] == tasks


def test_a_resume_that_raced_the_abandon_stops_under_the_lease(cloud):
    """Checked before it takes the lease, a resume may find the flow
    interrupted; once it holds the lease it finds it abandoned, and lets
    it go."""
    _vm, flow_id = _interrupt(cloud)
    api.abandon_flow(cloud.ctx, flow_id, REASON)
    with pytest.raises(exception.FlowStateConflict, match='abandoned'):
        recovery._take(flow_id)
    assert flowindex.lease_list() == {}
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.ABANDONED
