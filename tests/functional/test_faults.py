"""An exception in any task of any flow undoes everything before it.

For every task of every flow, a fault is injected before the task's
execute (it did nothing) and after it (its side effects happened but its
success was never recorded); the flow must then be undone so completely
that the records, every hypervisor and every instance directory equal a
snapshot taken before the operation.
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
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state

POINTS = (faults.BEFORE_EXECUTE, faults.AFTER_EXECUTE)


def _names(flow):
    return [atom.name for atom in flows.iter_tasks(flow)]


MOVE_TASKS = _names(resize.get_resize_flow())
CONFIRM_TASKS = _names(confirm.get_confirm_resize_flow())
REVERT_TASKS = _names(revert.get_revert_resize_flow())
# Deleting files is where a confirm or a revert cannot go back: once that
# step has done its work, undoing it is refused (tested below).
POINT_OF_NO_RETURN = {'CleanupSource', 'DeleteDestinationFiles'}


def test_every_task_is_covered():
    assert len(MOVE_TASKS) == 9
    assert len(CONFIRM_TASKS) == 4
    assert len(REVERT_TASKS) == 7


@pytest.mark.sweep
@pytest.mark.parametrize('point', POINTS)
@pytest.mark.parametrize('task', MOVE_TASKS)
@pytest.mark.parametrize('operation', ['resize', 'migrate'])
def test_fault_in_move_restores_the_snapshot(cloud, operation, task, point):
    vm = cloud.server()['uuid']
    before = state.capture()
    faults.inject(task, point)
    with pytest.raises(faults.InjectedFault):
        if operation == 'resize':
            api.resize(cloud.ctx, vm, 'big', wait=True)
        else:
            api.migrate(cloud.ctx, vm, wait=True)
    assert faults.hits(task, point) == 1
    assert state.capture() == before
    [mig] = repository.migration_list()
    assert mig['status'] == states.MIGRATION_ERROR
    assert state.leaks() == []
    # And the server can be moved again afterwards.
    faults.clear()
    api.resize(cloud.ctx, vm, 'big', wait=True)
    assert repository.instance_get(vm)['vm_state'] == states.RESIZED


def _resolution_cases(tasks):
    return [(t, p) for t in tasks for p in POINTS
            if not (t in POINT_OF_NO_RETURN and p == faults.AFTER_EXECUTE)]


@pytest.mark.parametrize('operation, task, point', [
    ('confirm_resize', t, p) for t, p in _resolution_cases(CONFIRM_TASKS)
] + [
    ('revert_resize', t, p) for t, p in _resolution_cases(REVERT_TASKS)
])
def test_fault_in_confirm_or_revert_leaves_the_move_finished(
        cloud, operation, task, point):
    vm = cloud.server()['uuid']
    api.resize(cloud.ctx, vm, 'big', wait=True)
    before = state.capture()
    faults.inject(task, point)
    with pytest.raises(faults.InjectedFault):
        getattr(api, operation)(cloud.ctx, vm, wait=True)
    assert state.capture() == before
    assert repository.migration_list()[0]['status'] == \
        states.MIGRATION_FINISHED
    assert state.leaks() == []
    # Nothing is stuck: the same operation then succeeds.
    faults.clear()
    getattr(api, operation)(cloud.ctx, vm, wait=True)
    assert state.leaks() == []


@pytest.mark.parametrize('operation, task, status', [
    ('confirm_resize', 'CleanupSource', states.MIGRATION_CONFIRMED),
    ('revert_resize', 'DeleteDestinationFiles', states.MIGRATION_REVERTED),
])
def test_fault_after_the_point_of_no_return_is_not_undone(
        cloud, operation, task, status):
    """Files are gone: the undo step refuses to pretend, so the flow stops
    there, leaving the operation done in the records as on the hosts and
    the flow log showing the step that could not be undone."""
    vm = cloud.server()['uuid']
    result = api.resize(cloud.ctx, vm, 'big', wait=True)
    faults.inject(task, faults.AFTER_EXECUTE)
    with pytest.raises(exception.CannotUndo):
        getattr(api, operation)(cloud.ctx, vm, wait=True)
    mig = repository.migration_get(result['migration']['uuid'])
    assert mig['status'] == status
    assert repository.instance_get(vm)['task_state'] is None
    assert state.leaks() == []
    handle = engine.load(mig['flow_id'])
    assert handle.engine.storage.get_atom_state(task) == \
        tf_states.REVERT_FAILURE
    assert handle.engine.storage.get_flow_state() != tf_states.SUCCESS
