"""Crashes in the windows between a flow's writes, and two races (issue 11:
items 1, 2, 3, 8, 9), on the test driver.

A crash is a ``SimulatedCrash`` raised at a named window
(``faults.WINDOWS``), then :func:`_die` lets this process's leases go, as
a dead process's would expire. Each test checks from the database that
the process really died inside the window (the records have not started
the flow, or the flow log holds the undo while the server is not claimed)
before it recovers as an operator would. tests/integration/
test_crash_windows.py kills real processes there on real QEMU hosts.
"""
import contextlib

import pytest
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states

from resize_flows import api
from resize_flows.api import moves as api_moves
from resize_flows.api import servers as api_servers
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import leases
from resize_flows.persistence import flowindex
from resize_flows.persistence import flowlog
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state

OPERATIONS = ('resize', 'migrate', 'confirm_resize', 'revert_resize')
RESOLUTIONS = ('confirm_resize', 'revert_resize')
OPPOSITE = {'confirm_resize': 'revert_resize',
            'revert_resize': 'confirm_resize'}


def _die():
    """What a dead process leaves: its leases lapse. (This process's renew
    threads find them gone and stop.)"""
    for flow_id, lease in flowindex.lease_list().items():
        if lease['owner'] == leases.owner():
            flowindex.lease_release(flow_id, leases.owner())


def _resize_died_in_copy(cloud, vm):
    """Resize ``vm`` in a process that dies as its disk copy starts; the
    id of the interrupted flow."""
    faults.inject('CopyDisk', exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    faults.clear()
    _die()
    return repository.migration_list(vm)[-1]['flow_id']


def _run(cloud, operation, vm):
    """``operation`` on ``vm``, to its end."""
    if operation == 'resize':
        return api.resize(cloud.ctx, vm, 'big', wait=True)
    return getattr(api, operation)(cloud.ctx, vm, wait=True)


def _server(cloud, operation):
    """A server ready for ``operation`` (resized first for a confirm or a
    revert)."""
    vm = cloud.server()['uuid']
    if operation in RESOLUTIONS:
        api.resize(cloud.ctx, vm, 'big', wait=True)
    return vm


def _migrations(vm):
    return [(m['uuid'], m['status'], m['flow_id'])
            for m in repository.migration_list(vm)]


def _records(vm):
    """What an operation that never started must leave as it was."""
    return (state.capture(), _migrations(vm),
            [(a['request_id'], a['action'])
             for a in instance_actions.action_list(vm)])


def _crash_before_start(cloud, operation, vm, window):
    """Run ``operation`` so that it dies in ``window``, after storing its
    flow and before the records start it. Returns the flow's id."""
    faults.inject(window, faults.WINDOW, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        _run(cloud, operation, vm)
    assert faults.hits(window, faults.WINDOW) == 1
    faults.clear()
    _die()
    flow = flowstatus.list_flows(server=vm, operation=operation)[0]
    assert flow['status'] == flowstatus.INTERRUPTED
    # It died inside the window: no migration names the flow.
    assert flow['flow_id'] not in [m[2] for m in _migrations(vm)]
    return flow['flow_id']


# -- 1: a flow stored but never started in the records -------------------

@pytest.mark.parametrize('verb', ('resume', 'rollback'))
@pytest.mark.parametrize('window', ('flow-logged', 'flow-stored'))
@pytest.mark.parametrize('operation', OPERATIONS)
def test_flow_never_started_ends_rolled_back(cloud, operation, window,
                                             verb):
    vm = _server(cloud, operation)
    before = _records(vm)
    flow_id = _crash_before_start(cloud, operation, vm, window)

    shown = getattr(api, verb + '_flow')(cloud.ctx, flow_id)
    assert shown['flow_state'] == tf_states.REVERTED
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.ROLLED_BACK
    assert flowindex.lease_get(flow_id) is None
    assert _records(vm) == before
    assert state.leaks() == []
    # Ended: both refuse it now, and purge removes it.
    for again in ('resume', 'rollback'):
        with pytest.raises(exception.FlowStateConflict):
            getattr(api, again + '_flow')(cloud.ctx, flow_id)
    assert flowindex.lease_get(flow_id) is None
    api.purge_flows(cloud.ctx, '2999-01-01')
    assert flow_id not in [f['flow_id'] for f in api.list_flows(cloud.ctx)]
    # The server takes the operation again.
    _run(cloud, operation, vm)
    assert state.leaks() == []


@pytest.mark.parametrize('verb', ('resume', 'rollback'))
def test_flow_cut_between_the_two_writes_of_its_store(cloud, verb):
    """TaskFlow writes a store in two steps: the atom that holds it, then
    its values. A process killed in between left a store of None."""
    vm = cloud.server()['uuid']
    before = _records(vm)
    flow_id = _crash_before_start(cloud, 'resize', vm, 'flow-logged')
    with contextlib.closing(flowlog.get_backend().get_connection()) as conn:
        _book, detail = conn.find_flow(flow_id)
        detail.add(tf_models.TaskDetail('_TaskFlow_INJECTOR',
                                        uuid=flow_id[:-4] + 'beef'))
        conn.update_flow_details(detail)
        _book, detail = conn.find_flow(flow_id)
        assert [(ad.name, ad.results) for ad in detail] == [
            ('_TaskFlow_INJECTOR', None)]

    shown = getattr(api, verb + '_flow')(cloud.ctx, flow_id)
    assert shown['flow_state'] == tf_states.REVERTED
    assert flowindex.lease_get(flow_id) is None
    assert _records(vm) == before


def _store_atom(detail):
    return next(ad for ad in detail if ad.name == '_TaskFlow_INJECTOR')


def test_flow_stored_without_its_id_still_resumes(cloud):
    """A flow stored by older code has no flow id in its store: loading
    it puts the id there, and it resumes as before."""
    vm = cloud.server()['uuid']
    flow_id = _resize_died_in_copy(cloud, vm)
    with contextlib.closing(flowlog.get_backend().get_connection()) as conn:
        _book, detail = conn.find_flow(flow_id)
        store = _store_atom(detail)
        assert store.results.pop('flow_id') == flow_id
        conn.update_atom_details(store)
    assert api.resume_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.SUCCESS
    assert repository.migration_list(vm)[-1]['status'] == \
        states.MIGRATION_FINISHED
    with contextlib.closing(flowlog.get_backend().get_connection()) as conn:
        _book, detail = conn.find_flow(flow_id)
        assert _store_atom(detail).results[
            'flow_id'] == flow_id
    assert state.leaks() == []


# -- 2: a stale confirm or revert after the user's next operation ----------

@pytest.mark.parametrize('verb', ('resume', 'rollback'))
@pytest.mark.parametrize('user', ('opposite', 'same'))
@pytest.mark.parametrize('stale', RESOLUTIONS)
def test_stale_resolution_never_acts_on_a_later_one(cloud, stale, user,
                                                    verb):
    vm = _server(cloud, stale)
    flow_id = _crash_before_start(cloud, stale, vm, 'flow-stored')
    # Nothing blocks the user's next operation.
    done = _run(cloud, OPPOSITE[stale] if user == 'opposite' else stale, vm)
    after = _records(vm)
    assert [f['flow_id'] for f in api.list_flows(
        cloud.ctx, state=flowstatus.INTERRUPTED)] == [flow_id]

    shown = getattr(api, verb + '_flow')(cloud.ctx, flow_id)
    assert shown['flow_state'] == tf_states.REVERTED
    assert _records(vm) == after
    assert state.leaks() == []
    assert repository.migration_get(done.migration_uuid)['flow_id'] == \
        done.flow_id


# -- 3: a killed rollback of a finished move -------------------------------

@pytest.mark.parametrize('verb', ('resume', 'rollback'))
def test_killed_rollback_of_a_finished_move_is_recoverable(cloud, verb):
    vm = cloud.server()['uuid']
    before = state.capture()
    flow_id = api.resize(cloud.ctx, vm, 'big', wait=True).flow_id
    faults.inject('rollback-recorded', faults.WINDOW,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.rollback_flow(cloud.ctx, flow_id)
    assert faults.hits('rollback-recorded', faults.WINDOW) == 1
    faults.clear()
    _die()
    # It died inside the window: the undo is recorded (the flow is not
    # finished any more), the server not claimed; the flow blocks the
    # server's other operations, naming itself.
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    assert repository.instance_get(vm)['task_state'] is None
    for other in RESOLUTIONS:
        with pytest.raises(exception.InstanceHasUnfinishedFlow,
                           match=flow_id):
            _run(cloud, other, vm)

    shown = getattr(api, verb + '_flow')(cloud.ctx, flow_id)
    assert shown['flow_state'] == tf_states.REVERTED
    assert state.capture() == before
    assert state.leaks() == []
    assert repository.migration_list(vm)[-1]['status'] == \
        states.MIGRATION_ERROR


def test_rollback_of_a_finished_move_loses_to_a_confirm(cloud, monkeypatch):
    """A confirm whose checks passed before the rollback recorded its undo
    starts (compare-and-swap) before the rollback claims the server: the
    confirm wins; the rollback is refused and the flow is finished again."""
    vm = cloud.server()['uuid']
    flow_id = api.resize(cloud.ctx, vm, 'big', wait=True).flow_id
    claim = repository.instance_update
    refuse = api_moves._refuse_if_unfinished_flow

    def confirm_first(uuid, values, *args, **kwargs):
        if values.get('task_state') == states.RESIZE_REVERTING:
            monkeypatch.setattr(repository, 'instance_update', claim)
            # Its checks ran before the rollback recorded its undo.
            monkeypatch.setattr(api_moves, '_refuse_if_unfinished_flow',
                                lambda inst, method: None)
            api.confirm_resize(cloud.ctx, vm, wait=True)
            monkeypatch.setattr(api_moves, '_refuse_if_unfinished_flow',
                                refuse)
        return claim(uuid, values, *args, **kwargs)

    monkeypatch.setattr(repository, 'instance_update', confirm_first)
    with pytest.raises(exception.FlowStateConflict):
        api.rollback_flow(cloud.ctx, flow_id)
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.FINISHED
    assert repository.migration_list(vm)[-1]['status'] == \
        states.MIGRATION_CONFIRMED
    assert repository.instance_get(vm)['task_state'] is None
    assert state.leaks() == []


# -- 8: server delete ------------------------------------------------------

def _resize_inside_delete(cloud, monkeypatch, vm, crash_task=None):
    """Make a resize of ``vm`` start right after ``server delete`` has
    read the server (to its end, or interrupted at ``crash_task``)."""
    get_server = api_servers.get_server

    def read_then_resize(ctx, ident):
        inst = get_server(ctx, ident)
        monkeypatch.setattr(api_servers, 'get_server', get_server)
        if crash_task is None:
            api.resize(cloud.ctx, vm, 'big', wait=True)
        else:
            faults.inject(crash_task, exc_class=faults.SimulatedCrash)
            with pytest.raises(faults.SimulatedCrash):
                api.resize(cloud.ctx, vm, 'big', wait=True)
            faults.clear()
            _die()
        return inst

    monkeypatch.setattr(api_servers, 'get_server', read_then_resize)


@pytest.mark.parametrize('crash_task', (None, 'CopyDisk'))
def test_delete_loses_to_a_resize_that_started_first(cloud, monkeypatch,
                                                     crash_task):
    vm = cloud.server()['uuid']
    _resize_inside_delete(cloud, monkeypatch, vm, crash_task)
    with pytest.raises(exception.Conflict) as e:
        api.delete_server(cloud.ctx, vm)
    assert e.value.code == 409
    during = state.capture()
    assert repository.instance_get(vm)['task_state'] != states.DELETING
    if crash_task is not None:
        flow_id = repository.migration_list(vm)[-1]['flow_id']
        assert flow_id in str(e.value)
        api.resume_flow(cloud.ctx, flow_id)
    else:
        assert state.capture() == during
    assert repository.instance_get(vm)['vm_state'] == states.RESIZED
    api.confirm_resize(cloud.ctx, vm, wait=True)
    assert state.leaks() == []


def test_delete_refuses_while_a_flow_is_unfinished(cloud):
    vm = cloud.server()['uuid']
    flow_id = _resize_died_in_copy(cloud, vm)
    before = state.capture()
    with pytest.raises(exception.InstanceHasUnfinishedFlow, match=flow_id):
        api.delete_server(cloud.ctx, vm)
    assert state.capture() == before


@pytest.mark.parametrize('power_on', (True, False))
def test_delete_of_a_resized_server_confirms_first(cloud, power_on):
    vm = cloud.server(power_on=power_on)['uuid']
    mig = api.resize(cloud.ctx, vm, 'big', wait=True).migration_uuid
    api.delete_server(cloud.ctx, vm)
    with pytest.raises(exception.InstanceNotFound):
        repository.instance_get(vm)
    assert repository.allocation_list(consumer_uuid=mig) == []
    assert repository.allocation_list(consumer_uuid=vm) == []
    hosts = state.capture()['hosts']
    empty = {'domains': {}, 'dirs': {}, 'files': {}, 'base': {}}
    assert all(h == empty for h in hosts.values()), hosts
    assert state.leaks() == []


@pytest.mark.parametrize('window', ('delete-claimed', 'delete-destroyed'))
def test_delete_killed_midway_is_finished_by_a_second_delete(cloud, window):
    vm = cloud.server()['uuid']
    faults.inject(window, faults.WINDOW, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.delete_server(cloud.ctx, vm)
    faults.clear()
    # It died inside the window: the server is being deleted, and nothing
    # else may start on it.
    assert repository.instance_get(vm)['task_state'] == states.DELETING
    with pytest.raises(exception.InstanceInvalidState):
        api.migrate(cloud.ctx, vm, wait=True)
    api.delete_server(cloud.ctx, vm)
    with pytest.raises(exception.InstanceNotFound):
        repository.instance_get(vm)
    hosts = state.capture()['hosts']
    empty = {'domains': {}, 'dirs': {}, 'files': {}, 'base': {}}
    assert all(h == empty for h in hosts.values()), hosts
    assert repository.allocation_list() == []
    assert state.leaks() == []


# -- 9: confirm and revert at once -----------------------------------------

@pytest.mark.parametrize('winner_ends', (True, False))
@pytest.mark.parametrize('loser', RESOLUTIONS)
def test_confirm_and_revert_at_once_the_loser_gets_409(cloud, monkeypatch,
                                                       loser, winner_ends):
    vm = _server(cloud, loser)
    winner = OPPOSITE[loser]
    check_state = api_moves._check_state
    won = []

    def checked_then_winner(inst, method, ctx):
        check_state(inst, method, ctx)
        if method == loser and not won:
            won.append(True)
            if winner_ends:
                _run(cloud, winner, vm)
            else:
                # The winner's flow is under way when the loser reads.
                faults.inject('ReleaseSourceClaim' if
                              winner == 'confirm_resize' else
                              'DestroyDestination',
                              exc_class=faults.SimulatedCrash)
                with pytest.raises(faults.SimulatedCrash):
                    _run(cloud, winner, vm)
                faults.clear()
                _die()
            won.append(_migrations(vm))

    monkeypatch.setattr(api_moves, '_check_state', checked_then_winner)
    with pytest.raises(exception.Conflict) as e:
        _run(cloud, loser, vm)
    assert e.value.code == 409
    mig = repository.migration_list(vm)[-1]
    assert mig['uuid'] in str(e.value)
    assert mig['status'] in str(e.value)
    assert _migrations(vm) == won[-1]
    monkeypatch.setattr(api_moves, '_check_state', check_state)
    if not winner_ends:
        api.resume_flow(cloud.ctx, mig['flow_id'])
    assert state.leaks() == []


# -- 2: driver steps never destroy what the records call live --------------

@pytest.mark.parametrize('step', ('CleanupSource', 'DestroyDestination'))
def test_driver_steps_refuse_to_destroy_the_live_guest(cloud, step):
    """A stale confirm's CleanupSource after the user's revert (the guest
    lives on the source again), or a stale revert's DestroyDestination
    after the user's confirm (the guest lives on the destination, for
    good), refuses and changes nothing."""
    from resize_flows.tasks import dest
    from resize_flows.tasks import source
    vm = cloud.server()['uuid']
    mig = api.resize(cloud.ctx, vm, 'big', wait=True).migration_uuid
    if step == 'CleanupSource':
        api.revert_resize(cloud.ctx, vm, wait=True)
        task = source.CleanupSource()
        live = 'host1'
    else:
        api.confirm_resize(cloud.ctx, vm, wait=True)
        task = dest.DestroyDestination()
        live = 'host2'
    before = state.capture()
    with pytest.raises(exception.RefusedByRecords):
        task.execute(migration_uuid=mig)
    assert state.capture() == before
    assert vm in before['hosts'][live]['domains']
    assert state.leaks() == []
