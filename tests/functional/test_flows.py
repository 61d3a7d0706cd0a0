"""Resize, migrate, confirm and revert end to end on the test driver."""
import pytest

from resize_flows import api
from resize_flows.api import moves as api_moves
from resize_flows import engine
from resize_flows import exception
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state
from resize_flows import virt


def _driver(name):
    return virt.get_driver(repository.host_get(name))


def test_resize_then_confirm(cloud):
    vm = cloud.server()
    result = api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    mig = result['migration']
    assert result['flow_state'] == 'SUCCESS'
    assert mig['status'] == states.MIGRATION_FINISHED
    assert (mig['source_compute'], mig['dest_compute']) == ('host1', 'host2')
    inst = repository.instance_get(vm['uuid'])
    assert inst['vm_state'] == states.RESIZED
    assert inst['host'] == 'host2'
    assert inst['flavor_id'] == cloud.big['id']
    assert inst['old_flavor_id'] == cloud.small['id']
    # RESIZED: the source keeps its copy and its usage until confirm.
    src = _driver('host1')
    assert src.disk_info(vm['uuid'], '_resize') is not None
    assert src.instance_exists(vm['uuid'])
    assert {a['consumer_uuid']: a['host']
            for a in repository.allocation_list()} == {
        vm['uuid']: 'host2', mig['uuid']: 'host1'}
    assert state.leaks() == []

    result = api.confirm_resize(cloud.ctx, vm['uuid'], wait=True)
    assert result['migration']['status'] == states.MIGRATION_CONFIRMED
    inst = repository.instance_get(vm['uuid'])
    assert inst['vm_state'] == states.ACTIVE
    assert inst['task_state'] is None
    assert inst['old_flavor_id'] is None and inst['new_flavor_id'] is None
    dest = _driver('host2')
    info = dest.get_info(vm['uuid'])
    assert (info.power_state, info.vcpus, info.memory_mb) == (
        states.RUNNING, 2, 128)
    assert dest.disk_info(vm['uuid']).virtual_size == 2 * 1024 ** 3
    assert not src.instance_exists(vm['uuid'])
    assert src.list_instance_dirs() == []
    assert [(a['host'], a['vcpus'], a['memory_mb'], a['disk_gb'])
            for a in repository.allocation_list()] == [('host2', 2, 128, 2)]
    assert dest.disk_info(vm['uuid']).snapshots == ()
    assert state.leaks() == []


def test_migrate_then_revert_restores_everything(cloud):
    vm = cloud.server()
    before = state.capture()
    result = api.migrate(cloud.ctx, vm['uuid'], wait=True)
    mig = result['migration']
    assert mig['migration_type'] == states.MIGRATION_TYPE_MIGRATION
    assert mig['old_flavor_id'] == mig['new_flavor_id'] == cloud.small['id']
    assert repository.instance_get(vm['uuid'])['host'] == 'host2'

    result = api.revert_resize(cloud.ctx, vm['uuid'], wait=True)
    assert result['migration']['status'] == states.MIGRATION_REVERTED
    after = state.capture()
    assert after == before
    assert _driver('host1').get_info(vm['uuid']).power_state == \
        states.RUNNING
    assert _driver('host2').list_instance_dirs() == []
    assert state.leaks() == []


def test_revert_of_stopped_server_leaves_it_off(cloud):
    vm = cloud.server(power_on=False)
    assert vm['vm_state'] == states.STOPPED
    before = state.capture()
    api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    assert _driver('host2').get_info(vm['uuid']).power_state == \
        states.SHUTDOWN
    api.revert_resize(cloud.ctx, vm['uuid'], wait=True)
    assert state.capture() == before
    assert repository.instance_get(vm['uuid'])['vm_state'] == states.STOPPED


def test_resize_to_same_host_when_allowed(cloud, conf):
    conf.set_override('allow_resize_to_same_host', True, group='compute')
    repository.host_set_enabled('host2', False)
    vm = cloud.server()
    before = state.capture()
    result = api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    assert result['migration']['dest_compute'] == 'host1'
    drv = _driver('host1')
    info = drv.get_info(vm['uuid'])
    assert (info.power_state, info.vcpus, info.memory_mb) == (
        states.RUNNING, 2, 128)
    assert sorted(drv.list_instance_dirs()) == [vm['uuid'],
                                                vm['uuid'] + '_resize']
    # Old and new flavor are both held on the one host until confirm.
    assert sorted((a['vcpus'], a['host']) for a in
                  repository.allocation_list()) == [(1, 'host1'),
                                                    (2, 'host1')]
    api.revert_resize(cloud.ctx, vm['uuid'], wait=True)
    assert state.capture() == before
    api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    api.confirm_resize(cloud.ctx, vm['uuid'], wait=True)
    assert drv.list_instance_dirs() == [vm['uuid']]
    assert drv.get_info(vm['uuid']).vcpus == 2
    assert state.leaks() == []


def test_migrate_never_stays_on_its_host(cloud, conf):
    conf.set_override('allow_resize_to_same_host', True, group='compute')
    repository.host_set_enabled('host2', False)
    vm = cloud.server()
    with pytest.raises(exception.NoValidHost):
        api.migrate(cloud.ctx, vm['uuid'], wait=True)


def test_migrate_to_named_host(cloud):
    api.create_host(cloud.ctx, 'host3', 8, 4096, 40)
    vm = cloud.server()
    result = api.migrate(cloud.ctx, vm['uuid'], host='host3', wait=True)
    assert result['migration']['dest_compute'] == 'host3'
    api.confirm_resize(cloud.ctx, vm['uuid'], wait=True)
    assert repository.instance_get(vm['uuid'])['host'] == 'host3'
    assert state.leaks() == []


@pytest.mark.parametrize('call, error', [
    (lambda c, vm: api.resize(c.ctx, 'nope', 'big', wait=True),
     exception.InstanceNotFound),
    (lambda c, vm: api.resize(c.ctx, vm, 'nope', wait=True),
     exception.FlavorNotFound),
    (lambda c, vm: api.resize(c.ctx, vm, 'small', wait=True),
     exception.CannotResizeToSameFlavor),
    (lambda c, vm: api.resize(c.ctx, vm, 'tinydisk', wait=True),
     exception.CannotResizeDisk),
    (lambda c, vm: api.migrate(c.ctx, vm, host='host1', wait=True),
     exception.InvalidInput),
    (lambda c, vm: api.migrate(c.ctx, vm, host='nope', wait=True),
     exception.HostNotFound),
    (lambda c, vm: api.confirm_resize(c.ctx, vm, wait=True),
     exception.InstanceInvalidState),
    (lambda c, vm: api.revert_resize(c.ctx, vm, wait=True),
     exception.InstanceInvalidState),
])
def test_bad_requests_change_nothing(cloud, call, error):
    vm = cloud.server()['uuid']
    before = state.capture()
    with pytest.raises(error):
        call(cloud, vm)
    assert state.capture() == before
    assert repository.migration_list() == []
    assert [a['action'] for a in api.list_actions(cloud.ctx, vm)] == []


def test_no_host_with_capacity_changes_nothing(cloud):
    huge = api.create_flavor(cloud.ctx, 'huge', 64, 128, 2)
    vm = cloud.server()['uuid']
    before = state.capture()
    with pytest.raises(exception.NoValidHost):
        api.resize(cloud.ctx, vm, huge['name'], wait=True)
    assert state.capture() == before
    assert repository.migration_list() == []


def test_locked_and_busy_servers_are_refused(cloud):
    vm = cloud.server()['uuid']
    repository.instance_update(vm, {'locked': True})
    member = api.RequestContext(user_id='u', project_id='admin', roles=())
    with pytest.raises(exception.InstanceIsLocked):
        api.resize(member, vm, 'big', wait=True)
    repository.instance_update(vm, {'locked': False,
                                    'task_state': states.RESIZE_PREP})
    with pytest.raises(exception.InstanceInvalidState):
        api.resize(cloud.ctx, vm, 'big', wait=True)


def test_compare_and_swap_lets_one_operation_start(cloud):
    vm = cloud.server()
    inst = repository.instance_get(vm['uuid'])
    api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    # A second request that read the instance before the first started.
    flows_before = _stored_flows()
    with pytest.raises(exception.Conflict):
        api_moves._start_move(cloud.ctx, inst, 'resize', cloud.small,
                              cloud.big, None, ())
    assert len(repository.migration_list()) == 1
    # The refused operation's stored flow was discarded.
    assert _stored_flows() == flows_before


def _stored_flows():
    import sqlalchemy as sa
    from resize_flows.persistence import db
    with db.get_engine().connect() as conn:
        return conn.execute(sa.text('SELECT uuid FROM flow_details')).all()


def test_flow_rebuilds_from_the_log_alone(cloud):
    vm = cloud.server()
    result = api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    handle = engine.load(result['flow_id'])
    assert handle.operation == 'resize'
    assert handle.meta['migration_uuid'] == result['migration']['uuid']
    _book, detail = engine.find_detail(result['flow_id'])
    names = [a.name for a in detail]
    assert 'BeginMigration' in names and 'MarkMigrationFinished' in names


def test_actions_and_events_are_recorded(cloud):
    vm = cloud.server()['uuid']
    api.resize(cloud.ctx, vm, 'big', wait=True)
    api.confirm_resize(cloud.ctx, vm, wait=True)
    actions = api.list_actions(cloud.ctx, vm)
    assert [a['action'] for a in actions] == ['confirmResize', 'resize']
    events = [e['event'] for e in actions[1]['events']]
    assert events[0] == 'BeginMigration'
    assert events[-1] == 'MarkMigrationFinished'
    assert all(e['result'] == 'Success' for e in actions[1]['events'])


def test_delete_server_and_host(cloud):
    vm = cloud.server()['uuid']
    mig = api.resize(cloud.ctx, vm, 'big', wait=True).migration_uuid
    with pytest.raises(exception.Conflict):
        api.delete_host(cloud.ctx, 'host2')
    # A RESIZED server is confirmed first, as Nova does, then deleted.
    api.delete_server(cloud.ctx, vm)
    assert instance_actions.action_list(vm) == []
    with pytest.raises(exception.MigrationNotFound):
        repository.migration_get(mig)
    assert repository.instance_list() == []
    assert repository.allocation_list() == []
    assert _driver('host2').list_instance_dirs() == []
    assert not _driver('host2').instance_exists(vm)
    api.delete_host(cloud.ctx, 'host2')
    assert [h['name'] for h in repository.host_list()] == ['host1']
