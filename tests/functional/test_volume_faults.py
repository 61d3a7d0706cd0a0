"""Faults and crashes in flows that carry a volume: a fault undoes the
volumes plugin's steps with the rest, exactly; a crash then resume or
rollback leaves nothing for audit() to find."""
import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import flows
from resize_flows.flows import confirm
from resize_flows.flows import resize
from resize_flows.flows import revert
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state
from tests.functional import volume_helpers as vh

PLUGINS = ['volumes']
MOVE = [a.name for a in flows.iter_tasks(
    resize.get_resize_flow(plugins=PLUGINS))]
CONFIRM = [a.name for a in flows.iter_tasks(
    confirm.get_confirm_resize_flow(plugins=PLUGINS))]
REVERT = [a.name for a in flows.iter_tasks(
    revert.get_revert_resize_flow(plugins=PLUGINS))]
NO_RETURN = {'CleanupSource', 'DeleteDestinationFiles'}
POINTS = (faults.BEFORE_EXECUTE, faults.AFTER_EXECUTE)


def test_the_plugin_tasks_are_in_the_flows():
    assert MOVE.index('volumes.ConnectOnDestination') == \
        MOVE.index('FinishMigration') - 1
    assert CONFIRM.index('volumes.DropSourceAttachment') == \
        CONFIRM.index('CleanupSource') - 1
    assert REVERT.index('volumes.ConnectOnSource') == \
        REVERT.index('RestoreSource') - 1


@pytest.fixture
def attached(cloud, conf):
    """(cloud, vm uuid, volume): a running server on host1 with a
    volume attached."""
    conf.set_override('plugins', PLUGINS)
    vm = cloud.server()['uuid']
    vol = api.create_volume(cloud.ctx, 'data', 1)
    api.attach_volume(cloud.ctx, vm, vol['id'])
    yield cloud, vm, vol
    conf.clear_override('plugins')


def _snapshot():
    return state.capture(caches=False), vh.plugin().state()


def _run(cloud, operation, vm):
    if operation == 'migrate':
        api.migrate(cloud.ctx, vm, wait=True)
    else:
        getattr(api, operation)(cloud.ctx, vm, wait=True)


def _where_connected(vol):
    return sorted(h for (v, h), c in vh.attachments().items() if c)


def _check_at_rest(vm, vol):
    """audit() and leaks() find nothing, and the one connected host's
    domain has the disk (read through libvirt)."""
    assert vh.plugin().audit() == []
    assert state.leaks() == []
    [host] = _where_connected(vol)
    assert host == repository.instance_get(vm)['host']
    assert vol['id'] in vh.domain_disks(host, vm)


# A move's first steps touch nothing of the plugin (test_faults covers
# them): from the source's power off on.
MOVE_FROM_POWER_OFF = MOVE[MOVE.index('PowerOffSource'):]
CASES = ([('migrate', t, p) for t in MOVE_FROM_POWER_OFF for p in POINTS] +
         [('confirm_resize', t, p) for t in CONFIRM for p in POINTS
          if not (t in NO_RETURN and p == faults.AFTER_EXECUTE)] +
         [('revert_resize', t, p) for t in REVERT for p in POINTS
          if not (t in NO_RETURN and p == faults.AFTER_EXECUTE)])


@pytest.mark.sweep
@pytest.mark.parametrize('operation, task, point', CASES)
def test_a_fault_undoes_exactly(attached, operation, task, point):
    cloud, vm, vol = attached
    if operation != 'migrate':
        api.migrate(cloud.ctx, vm, wait=True)
    before = _snapshot()
    faults.inject(task, point)
    with pytest.raises(faults.InjectedFault):
        _run(cloud, operation, vm)
    assert faults.hits(task, point) == 1
    assert _snapshot() == before
    _check_at_rest(vm, vol)


def _crash(cloud, vm, operation, task, point):
    if operation != 'migrate':
        api.migrate(cloud.ctx, vm, wait=True)
    before = _snapshot()
    faults.inject(task, point, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        _run(cloud, operation, vm)
    faults.clear()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    return before, flow_id


NEAR = {'migrate': ('MoveSourceToResize', 'CopyDisk',
                    'volumes.ConnectOnDestination', 'FinishMigration'),
        'confirm_resize': ('MarkConfirmed', 'volumes.DropSourceAttachment',
                           'CleanupSource'),
        'revert_resize': ('DestroyDestination', 'volumes.ConnectOnSource',
                          'RestoreSource')}
CRASHES = [(op, t, p) for op, tasks in NEAR.items() for t in tasks
           for p in POINTS]


@pytest.mark.parametrize('operation, task, point', CRASHES)
def test_crash_then_resume(attached, operation, task, point):
    cloud, vm, vol = attached
    _before, flow_id = _crash(cloud, vm, operation, task, point)
    assert api.resume_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.SUCCESS
    _check_at_rest(vm, vol)
    expected = {'migrate': 'host2', 'confirm_resize': 'host2',
                'revert_resize': 'host1'}[operation]
    assert _where_connected(vol) == [expected]


@pytest.mark.parametrize('operation, task, point', [
    c for c in CRASHES
    if not (c[1] in NO_RETURN and c[2] == faults.AFTER_EXECUTE)])
def test_crash_then_rollback(attached, operation, task, point):
    cloud, vm, vol = attached
    before, flow_id = _crash(cloud, vm, operation, task, point)
    assert api.rollback_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.REVERTED
    assert _snapshot() == before
    _check_at_rest(vm, vol)
