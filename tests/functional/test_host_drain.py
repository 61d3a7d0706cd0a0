"""Host disable/enable and host drain on the libvirt test driver."""
import io
import json
import threading

import pytest

from resize_flows import api
from resize_flows.cmd import shell
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests.redis_fixtures import jobboard_conf  # noqa: F401 (a fixture)


def _everything():
    return state.capture(), repository.host_list(), repository.migration_list()


def _guests(name):
    return sorted(virt.get_driver(repository.host_get(name))
                  .list_instance_uuids())


@pytest.fixture
def full(cloud):
    """host1 with six servers (one shut off), host2 and host3 empty."""
    api.create_host(cloud.ctx, 'host3', 8, 4096, 40)
    cloud.servers = [cloud.server('vm%d' % i, power_on=i != 3)['uuid']
                     for i in range(6)]
    return cloud


def test_disable_enable_and_the_scheduler(cloud):
    host = api.disable_host(cloud.ctx, 'host2', reason='new disks')
    assert (host['enabled'], host['disabled_reason']) == (False,
                                                          'new disks')
    listed = {h['name']: h for h in api.list_hosts(cloud.ctx)}
    assert listed['host2']['disabled_reason'] == 'new disks'
    server = cloud.server()
    with pytest.raises(exception.NoValidHost) as e:
        api.migrate(cloud.ctx, server['uuid'], wait=True)
    assert 'host2 is disabled' in str(e.value)
    host = api.enable_host(cloud.ctx, 'host2')
    assert (host['enabled'], host['disabled_reason']) == (True, None)
    api.migrate(cloud.ctx, server['uuid'], wait=True)
    assert repository.instance_get(server['uuid'])['host'] == 'host2'


def test_drain_parallel_with_a_failed_move_then_again(full):
    ctx = full.ctx
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE, times=1)
    rows = api.drain_host(ctx, 'host1', parallel=2)

    assert [r['server'] for r in rows] == full.servers
    by_status = {}
    for row in rows:
        by_status.setdefault(row['status'], []).append(row)
    assert len(by_status['failed']) == 1
    assert len(by_status['confirmed']) == 5
    failed = by_status['failed'][0]
    assert failed['reason'].startswith('InjectedFault')
    assert '\n' not in failed['reason']
    # The next move waits for the one before to claim: both hosts get some.
    assert {r['to'] for r in by_status['confirmed']} == {'host2', 'host3'}
    host1 = repository.host_get('host1')
    assert (host1['enabled'], host1['disabled_reason']) == (
        False, 'drained by host drain')
    assert _guests('host1') == [failed['server']]
    stays = repository.instance_get(failed['server'])
    assert (stays['host'], stays['vm_state'], stays['task_state']) == (
        'host1', states.ACTIVE, None)
    for row in by_status['confirmed']:
        inst = repository.instance_get(row['server'])
        assert (inst['host'], inst['vm_state']) == (row['to'],
                                                    row['server'] != full
                                                    .servers[3]
                                                    and states.ACTIVE
                                                    or states.STOPPED)
        assert row['server'] in _guests(row['to'])
        migrate = [a for a in instance_actions.action_list(row['server'])
                   if a['action'] == 'migrate'][0]
        assert [(e['event'], e['result']) for e in migrate['events']
                if e['event'] == 'host_drain'] == [('host_drain', 'Success')]
    assert state.leaks() == []

    again = api.drain_host(full.ctx, 'host1', parallel=2)
    assert [(r['server'], r['status'], r['reason']) for r in again] == [
        (failed['server'], 'confirmed', None)]
    assert _guests('host1') == []
    assert repository.instance_list(host='host1') == []
    assert repository.allocation_list(host='host1') == []
    assert state.leaks() == []


def _crash(task, point, call, *args, **kwargs):
    """``call`` dies at ``task``'s ``point`` as its process would (no
    undo step runs, nobody holds the flow afterwards): the flow is left
    interrupted, as a drain that died leaves its moves."""
    faults.inject(task, point, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        call(*args, **kwargs)
    faults.clear()


def _newest_flow(uuid):
    return flowstatus.list_flows(server=uuid)[0]


def test_a_drain_run_again_resumes_what_a_dead_one_left(full):
    """What a drain that died leaves: a move cut off in its copy, a
    confirm cut off before its clean-up, and a move cut off while being
    undone. The next run resumes the first two, reports the third failed
    (its resume finished the undo) and moves the rest; the run after
    that moves the third."""
    ctx = full.ctx
    cut, confirming, undoing = full.servers[:3]
    _crash('CopyDisk', faults.BEFORE_EXECUTE, api.migrate, ctx, cut,
           host='host2', wait=True)
    api.migrate(ctx, confirming, host='host3', wait=True)
    _crash('CleanupSource', faults.BEFORE_EXECUTE, api.confirm_resize, ctx,
           confirming, wait=True)
    faults.inject('FinishMigration', faults.BEFORE_EXECUTE, times=1)
    _crash('CopyDisk', faults.BEFORE_REVERT, api.migrate, ctx, undoing,
           host='host2', wait=True)
    flows = {uuid: _newest_flow(uuid) for uuid in (cut, confirming, undoing)}
    assert {f['status'] for f in flows.values()} == {flowstatus.INTERRUPTED}
    assert [flows[u]['operation'] for u in (cut, confirming, undoing)] == [
        'migrate', 'confirm_resize', 'migrate']

    rows = {r['server']: r for r in api.drain_host(ctx, 'host1')}
    assert set(rows) == set(full.servers)
    assert (rows[cut]['status'], rows[cut]['to']) == ('confirmed', 'host2')
    assert (rows[confirming]['status'], rows[confirming]['to']) == (
        'confirmed', 'host3')
    assert rows[cut]['reason'] == 'resumed its interrupted migrate flow ' \
        '%s' % flows[cut]['flow_id']
    assert rows[confirming]['reason'] == 'resumed its interrupted ' \
        'confirm_resize flow %s' % flows[confirming]['flow_id']
    assert rows[undoing]['status'] == 'failed'
    assert 'was being undone' in rows[undoing]['reason']
    assert flows[undoing]['flow_id'] in rows[undoing]['reason']
    for uuid in set(full.servers) - {undoing}:
        assert rows[uuid]['status'] == 'confirmed', rows[uuid]
        inst = repository.instance_get(uuid)
        assert inst['host'] != 'host1' and inst['task_state'] is None
        assert uuid in _guests(inst['host'])
    # The same flows were resumed, not new ones started for those moves.
    for uuid in (cut, confirming, undoing):
        assert flowstatus.flow_row(flows[uuid]['flow_id'])['status'] in (
            flowstatus.FINISHED, flowstatus.ROLLED_BACK)
    assert [m['status'] for m in repository.migration_list(cut)] == [
        'confirmed']
    stays = repository.instance_get(undoing)
    assert (stays['host'], stays['task_state']) == ('host1', None)
    assert _guests('host1') == [undoing]
    assert state.leaks() == []

    again = api.drain_host(ctx, 'host1')
    assert [(r['server'], r['status']) for r in again] == [
        (undoing, 'confirmed')]
    assert _guests('host1') == []
    assert repository.allocation_list(host='host1') == []
    assert state.leaks() == []


def test_a_busy_server_names_its_interrupted_flow(full):
    """An interrupted flow that is not a drain's to resume (a revert):
    skipped, and the reason says which flow and what to do."""
    ctx = full.ctx
    vm = full.servers[0]
    api.migrate(ctx, vm, host='host2', wait=True)
    api.confirm_resize(ctx, vm, wait=True)
    api.migrate(ctx, vm, host='host1', wait=True)     # back, RESIZED
    _crash('RestoreSource', faults.BEFORE_EXECUTE,
           api.revert_resize, ctx, vm, wait=True)
    flow = _newest_flow(vm)
    assert (flow['operation'], flow['status']) == ('revert_resize',
                                                   flowstatus.INTERRUPTED)
    inst = repository.instance_get(vm)
    rows = {r['server']: r for r in api.drain_host(ctx, inst['host'])}
    assert rows[vm]['status'] == 'skipped'
    assert rows[vm]['reason'] == (
        'busy: task_state %s; its revert_resize flow %s is interrupted '
        '(flow resume or flow rollback it)' % (inst['task_state'],
                                               flow['flow_id']))


def test_no_confirm_then_again_and_servers_in_error(full):
    broken = full.servers[0]
    repository.instance_update(broken, {'vm_state': states.ERROR})
    rows = api.drain_host(full.ctx, 'host1', confirm=False)
    assert {r['server']: r['status'] for r in rows} == dict(
        {u: 'moved' for u in full.servers[1:]}, **{broken: 'skipped'})
    assert [r['reason'] for r in rows if r['server'] == broken] == [
        'in error: reset or rebuild it first']
    for uuid in full.servers[1:]:
        assert repository.instance_get(uuid)['vm_state'] == states.RESIZED

    again = api.drain_host(full.ctx, 'host1', parallel=3, confirm=False)
    assert sorted((r['server'], r['status']) for r in again) == sorted(
        [(u, 'moved') for u in full.servers[1:]] + [(broken, 'skipped')])
    third = api.drain_host(full.ctx, 'host1', parallel=3)
    assert sorted((r['server'], r['status']) for r in third) == sorted(
        [(u, 'confirmed') for u in full.servers[1:]] + [(broken, 'skipped')])
    for uuid in full.servers[1:]:
        assert repository.instance_get(uuid)['vm_state'] in (
            states.ACTIVE, states.STOPPED)
    assert _guests('host1') == [broken]


def test_drain_keeps_an_operators_reason(full):
    api.disable_host(full.ctx, 'host1', reason='fan noise')
    api.drain_host(full.ctx, 'host1')
    assert repository.host_get('host1')['disabled_reason'] == 'fan noise'


@pytest.mark.parametrize('call, error', [
    (lambda c: api.drain_host(c.ctx, 'nohost'), exception.HostNotFound),
    (lambda c: api.drain_host(c.ctx, 'host1', parallel=0),
     exception.InvalidInput),
    (lambda c: api.drain_host(c.ctx, 'host1', parallel='2'),
     exception.InvalidInput),
    (lambda c: api.drain_host(c.member(), 'host1'),
     exception.PolicyNotAuthorized),
    (lambda c: api.disable_host(c.ctx, 'nohost'), exception.HostNotFound),
    (lambda c: api.disable_host(c.ctx, 'host1', reason='a\nb'),
     exception.InvalidInput),
    (lambda c: api.enable_host(c.member(), 'host1'),
     exception.PolicyNotAuthorized),
])
def test_refusals_change_nothing(full, call, error):
    before = _everything()
    with pytest.raises(error) as e:
        call(full)
    assert '\n' not in str(e.value)
    assert _everything() == before


def test_drain_through_conductors(full, jobboard_conf):
    """With the jobboard on, each move and confirm is a job that the
    conductors run; the drain posts it and waits for its flow."""
    from resize_flows import conductor
    from resize_flows import jobboard
    runners = [conductor.Conductor(name='drain-%d:%s' % (
        i, jobboard.conductor_name())) for i in range(2)]
    threads = [threading.Thread(target=c.run, daemon=True)
               for c in runners]
    for thread in threads:
        thread.start()
    try:
        faults.inject('CopyDisk', faults.BEFORE_EXECUTE, times=1)
        rows = api.drain_host(full.ctx, 'host1', parallel=2)
        assert sorted(r['status'] for r in rows) == ['confirmed'] * 5 + [
            'failed']
        failed = [r for r in rows if r['status'] == 'failed'][0]
        assert failed['reason'].startswith('OperationFailed')
        assert 'InjectedFault' in failed['reason']
        again = api.drain_host(full.ctx, 'host1', parallel=2)
        assert [(r['server'], r['status']) for r in again] == [
            (failed['server'], 'confirmed')]
        assert {f['job_uuid'] is not None for f in
                flowstatus.list_flows()} == {True}
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(60)
    assert _guests('host1') == []
    assert state.leaks() == []


# -- the CLI -----------------------------------------------------------------

@pytest.fixture
def rf(conf, tmp_path):
    conf_file = tmp_path / 'rf.conf'
    conf_file.write_text(
        '[DEFAULT]\nstate_dir = %s\n[libvirt]\nlocal_hypervisor = test\n'
        '[compute]\nshutdown_timeout = 0\n' % (tmp_path / 'cli-state'))
    conf.clear_override('state_dir')
    conf.clear_override('local_hypervisor', group='libvirt')
    virt.reset()

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(
            ['--config-file', str(conf_file)] + list(argv))
        return code, out.getvalue(), err.getvalue()

    assert run('db', 'sync')[0] == 0
    for host in ('host1', 'host2', 'host3'):
        assert run('host', 'create', host, '--vcpus', '4', '--memory-mb',
                   '1024', '--disk-gb', '10')[0] == 0
    assert run('flavor', 'create', 'tiny', '--vcpus', '1', '--ram', '64',
               '--disk', '1')[0] == 0
    for name in ('vm1', 'vm2', 'vm3'):
        assert run('server', 'create', name, '--flavor', 'tiny', '--host',
                   'host1')[0] == 0
    faults.clear()
    yield run
    api.wait_all()
    faults.clear()
    virt.reset()


def test_cli_disable_list_drain(rf):
    code, out, err = rf('host', 'disable', 'host2', '--reason', 'cabling',
                        '-f', 'json')
    assert (code, json.loads(out)) == (0, {
        'name': 'host2', 'enabled': False, 'disabled_reason': 'cabling'})
    code, out, err = rf('host', 'list', '-f', 'json')
    assert {h['Name']: h['Disabled Reason'] for h in json.loads(out)} == {
        'host1': None, 'host2': 'cabling', 'host3': None}
    code, out, err = rf('host', 'drain', 'host1', '--parallel', '2',
                        '-f', 'json')
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r['Name'] for r in rows) == ['vm1', 'vm2', 'vm3']
    assert {(r['From'], r['To'], r['Status']) for r in rows} == {
        ('host1', 'host3', 'confirmed')}
    assert all(isinstance(r['Seconds'], float) for r in rows)
    code, out, err = rf('host', 'enable', 'host2', '-f', 'json')
    assert json.loads(out)['enabled'] is True
    code, out, err = rf('host', 'list', '-f', 'json')
    assert {h['Name']: h['Enabled'] for h in json.loads(out)} == {
        'host1': False, 'host2': True, 'host3': True}


def test_cli_drain_exits_1_when_a_move_failed(rf):
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE, times=1)
    code, out, err = rf('host', 'drain', 'host1', '-f', 'json')
    assert code == 1
    assert sorted(r['Status'] for r in json.loads(out)) == [
        'confirmed', 'confirmed', 'failed']
    faults.clear()
    code, out, err = rf('host', 'drain', 'host1', '-f', 'json')
    assert code == 0, err
    assert [r['Status'] for r in json.loads(out)] == ['confirmed']


@pytest.mark.parametrize('argv, text', [
    (('host', 'drain', 'nohost'), 'nohost'),
    (('host', 'drain', 'host1', '--parallel', '0'), 'parallel'),
    (('host', 'drain', 'host1', '--parallel', '-3'), 'parallel'),
    (('host', 'disable', 'nohost'), 'nohost'),
    (('host', 'enable', 'nohost'), 'nohost'),
])
def test_cli_bad_input_is_one_line_and_changes_nothing(rf, argv, text):
    before = _everything()
    code, out, err = rf(*argv)
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert text in err
    assert _everything() == before
