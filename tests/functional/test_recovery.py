"""Resume and roll back flows interrupted at any point.

A crash is simulated in this process by a fault that raises
``SimulatedCrash`` (no ``Exception``: TaskFlow records nothing more and
runs no undo step, as when a process dies). The test driver's hypervisors
live in this process, so they survive it; tests/integration has the same
with real process deaths on real QEMU hosts.
"""
import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import engine
from resize_flows import exception
from resize_flows import flows
from resize_flows.flows import confirm
from resize_flows.flows import resize
from resize_flows.flows import revert
from resize_flows import flowstatus
from resize_flows.persistence import flowindex
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state

POINTS = (faults.BEFORE_EXECUTE, faults.AFTER_EXECUTE)
MOVE = [a.name for a in flows.iter_tasks(resize.get_resize_flow())]
CONFIRM = [a.name for a in flows.iter_tasks(confirm.get_confirm_resize_flow())]
REVERT = [a.name for a in flows.iter_tasks(revert.get_revert_resize_flow())]
NO_RETURN = {'CleanupSource', 'DeleteDestinationFiles'}

CASES = ([('resize', t, p) for t in MOVE for p in POINTS] +
         [('confirm_resize', t, p) for t in CONFIRM for p in POINTS] +
         [('revert_resize', t, p) for t in REVERT for p in POINTS])


def _start(cloud, operation, vm):
    """Run ``operation`` on ``vm`` to its end (a resize goes to big)."""
    if operation == 'resize':
        api.resize(cloud.ctx, vm, 'big', wait=True)
    else:
        getattr(api, operation)(cloud.ctx, vm, wait=True)


def _crash(cloud, operation, task, point):
    """Run ``operation`` (after a resize for confirm/revert) so that it
    dies at ``task``/``point``. Returns (vm, snapshot before, flow id)."""
    vm = cloud.server()['uuid']
    if operation != 'resize':
        api.resize(cloud.ctx, vm, 'big', wait=True)
    before = state.capture()
    faults.inject(task, point, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        _start(cloud, operation, vm)
    faults.clear()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    return vm, before, flow_id


def _expected_status(operation):
    return {'resize': states.MIGRATION_FINISHED,
            'confirm_resize': states.MIGRATION_CONFIRMED,
            'revert_resize': states.MIGRATION_REVERTED}[operation]


@pytest.mark.sweep
@pytest.mark.parametrize('operation, task, point', CASES)
def test_resume_finishes_the_operation(cloud, operation, task, point):
    vm, _before, flow_id = _crash(cloud, operation, task, point)
    # The instance refuses anything else meanwhile, naming the flow.
    with pytest.raises(exception.InstanceHasUnfinishedFlow) as e:
        api.migrate(cloud.ctx, vm, wait=True)
    assert flow_id in str(e.value)
    assert api.resume_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.SUCCESS
    mig = repository.migration_list(vm)[-1]
    assert mig['status'] == _expected_status(operation)
    assert repository.instance_get(vm)['task_state'] is None
    assert state.leaks() == []
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.FINISHED


@pytest.mark.sweep(offset=1)
@pytest.mark.parametrize('operation, task, point', [
    c for c in CASES
    if not (c[1] in NO_RETURN and c[2] == faults.AFTER_EXECUTE)])
def test_rollback_restores_the_snapshot(cloud, operation, task, point):
    vm, before, flow_id = _crash(cloud, operation, task, point)
    assert api.rollback_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.REVERTED
    assert state.capture() == before
    assert state.leaks() == []
    mig = repository.migration_list(vm)[-1]
    assert mig['status'] == (states.MIGRATION_ERROR if operation == 'resize'
                             else states.MIGRATION_FINISHED)
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.ROLLED_BACK


@pytest.mark.parametrize('operation, task', [
    ('confirm_resize', 'CleanupSource'),
    ('revert_resize', 'DeleteDestinationFiles')])
def test_rollback_past_the_point_of_no_return_is_refused(cloud, operation,
                                                         task):
    vm, _before, flow_id = _crash(cloud, operation, task,
                                  faults.AFTER_EXECUTE)
    log_before = flowstatus.show_flow(flow_id)
    cloud_before = state.capture()
    with pytest.raises(exception.FlowStateConflict,
                       match='deleted files already; resume'):
        api.rollback_flow(cloud.ctx, flow_id)
    assert flowstatus.show_flow(flow_id) == log_before
    assert state.capture() == cloud_before
    api.resume_flow(cloud.ctx, flow_id)
    assert state.leaks() == []


@pytest.mark.sweep
@pytest.mark.parametrize('point', (faults.BEFORE_REVERT,
                                   faults.AFTER_REVERT))
@pytest.mark.parametrize('task', MOVE)
def test_crash_during_rollback_then_rollback_again(cloud, task, point):
    vm = cloud.server()['uuid']
    before = state.capture()
    result = api.resize(cloud.ctx, vm, 'big', wait=True)
    faults.inject(task, point, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.rollback_flow(cloud.ctx, result['flow_id'])
    faults.clear()
    assert flowstatus.show_flow(result['flow_id'])['status'] == \
        flowstatus.INTERRUPTED
    api.rollback_flow(cloud.ctx, result['flow_id'])
    assert state.capture() == before
    assert state.leaks() == []


def test_failed_undo_step_is_stuck_then_rollback_finishes(cloud):
    """An undo step that raises (the hypervisor refuses, say) leaves the
    flow stuck, visibly; once the cause is gone, rollback finishes."""
    vm = cloud.server()['uuid']
    before = state.capture()
    faults.inject('MarkMigrationFinished', faults.BEFORE_EXECUTE)
    faults.inject('MoveSourceToResize', faults.BEFORE_REVERT,
                  exc_class=exception.HypervisorError)
    with pytest.raises(exception.HypervisorError):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    faults.clear()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    shown = flowstatus.show_flow(flow_id)
    assert shown['status'] == flowstatus.STUCK
    failed = {t['name']: t for t in shown['tasks']}['MoveSourceToResize']
    assert failed['state'] == tf_states.REVERT_FAILURE
    assert 'HypervisorError' in failed['failure']
    assert 'Traceback' in failed['failure']
    with pytest.raises(exception.FlowStateConflict, match='roll the flow'):
        api.resume_flow(cloud.ctx, flow_id)
    api.rollback_flow(cloud.ctx, flow_id)
    assert state.capture() == before
    assert repository.migration_list(vm)[-1]['status'] == \
        states.MIGRATION_ERROR


def test_rollback_of_a_finished_resize(cloud):
    vm = cloud.server()['uuid']
    before = state.capture()
    result = api.resize(cloud.ctx, vm, 'big', wait=True)
    api.rollback_flow(cloud.ctx, result['flow_id'])
    assert state.capture() == before
    # A resize that was confirmed since cannot be rolled back.
    result = api.resize(cloud.ctx, vm, 'big', wait=True)
    api.confirm_resize(cloud.ctx, vm, wait=True)
    with pytest.raises(exception.FlowStateConflict, match='confirmed'):
        api.rollback_flow(cloud.ctx, result['flow_id'])


def test_bad_requests_change_nothing(cloud):
    vm = cloud.server()['uuid']
    result = api.resize(cloud.ctx, vm, 'big', wait=True)
    flow_id = result['flow_id']
    log_before = flowstatus.show_flow(flow_id)
    cloud_before = state.capture()
    with pytest.raises(exception.FlowNotFound):
        api.resume_flow(cloud.ctx, 'no-such-flow')
    with pytest.raises(exception.FlowStateConflict, match='finished'):
        api.resume_flow(cloud.ctx, flow_id)
    # A flow another live process holds.
    flowindex.lease_acquire(flow_id, 'otherhost:42:x', 60)
    with pytest.raises(exception.FlowBusy, match='otherhost:42'):
        api.rollback_flow(cloud.ctx, flow_id)
    flowindex.lease_release(flow_id, 'otherhost:42:x')
    assert flowstatus.show_flow(flow_id) == log_before
    assert state.capture() == cloud_before
    api.rollback_flow(cloud.ctx, flow_id)
    with pytest.raises(exception.FlowStateConflict, match='rolled back'):
        api.rollback_flow(cloud.ctx, flow_id)
    with pytest.raises(exception.FlowStateConflict, match='rolled back'):
        api.resume_flow(cloud.ctx, flow_id)


def test_expired_lease_means_interrupted(cloud, conf):
    vm = cloud.server()['uuid']
    result = api.resize(cloud.ctx, vm, 'big', wait=True)
    flow_id = result['flow_id']
    # Pretend a dead process left a live-looking lease that then expired.
    flowindex.lease_acquire(flow_id, 'dead:1:x', 60)
    assert flowstatus.show_flow(flow_id)['owner'] == 'dead:1:x'
    flowindex.lease_acquire(flow_id, 'dead:1:x', -1)
    assert flowstatus.show_flow(flow_id)['owner'] is None
    api.rollback_flow(cloud.ctx, flow_id)     # takes the expired lease
    assert flowindex.lease_get(flow_id) is None


def test_list_filters(cloud):
    vm = cloud.server()['uuid']
    api.resize(cloud.ctx, vm, 'big', wait=True)
    api.confirm_resize(cloud.ctx, vm, wait=True)
    flows = api.list_flows(cloud.ctx)
    assert [f['operation'] for f in flows] == ['confirm_resize', 'resize']
    assert [f['operation'] for f in api.list_flows(
        cloud.ctx, operation='resize')] == ['resize']
    assert len(api.list_flows(cloud.ctx, state='finished')) == 2
    assert api.list_flows(cloud.ctx, state='interrupted') == []
    assert len(api.list_flows(cloud.ctx, server='vm1')) == 2
    with pytest.raises(exception.InvalidInput):
        api.list_flows(cloud.ctx, operation='explode')


def test_resume_interrupted_resumes_only_interrupted_flows(cloud):
    vm1 = cloud.server('vm1')['uuid']
    vm2 = cloud.server('vm2')['uuid']
    faults.inject('CopyDisk', faults.AFTER_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(cloud.ctx, vm1, 'big', wait=True)
    faults.clear()
    # vm2's flow is stuck on a failed undo step: left to an operator.
    faults.inject('FinishMigration', faults.BEFORE_EXECUTE)
    faults.inject('PowerOffSource', faults.BEFORE_REVERT)
    with pytest.raises(faults.InjectedFault):
        api.resize(cloud.ctx, vm2, 'big', wait=True)
    faults.clear()
    outcome = api.resume_interrupted(cloud.ctx)
    flow1 = repository.migration_list(vm1)[-1]['flow_id']
    assert outcome == {flow1: tf_states.SUCCESS}
    assert repository.instance_get(vm1)['vm_state'] == states.RESIZED
    flow2 = repository.migration_list(vm2)[-1]['flow_id']
    assert flowstatus.show_flow(flow2)['status'] == flowstatus.STUCK


def test_resume_of_a_flow_interrupted_while_undoing_finishes_the_undo(cloud):
    vm = cloud.server()['uuid']
    before = state.capture()
    faults.inject('FinishMigration', faults.BEFORE_EXECUTE)
    faults.inject('MoveSourceToResize', faults.BEFORE_REVERT,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    faults.clear()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    assert api.resume_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.REVERTED
    assert state.capture() == before
    assert state.leaks() == []


def _die_before_running(cloud, monkeypatch, operation):
    """Start ``operation`` and die after its flow is stored and the
    records say it started, before its engine ran anything (its lease
    gone with the process). Returns (vm, snapshot before, flow id)."""
    vm = cloud.server()['uuid']
    if operation != 'resize':
        api.resize(cloud.ctx, vm, 'big', wait=True)
    before = state.capture()

    def die(handle, listeners=()):
        handle.close()
        raise faults.SimulatedCrash('died before running %s'
                                    % handle.flow_id)

    monkeypatch.setattr(engine, 'run', die)
    with pytest.raises(faults.SimulatedCrash):
        _start(cloud, operation, vm)
    monkeypatch.undo()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    return vm, before, flow_id


@pytest.mark.parametrize('operation', ['resize', 'confirm_resize'])
def test_a_flow_that_never_ran_is_interrupted_and_rolls_back(
        cloud, monkeypatch, operation):
    """Never posted, never run: interrupted (listed so, too), and its
    rollback undoes what the API did before storing it."""
    vm, before, flow_id = _die_before_running(cloud, monkeypatch, operation)
    assert flowstatus.flow_brief(flow_id)['status'] == flowstatus.INTERRUPTED
    assert [f['flow_id'] for f in api.list_flows(
        cloud.ctx, state=flowstatus.INTERRUPTED)] == [flow_id]
    assert api.rollback_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.REVERTED
    assert state.capture() == before
    assert state.leaks() == []
    assert flowstatus.flow_brief(flow_id)['status'] == flowstatus.ROLLED_BACK


def test_a_flow_that_never_ran_resumes_from_its_start(cloud, monkeypatch):
    vm, _before, flow_id = _die_before_running(cloud, monkeypatch, 'resize')
    assert api.resume_interrupted(cloud.ctx) == {flow_id: tf_states.SUCCESS}
    assert repository.instance_get(vm)['vm_state'] == states.RESIZED
    assert state.leaks() == []
