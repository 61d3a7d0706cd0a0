"""instance.resize* notifications, delivered to notifier plugins."""
import logging

import pytest

from resize_flows import api
from resize_flows import notifications
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import notifier

MOVE = ['instance.resize_prep.start', 'instance.resize_prep.end',
        'instance.resize.start', 'instance.resize.end',
        'instance.resize_finish.start', 'instance.resize_finish.end']
CONFIRM = ['instance.resize_confirm.start', 'instance.resize_confirm.end']
REVERT = ['instance.resize_revert.start', 'instance.resize_revert.end']


@pytest.fixture
def captured(cloud, conf):
    """Notifications go to the ``capture`` plugin, loaded through its
    entry point in the resize_flows.notifiers group."""
    conf.set_override('drivers', ['capture'], group='notifications')
    notifier.clear()
    yield notifier.CAPTURED
    conf.clear_override('drivers', group='notifications')
    notifier.clear()


def test_each_operation_notifies_in_order(cloud, captured):
    vm = cloud.server()['uuid']
    ctx = cloud.ctx
    op = api.resize(ctx, vm, 'big', wait=True)
    api.confirm_resize(cloud.ctx, vm, wait=True)
    api.migrate(cloud.ctx, vm, wait=True)
    api.revert_resize(cloud.ctx, vm, wait=True)
    assert notifier.event_types(vm) == MOVE + CONFIRM + MOVE + REVERT
    first = captured[0]
    assert first['priority'] == 'INFO'
    assert first['publisher_id'].startswith('resize-flows:')
    payload = first['payload']
    assert payload['instance_uuid'] == vm
    assert payload['project_id'] == 'admin'
    assert payload['migration_uuid'] == op.migration_uuid
    assert payload['request_id'] == ctx.request_id
    assert payload['flow_id'] == op.flow_id
    assert (payload['source_host'], payload['dest_host']) == ('host1',
                                                              'host2')
    flavor = repository.flavor_get(cloud.big['id'])
    assert payload['old_flavor']['name'] == 'small'
    assert payload['new_flavor'] == {
        k: flavor[k] for k in ('id', 'name', 'vcpus', 'memory_mb',
                               'root_gb', 'ephemeral_gb', 'swap_mb')}
    assert payload['operation'] == 'resize'


def test_failed_step_notifies_an_error(cloud, captured):
    vm = cloud.server()['uuid']
    faults.inject('CopyDisk', faults.AFTER_EXECUTE)
    with pytest.raises(faults.InjectedFault):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    assert notifier.event_types(vm) == MOVE[:3] + ['instance.resize.error']
    error = captured[-1]
    assert error['priority'] == 'ERROR'
    assert error['payload']['failed_step'] == 'CopyDisk'
    assert error['payload']['fault']['exception'] == \
        'resize_flows.testing.faults.InjectedFault'


def test_reschedule_notifies_the_error_then_preps_again(cloud, captured):
    api.create_host(cloud.ctx, 'host3', 8, 4096, 40)
    vm = cloud.server()['uuid']
    faults.inject('PrepareDestination')
    api.resize(cloud.ctx, vm, 'big', wait=True)
    assert notifier.event_types(vm) == [
        'instance.resize_prep.start', 'instance.resize.error'] + MOVE
    hosts = [n['payload']['dest_host'] for n in captured]
    assert hosts[:3] == ['host2', 'host2', 'host3']


def test_resumed_flow_still_notifies(cloud, captured):
    vm = cloud.server()['uuid']
    faults.inject('CopyDisk', exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    faults.clear()
    assert notifier.event_types(vm) == MOVE[:3]
    notifier.clear()
    flow_id = api.list_migrations(cloud.ctx, vm)[0]['flow_id']
    api.resume_flow(cloud.ctx, flow_id)
    assert notifier.event_types(vm) == MOVE[3:]


class _Broken:
    def notify(self, notification):
        raise RuntimeError('notifier down')


def test_a_failing_plugin_never_breaks_a_flow(cloud, captured, conf,
                                              caplog):
    notifications.register('broken', _Broken())
    try:
        conf.set_override('drivers', ['broken', 'nope', 'capture'],
                          group='notifications')
        vm = cloud.server()['uuid']
        with caplog.at_level(logging.ERROR, 'resize_flows.notifications'):
            op = api.resize(cloud.ctx, vm, 'big', wait=True)
        assert op.migration['status'] == 'finished'
        assert notifier.event_types(vm) == MOVE
        assert 'notifier broken failed' in caplog.text
        assert 'cannot load notifier nope' in caplog.text
    finally:
        notifications.unregister('broken')


def test_log_notifier_ships_by_default(cloud, conf, caplog):
    assert conf.notifications.drivers == ['log']
    vm = cloud.server()['uuid']
    with caplog.at_level(logging.INFO, 'resize_flows.notifications'):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    lines = [r.getMessage() for r in caplog.records
             if r.name == 'resize_flows.notifications']
    assert [line.split()[0] for line in lines] == MOVE
    assert all('instance=%s' % vm in line for line in lines)
