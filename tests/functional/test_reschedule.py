"""Nova's reschedule: when claiming or preparing the destination fails,
the move goes on to the next alternate host, up to
[scheduler]/max_attempts hosts; then the whole move is undone."""
import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import engine
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state


@pytest.fixture
def cloud3(cloud):
    """host1..host3: a server on host1 may go to host2, then host3."""
    api.create_host(cloud.ctx, 'host3', 8, 4096, 40)
    return cloud


def _events(vm):
    [action] = api.list_actions(api.get_admin_context(), vm)[:1]
    return [(e['event'], e['result']) for e in reversed(action['events'])]


@pytest.mark.parametrize('task', ['ClaimResources', 'PrepareDestination'])
@pytest.mark.parametrize('operation', ['resize', 'migrate'])
def test_reschedule_to_the_alternate(cloud3, operation, task):
    vm = cloud3.server()['uuid']
    faults.inject(task, faults.BEFORE_EXECUTE)      # once: on host2
    if operation == 'resize':
        op = api.resize(cloud3.ctx, vm, 'big', wait=True)
    else:
        op = api.migrate(cloud3.ctx, vm, wait=True)
    assert faults.hits(task) == 1
    mig = op.migration
    assert (mig['source_compute'], mig['dest_compute'], mig['status']) == (
        'host1', 'host3', states.MIGRATION_FINISHED)
    inst = repository.instance_get(vm)
    assert (inst['host'], inst['vm_state']) == ('host3', states.RESIZED)
    # The claim moved with the reschedule: nothing is left on host2.
    assert sorted((a['consumer_uuid'], a['host'])
                  for a in repository.allocation_list()) == sorted(
        [(vm, 'host3'), (mig['uuid'], 'host1')])
    assert repository.allocation_list(host='host2') == []
    assert state.leaks() == []
    # The flow log keeps both tries: host2 failed, host3 worked (read
    # back from the database: see flowrows._retry_history).
    handle = engine.load(op.flow_id)
    history = handle.engine.storage.get_retry_history('TryDestinations')
    assert [value for value, _failures in history] == ['host2', 'host3']
    # ... and the failure that moved it on.
    assert list(list(history)[0][1]) == [task]
    # As Nova records it: the failed step, its undo, the retry.
    assert ('ClaimResources', 'Success') in _events(vm)
    assert (task, 'Error') in _events(vm)
    api.confirm_resize(cloud3.ctx, vm, wait=True)
    assert state.leaks() == []


def test_after_max_attempts_the_move_is_undone(cloud3, conf):
    api.create_host(cloud3.ctx, 'host4', 8, 4096, 40)
    conf.set_override('max_attempts', 2, group='scheduler')
    vm = cloud3.server()['uuid']
    before = state.capture()
    faults.inject('PrepareDestination', faults.BEFORE_EXECUTE, times=None)
    with pytest.raises(faults.InjectedFault):
        api.resize(cloud3.ctx, vm, 'big', wait=True)
    assert faults.hits('PrepareDestination') == 2   # host2, host3; not 4
    assert state.capture() == before
    [mig] = repository.migration_list()
    assert mig['status'] == states.MIGRATION_ERROR
    assert flowstatus.flow_brief(mig['flow_id'])['state'] == \
        tf_states.REVERTED
    assert state.leaks() == []
    faults.clear()
    api.resize(cloud3.ctx, vm, 'big', wait=True)
    assert state.leaks() == []


def test_named_host_has_no_alternate(cloud3):
    vm = cloud3.server()['uuid']
    before = state.capture()
    faults.inject('PrepareDestination', faults.BEFORE_EXECUTE)
    with pytest.raises(faults.InjectedFault):
        api.migrate(cloud3.ctx, vm, host='host2', wait=True)
    assert state.capture() == before
    assert repository.migration_list()[0]['dest_compute'] == 'host2'
    assert state.leaks() == []


def test_cold_migration_never_reschedules_to_its_own_host(cloud, conf):
    conf.set_override('allow_resize_to_same_host', True, group='compute')
    vm = cloud.server()['uuid']
    before = state.capture()
    faults.inject('PrepareDestination', faults.BEFORE_EXECUTE)
    with pytest.raises(faults.InjectedFault):
        api.migrate(cloud.ctx, vm, wait=True)
    assert faults.hits('PrepareDestination') == 1
    assert state.capture() == before


def test_resize_reschedules_to_its_own_host_only_when_allowed(cloud, conf):
    conf.set_override('allow_resize_to_same_host', True, group='compute')
    vm = cloud.server()['uuid']
    faults.inject('PrepareDestination', faults.BEFORE_EXECUTE)
    op = api.resize(cloud.ctx, vm, 'big', wait=True)
    # host2 (more free RAM) first, then the source itself.
    assert op.migration['dest_compute'] == 'host1'
    assert state.leaks() == []
    api.confirm_resize(cloud.ctx, vm, wait=True)
    assert state.leaks() == []


def test_claim_refused_moves_on(cloud3):
    """Capacity taken between the scheduler's choice and the claim: the
    claim refuses (InsufficientResources) and the next host is tried."""
    vm = cloud3.server()['uuid']
    faults.inject('ClaimResources', faults.BEFORE_EXECUTE,
                  exc_class=_host2_is_full)
    op = api.resize(cloud3.ctx, vm, 'big', wait=True)
    assert op.migration['dest_compute'] == 'host3'
    assert state.leaks() == []


def _host2_is_full(message):
    return exception.InsufficientResources(
        host='host2', resource='vcpus', requested=2, free=0)


@pytest.mark.parametrize('recovery', ['resume', 'rollback'])
def test_crash_on_the_alternate_then_resume_or_rollback(cloud3, recovery):
    vm = cloud3.server()['uuid']
    before = state.capture()
    faults.inject('PrepareDestination', faults.BEFORE_EXECUTE)
    faults.inject('PrepareDestination', faults.AFTER_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(cloud3.ctx, vm, 'big', wait=True)
    faults.clear()
    [mig] = repository.migration_list()
    assert flowstatus.flow_brief(mig['flow_id'])['status'] == \
        flowstatus.INTERRUPTED
    if recovery == 'resume':
        api.resume_flow(cloud3.ctx, mig['flow_id'])
        mig = repository.migration_get(mig['uuid'])
        # Goes on with the host it was on; host2 is not tried again.
        assert (mig['dest_compute'], mig['status']) == (
            'host3', states.MIGRATION_FINISHED)
        assert repository.instance_get(vm)['host'] == 'host3'
    else:
        api.rollback_flow(cloud3.ctx, mig['flow_id'])
        assert state.capture() == before
    assert state.leaks() == []
