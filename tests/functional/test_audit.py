"""``audit`` and ``audit --repair`` on test-driver hosts: each class of
finding made for real (records changed behind the API's back, a
directory left, a domain nobody records, a host that stops answering, a
flow interrupted), then listed, repaired where it is safe, and the repair
recorded as an instance action."""
import json
import os

import pytest
import sqlalchemy as sa

from resize_flows import api
from resize_flows import audit
from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import models
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests.functional import test_cli

rf = test_cli.rf      # the CLI fixture


def _kinds(rows):
    return sorted((r['kind'], r['object']) for r in rows)


def unplug(host, tmp_path):
    """Make ``host`` stop answering: its record now names a libvirt
    socket where no daemon listens (as a host whose daemon is gone)."""
    table = models.Host.__table__
    with db.session_scope() as s:
        s.execute(table.update().where(table.c.name == host).values(
            uri='qemu+unix:///session?socket=%s/gone-%s' % (
                tmp_path, host)))


def test_a_clean_cloud_has_no_findings(cloud):
    cloud.server()
    assert api.audit(cloud.ctx) == []
    assert api.audit(cloud.ctx, repair=True) == []
    assert state.leaks() == []


def test_power_state_drift_is_found_and_repaired(cloud):
    vm = cloud.server()['uuid']
    repository.instance_update(vm, {'power_state': 4})
    rows = api.audit(cloud.ctx)
    assert [(r['kind'], r['host'], r['object'], r['fix']) for r in rows] == [
        ('power state', 'host1', vm, audit.REPAIR)]
    assert 'power state 4 in the records, 1 on the host' in rows[0]['detail']
    assert api.audit(cloud.ctx, repair=True)[0]['fix'] == audit.REPAIRED
    assert repository.instance_get(vm)['power_state'] == 1
    action = api.list_actions(cloud.ctx, vm)[0]
    assert action['action'] == 'audit_repair'
    assert [e['event'] for e in action['events']] == ['sync_power_state']
    assert api.audit(cloud.ctx) == [] and state.leaks() == []


def test_allocations_are_healed(cloud):
    vm = cloud.server()['uuid']
    repository.release(vm)
    # A consumer nobody knows holds capacity on host2.
    repository.claim('0' * 8 + '-0000-0000-0000-' + '0' * 12, 'instance',
                     'host2', {'vcpus': 1, 'memory_mb': 8, 'disk_gb': 0})
    rows = api.audit(cloud.ctx)
    assert [r['kind'] for r in rows] == ['allocation', 'allocation']
    assert all(r['fix'] == audit.REPAIR for r in rows)
    repaired = api.audit(cloud.ctx, repair=True)
    assert [r['fix'] for r in repaired] == [audit.REPAIRED] * 2
    assert sorted((a['consumer_uuid'], a['host'])
                  for a in repository.allocation_list()) == [(vm, 'host1')]
    assert api.list_actions(cloud.ctx, vm)[0]['events'][0]['event'] == \
        'heal_allocations'
    assert api.audit(cloud.ctx) == [] and state.leaks() == []


def test_a_directory_of_an_ended_move_is_removed_never_a_live_disk(cloud):
    vm = cloud.server()['uuid']
    path = repository.host_get('host1')['instances_path']
    left = os.path.join(path, vm + '_revert')
    os.mkdir(left, 0o700)
    with open(os.path.join(left, 'disk'), 'wb') as f:
        f.write(b'\0' * 512)
    # A directory nobody records is listed, never removed.
    stray = os.path.join(path, '1' * 8 + '-1111-1111-1111-' + '1' * 12)
    os.mkdir(stray, 0o700)
    rows = api.audit(cloud.ctx)
    assert _kinds(rows) == sorted([('directory', vm + '_revert'),
                                   ('directory', os.path.basename(stray))])
    rows = {r['object']: r for r in api.audit(cloud.ctx, repair=True)}
    assert rows[vm + '_revert']['fix'] == audit.REPAIRED
    assert rows[os.path.basename(stray)]['fix'] != audit.REPAIRED
    assert not os.path.exists(left) and os.path.isdir(stray)
    assert virt.get_driver(repository.host_get('host1')).disk_info(vm)
    assert api.list_actions(cloud.ctx, vm)[0]['events'][0]['event'] == \
        'remove_directory'


def test_the_only_disk_of_an_instance_is_never_removed(cloud):
    vm = cloud.server()['uuid']
    drv = virt.get_driver(repository.host_get('host1'))
    drv.rename_instance_dir(vm, '', '_resize')
    rows = api.audit(cloud.ctx, repair=True)
    stash = [r for r in rows if r['object'] == vm + '_resize']
    assert stash and stash[0]['fix'] != audit.REPAIRED
    assert drv.disk_info(vm, '_resize') is not None


def test_an_unknown_domain_is_listed_with_its_fix(cloud):
    vm = cloud.server()['uuid']
    table = models.Instance.__table__
    with db.session_scope() as s:    # the record is lost, the guest not
        s.execute(sa.delete(table).where(table.c.uuid == vm))
    rows = api.audit(cloud.ctx, repair=True)
    domain = [r for r in rows if r['kind'] == 'domain']
    assert domain[0]['object'] == vm and 'virsh undefine' in \
        domain[0]['fix']
    assert virt.get_driver(repository.host_get('host1')).instance_exists(vm)


def test_a_host_that_does_not_answer_is_a_finding_not_a_crash(cloud,
                                                              tmp_path):
    cloud.server()
    vm2 = cloud.server('vm2', host='host2')['uuid']
    repository.instance_update(vm2, {'power_state': 4})
    unplug('host1', tmp_path)
    rows = api.audit(cloud.ctx)
    # host1 is one row; host2 is audited all the same.
    assert _kinds(rows) == [('host', 'host1'), ('power state', vm2)]
    assert 'does not answer' in rows[0]['detail']
    with pytest.raises(exception.HypervisorUnavailable):
        state.leaks()


def test_an_interrupted_flow_is_listed_with_resume(cloud):
    vm = cloud.server()['uuid']
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.migrate(cloud.ctx, vm, wait=True)
    faults.clear()
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    flows = [r for r in api.audit(cloud.ctx) if r['kind'] == 'flow']
    assert [r['object'] for r in flows] == [flow_id]
    assert 'flow resume %s' % flow_id in flows[0]['fix']
    # Nothing of a move under way is "repaired" under its feet.
    before = state.capture()
    api.audit(cloud.ctx, repair=True)
    assert state.capture() == before
    api.resume_flow(cloud.ctx, flow_id)
    assert api.audit(cloud.ctx) == []


def test_one_host_only(cloud):
    vm = cloud.server()['uuid']
    vm2 = cloud.server('vm2', host='host2')['uuid']
    for uuid in (vm, vm2):
        repository.instance_update(uuid, {'power_state': 4})
    assert [r['object'] for r in api.audit(cloud.ctx, host='host2')] == [
        vm2]


def test_audit_is_for_admins(cloud):
    with pytest.raises(exception.Forbidden):
        api.audit(cloud.member())


def test_cli_exit_status_and_bad_input(rf, tmp_path):
    code, out, err = rf('audit', '-f', 'json')
    assert (code, json.loads(out)) == (0, []), err
    vm = repository.instance_list()[0]['uuid']
    repository.instance_update(vm, {'power_state': 4})
    code, out, err = rf('audit', '-f', 'json')
    rows = json.loads(out)
    assert code == 3 and rows[0]['Kind'] == 'power state', err
    assert rows[0]['Fix'] == 'resize-flows audit --repair'
    code, out, err = rf('audit', '--repair', '-f', 'json')
    assert code == 4 and json.loads(out)[0]['Fix'] == 'repaired', err
    assert rf('audit')[0] == 0
    before = state.capture()
    code, out, err = rf('audit', '--host', 'nosuchhost', '--repair')
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert 'nosuchhost' in err and out == ''
    code, out, err = rf('--os-roles', 'member', 'audit')
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert state.capture() == before
