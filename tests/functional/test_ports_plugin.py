"""The ``ports`` plugin on libvirt's test driver: ports, their bindings
through every move, the guest's NICs (read from libvirt), faults, crashes
and refusals."""
import xml.etree.ElementTree as ET

import libvirt
import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows import flows
from resize_flows.flows import confirm
from resize_flows.flows import resize
from resize_flows.flows import revert
from resize_flows.persistence import db
from resize_flows.persistence import models
from resize_flows.persistence import ports as port_records
from resize_flows.persistence import repository
from resize_flows.plugins import ports as ports_plugin
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows.virt.libvirt import host as libvirt_host

P = ['ports']
MOVE_TASKS = [a.name for a in flows.iter_tasks(
    resize.get_resize_flow(plugins=P))]
CONFIRM_TASKS = [a.name for a in flows.iter_tasks(
    confirm.get_confirm_resize_flow(plugins=P))]
REVERT_TASKS = [a.name for a in flows.iter_tasks(
    revert.get_revert_resize_flow(plugins=P))]


@pytest.fixture
def pcloud(conf, cloud):
    conf.set_override('plugins', P)
    yield cloud
    api.wait_all()
    conf.clear_override('plugins')


def _plugin():
    return ports_plugin.PortsPlugin()


def _bindings(port_id):
    return {b['host']: b['status']
            for b in api.get_port(api.get_admin_context(),
                                  port_id)['bindings']}


def _macs(host, uuid):
    """The MACs of the interfaces of the domain of ``uuid`` on ``host``,
    as libvirt has it defined."""
    conn = libvirt_host.get_connection(repository.host_get(host)['uri'])
    xml = conn.lookupByUUIDString(uuid).XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)
    return {m.get('address') for m in
            ET.fromstring(xml).findall('./devices/interface/mac')}


def _server_with_port(pcloud, name='vm1'):
    vm = pcloud.server(name)['uuid']
    port = api.create_port(pcloud.ctx, name + '-port', server=vm)
    return vm, port


def _unchanged(pcloud):
    """What a refused request must leave as it is."""
    return state.capture(), _plugin().state()


# -- create, list, show, delete ---------------------------------------------

def test_create_list_show_delete(pcloud):
    ctx = pcloud.ctx
    p1 = api.create_port(ctx, 'p1')
    assert p1['mac_address'].startswith('fa:16:3e:')
    assert (p1['instance_uuid'], p1['bindings']) == (None, [])
    p2 = api.create_port(ctx, 'p2', mac='FA:16:3E:00:00:02')
    assert p2['mac_address'] == 'fa:16:3e:00:00:02'
    assert [p['name'] for p in api.list_ports(ctx)] == ['p1', 'p2']
    assert api.get_port(ctx, 'p2')['id'] == p2['id']
    assert api.get_port(ctx, p1['id'])['name'] == 'p1'
    before = _plugin().state()
    with pytest.raises(exception.MacAddressInUse):
        api.create_port(ctx, 'p3', mac='fa:16:3e:00:00:02')
    for bad in ('nonsense', '01:00:5e:00:00:01', 'fa:16:3e:00:00'):
        with pytest.raises(exception.InvalidInput):
            api.create_port(ctx, 'p3', mac=bad)
    with pytest.raises(exception.InvalidInput):
        api.create_port(ctx, '')
    assert _plugin().state() == before
    api.delete_port(ctx, 'p1')
    with pytest.raises(exception.PortNotFound):
        api.get_port(ctx, p1['id'])
    assert [p['name'] for p in api.list_ports(ctx)] == ['p2']
    assert _plugin().audit() == []


def test_attach_at_create_and_later_then_detach(pcloud):
    ctx = pcloud.ctx
    vm, p1 = _server_with_port(pcloud)
    assert p1['instance_uuid'] == vm
    assert _bindings(p1['id']) == {'host1': 'ACTIVE'}
    assert p1['mac_address'] in _macs('host1', vm)
    p2 = api.create_port(ctx, 'p2', mac='fa:16:3e:aa:bb:cc')
    assert 'fa:16:3e:aa:bb:cc' not in _macs('host1', vm)
    attached = api.attach_port(ctx, vm, 'p2')
    assert attached['bindings'] == [{'host': 'host1', 'status': 'ACTIVE'}]
    assert {p1['mac_address'], 'fa:16:3e:aa:bb:cc'} <= _macs('host1', vm)
    assert [p['name'] for p in api.list_ports(ctx, server=vm)] == \
        ['p2', 'vm1-port']
    detached = api.detach_port(ctx, vm, p2['id'])
    assert (detached['instance_uuid'], detached['bindings']) == (None, [])
    assert 'fa:16:3e:aa:bb:cc' not in _macs('host1', vm)
    assert p1['mac_address'] in _macs('host1', vm)
    assert _plugin().audit() == []
    assert state.leaks() == []


def test_server_delete_releases_its_ports(pcloud):
    vm, port = _server_with_port(pcloud)
    api.delete_server(pcloud.ctx, vm)
    shown = api.get_port(pcloud.ctx, port['id'])
    assert (shown['instance_uuid'], shown['bindings']) == (None, [])
    assert _plugin().audit() == []


# -- moves ------------------------------------------------------------------

def test_the_tasks_are_at_their_points():
    assert MOVE_TASKS.index('ports.BindDestination') == \
        MOVE_TASKS.index('PowerOffSource') - 1
    assert MOVE_TASKS.index('ports.ActivateDestination') == \
        MOVE_TASKS.index('FinishMigration') - 1
    assert CONFIRM_TASKS.index('ports.RemoveSourceBinding') == \
        CONFIRM_TASKS.index('CleanupSource') - 1
    assert REVERT_TASKS.index('ports.RestoreSourceBinding') == \
        REVERT_TASKS.index('RestoreSource') - 1


def _crash_after(vm, task, call):
    """Run ``call`` (an operation on ``vm``) with a crash right after
    ``task``'s execute; returns the flow id."""
    faults.inject(task, faults.AFTER_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        call()
    faults.clear()
    return repository.migration_list(vm)[-1]['flow_id']


@pytest.mark.parametrize('operation', ['resize', 'migrate'])
def test_bindings_at_every_stage_of_a_move_then_confirm(pcloud, operation):
    vm, port = _server_with_port(pcloud)
    pid, mac = port['id'], port['mac_address']

    def move():
        if operation == 'resize':
            api.resize(pcloud.ctx, vm, 'big', wait=True)
        else:
            api.migrate(pcloud.ctx, vm, wait=True)
    flow_id = _crash_after(vm, 'ports.BindDestination', move)
    assert _bindings(pid) == {'host1': 'ACTIVE', 'host2': 'INACTIVE'}
    assert _plugin().audit() == []
    api.rollback_flow(pcloud.ctx, flow_id)
    assert _bindings(pid) == {'host1': 'ACTIVE'}
    flow_id = _crash_after(vm, 'ports.ActivateDestination', move)
    assert _bindings(pid) == {'host1': 'INACTIVE', 'host2': 'ACTIVE'}
    # Under way, not finished: either host may hold the ACTIVE binding.
    assert _plugin().audit() == []
    api.resume_flow(pcloud.ctx, flow_id)
    assert repository.instance_get(vm)['host'] == 'host2'
    assert _bindings(pid) == {'host1': 'INACTIVE', 'host2': 'ACTIVE'}
    assert mac in _macs('host2', vm)
    assert _plugin().audit() == []
    flow_id = _crash_after(vm, 'ports.RemoveSourceBinding',
                           lambda: api.confirm_resize(pcloud.ctx, vm,
                                                      wait=True))
    assert _bindings(pid) == {'host2': 'ACTIVE'}
    api.resume_flow(pcloud.ctx, flow_id)
    assert _bindings(pid) == {'host2': 'ACTIVE'}
    assert mac in _macs('host2', vm)
    assert _plugin().audit() == []
    assert state.leaks() == []


def test_bindings_after_migrate_and_revert(pcloud):
    vm, port = _server_with_port(pcloud)
    pid, mac = port['id'], port['mac_address']
    api.migrate(pcloud.ctx, vm, wait=True)
    assert _bindings(pid) == {'host1': 'INACTIVE', 'host2': 'ACTIVE'}
    assert mac in _macs('host2', vm)
    flow_id = _crash_after(vm, 'ports.RestoreSourceBinding',
                           lambda: api.revert_resize(pcloud.ctx, vm,
                                                     wait=True))
    assert _bindings(pid) == {'host1': 'ACTIVE'}
    api.resume_flow(pcloud.ctx, flow_id)
    assert repository.instance_get(vm)['host'] == 'host1'
    assert _bindings(pid) == {'host1': 'ACTIVE'}
    assert mac in _macs('host1', vm)
    assert _plugin().audit() == []
    assert state.leaks() == []


def test_resize_on_one_host_keeps_one_binding(pcloud, conf):
    conf.set_override('allow_resize_to_same_host', True, group='compute')
    try:
        vm, port = _server_with_port(pcloud)
        # The scheduler would choose host2 were it enabled.
        repository.host_set_enabled('host2', False)
        api.resize(pcloud.ctx, vm, 'big', wait=True)
        assert repository.instance_get(vm)['host'] == 'host1'
        assert _bindings(port['id']) == {'host1': 'ACTIVE'}
        api.confirm_resize(pcloud.ctx, vm, wait=True)
        assert _bindings(port['id']) == {'host1': 'ACTIVE'}
        assert port['mac_address'] in _macs('host1', vm)
        assert _plugin().audit() == []
    finally:
        conf.clear_override('allow_resize_to_same_host', group='compute')


# -- faults and crashes ------------------------------------------------------

def _later(tasks, first):
    return tasks[tasks.index(first):]


@pytest.mark.sweep
@pytest.mark.parametrize('task', _later(MOVE_TASKS, 'ports.BindDestination'))
def test_fault_in_a_move_undoes_the_bindings(pcloud, task):
    vm, _port = _server_with_port(pcloud)
    before = _unchanged(pcloud)
    faults.inject(task, faults.AFTER_EXECUTE
                  if task.startswith('ports.') else faults.BEFORE_EXECUTE)
    with pytest.raises(faults.InjectedFault):
        api.migrate(pcloud.ctx, vm, wait=True)
    assert _unchanged(pcloud) == before
    assert _plugin().audit() == []
    assert state.leaks() == []


@pytest.mark.parametrize('operation, task', [
    ('confirm_resize', t) for t in _later(CONFIRM_TASKS,
                                          'ports.RemoveSourceBinding')
] + [
    ('revert_resize', t) for t in _later(REVERT_TASKS,
                                         'ports.RestoreSourceBinding')
])
def test_fault_in_confirm_or_revert_undoes_the_bindings(pcloud, operation,
                                                        task):
    vm, _port = _server_with_port(pcloud)
    api.migrate(pcloud.ctx, vm, wait=True)
    before = _unchanged(pcloud)
    faults.inject(task, faults.AFTER_EXECUTE
                  if task.startswith('ports.') else faults.BEFORE_EXECUTE)
    with pytest.raises(faults.InjectedFault):
        getattr(api, operation)(pcloud.ctx, vm, wait=True)
    assert _unchanged(pcloud) == before
    assert _plugin().audit() == []
    assert state.leaks() == []


@pytest.mark.parametrize('then', ['resume', 'rollback'])
@pytest.mark.parametrize('task', ['ports.BindDestination', 'PowerOffSource',
                                  'ports.ActivateDestination',
                                  'FinishMigration'])
def test_crash_in_a_move_then_resume_or_rollback(pcloud, task, then):
    vm, port = _server_with_port(pcloud)
    before = _unchanged(pcloud)
    flow_id = _crash_after(vm, task, lambda: api.migrate(
        pcloud.ctx, vm, wait=True))
    if then == 'resume':
        api.resume_flow(pcloud.ctx, flow_id)
        assert _bindings(port['id']) == {'host1': 'INACTIVE',
                                         'host2': 'ACTIVE'}
    else:
        api.rollback_flow(pcloud.ctx, flow_id)
        assert _unchanged(pcloud) == before
    assert _plugin().audit() == []
    assert state.leaks() == []


@pytest.mark.parametrize('operation, task', [
    ('confirm_resize', 'ports.RemoveSourceBinding'),
    ('revert_resize', 'ports.RestoreSourceBinding'),
    ('revert_resize', 'RestoreSource')])
def test_crash_in_confirm_or_revert_then_rollback(pcloud, operation, task):
    vm, _port = _server_with_port(pcloud)
    api.migrate(pcloud.ctx, vm, wait=True)
    before = _unchanged(pcloud)
    flow_id = _crash_after(vm, task, lambda: getattr(api, operation)(
        pcloud.ctx, vm, wait=True))
    api.rollback_flow(pcloud.ctx, flow_id)
    assert _unchanged(pcloud) == before
    assert _plugin().audit() == []
    assert state.leaks() == []


# -- refusals -----------------------------------------------------------------

def test_bad_input_changes_nothing(pcloud):
    ctx = pcloud.ctx
    vm, p1 = _server_with_port(pcloud)
    vm2 = pcloud.server('vm2')['uuid']
    other = api.create_port(pcloud.member('other'), 'theirs')
    free = api.create_port(ctx, 'free')
    member = pcloud.member()
    before = _unchanged(pcloud)
    refusals = [
        (exception.PortNotFound, api.get_port, ctx, 'no-such-port'),
        (exception.PortNotFound, api.attach_port, ctx, vm, 'no-such-port'),
        (exception.PortNotFound, api.delete_port, ctx, 'no-such-port'),
        # Another project's port is unknown to a member.
        (exception.PortNotFound, api.get_port, member, other['id']),
        (exception.PortNotFound, api.attach_port, member, vm, other['id']),
        (exception.PortNotFound, api.delete_port, member, other['id']),
        # An admin may see it, but not give it to this project's server.
        (exception.Conflict, api.attach_port, ctx, vm, other['id']),
        (exception.PortInUse, api.attach_port, ctx, vm2, p1['id']),
        (exception.PortInUse, api.delete_port, ctx, p1['id']),
        (exception.PortNotAttached, api.detach_port, ctx, vm2, p1['id']),
        (exception.InstanceNotFound, api.attach_port, ctx, 'nope', 'free'),
    ]
    for error, call, *args in refusals:
        with pytest.raises(error) as e:
            call(*args)
        assert '\n' not in str(e.value)
        assert _unchanged(pcloud) == before, (call, args)
    assert [p['name'] for p in api.list_ports(member)] == ['free',
                                                           'vm1-port']
    assert free['instance_uuid'] is None


def test_attach_and_detach_refused_during_a_move(pcloud):
    ctx = pcloud.ctx
    vm, p1 = _server_with_port(pcloud)
    api.create_port(ctx, 'free')
    api.migrate(ctx, vm, wait=True)      # RESIZED
    before = _unchanged(pcloud)
    for call in (lambda: api.attach_port(ctx, vm, 'free'),
                 lambda: api.detach_port(ctx, vm, p1['id']),
                 lambda: api.create_port(ctx, 'new', server=vm)):
        with pytest.raises(exception.InstanceInvalidState, match='resized'):
            call()
        assert _unchanged(pcloud) == before
    api.confirm_resize(ctx, vm, wait=True)
    # An interrupted move: the flow is named.
    flow_id = _crash_after(vm, 'PowerOffSource',
                           lambda: api.migrate(ctx, vm, wait=True))
    before = _unchanged(pcloud)
    for call in (lambda: api.attach_port(ctx, vm, 'free'),
                 lambda: api.detach_port(ctx, vm, p1['id'])):
        with pytest.raises(exception.InstanceHasUnfinishedFlow) as e:
            call()
        assert flow_id in str(e.value)
        assert _unchanged(pcloud) == before
    api.rollback_flow(ctx, flow_id)
    assert api.attach_port(ctx, vm, 'free')['bindings'] == [
        {'host': 'host2', 'status': 'ACTIVE'}]
    assert _plugin().audit() == []


def test_attach_needs_the_plugin_enabled(pcloud, conf):
    vm = pcloud.server()['uuid']
    api.create_port(pcloud.ctx, 'p1')
    conf.set_override('plugins', [])
    with pytest.raises(exception.InvalidInput, match='not enabled'):
        api.attach_port(pcloud.ctx, vm, 'p1')
    assert api.get_port(pcloud.ctx, 'p1')['instance_uuid'] is None


def test_audit_finds_wrong_bindings(pcloud):
    vm, port = _server_with_port(pcloud)
    assert _plugin().audit() == []
    port_records.set_bindings(vm, {'host2': 'ACTIVE'})
    found = _plugin().audit()
    assert any('more than one host' in f for f in found), found
    assert any('bound ACTIVE on host2' in f for f in found), found
    port_records.set_bindings(vm, {'host2': None, 'host1': 'INACTIVE'})
    assert any('no ACTIVE binding' in f for f in _plugin().audit())
    port_records.set_bindings(vm, {'host1': 'ACTIVE'})
    assert _plugin().audit() == []
    ports_table = models.Port.__table__
    with db.session_scope() as s:
        s.execute(ports_table.update().where(
            ports_table.c.id == port['id']).values(instance_uuid=None))
    found = _plugin().audit()
    assert 'port %s is attached to nothing but bound on host1 (ACTIVE)' \
        % port['id'] in found
    # Its NIC is still in the guest, which the records no longer say.
    assert any(f.startswith('the guest of instance %s' % vm)
               for f in found), found


def test_audit_finds_a_guest_without_its_nic(pcloud):
    vm, port = _server_with_port(pcloud)
    spare = api.create_port(pcloud.ctx, 'spare')
    # Recorded as attached, but the guest was never given the NIC.
    port_records.port_attach(spare['id'], vm)
    assert _plugin().audit() == [
        'the guest of instance %s on host1 has the NICs [%s %s], its ports '
        'say [%s]' % (vm, port['id'], port['mac_address'], ', '.join(
            '%s %s' % p for p in sorted([
                (port['id'], port['mac_address']),
                (spare['id'], spare['mac_address'])])))]
    ports_plugin.update_guest(vm, 'host1')
    assert _plugin().audit() == []
    # After a move, the destination's guest is the one judged.
    api.migrate(pcloud.ctx, vm, wait=True)
    assert _plugin().audit() == []
    api.confirm_resize(pcloud.ctx, vm, wait=True)
    assert _plugin().audit() == []
