"""Who is an admin, who may undo a lock, whose flows a rule is checked
against, and what a tenant is told: issue 11, items 11 to 14."""
import logging

import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows import policy
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state


def _server_of(cloud, project='p1', user='u1', name='vm1'):
    """A server of ``project`` on host1, created for it by an admin of
    that project (naming a host is an admin's)."""
    creator = api.RequestContext(user_id=user, project_id=project,
                                 roles=('admin',))
    return api.create_server(creator, name, 'small', 'host1')['uuid']


def _policy_file(conf, tmp_path, text):
    path = tmp_path / 'policy.yaml'
    path.write_text(text)
    conf.set_override('policy_file', str(path), group='oslo_policy')
    policy.reset()


@pytest.fixture
def policy_file(conf, tmp_path):
    yield lambda text: _policy_file(conf, tmp_path, text)
    conf.clear_override('policy_file', group='oslo_policy')
    policy.reset()


# -- item 14: one answer to "is this caller an admin" ------------------------

@pytest.mark.parametrize('role', ['Admin', 'ADMIN'])
def test_admin_role_in_any_case_is_admin_everywhere(cloud, role):
    vm = _server_of(cloud)
    ops = api.RequestContext(user_id='ops', project_id='ops', roles=(role,))
    assert ops.is_admin
    # The project's own checks: another project's server is visible...
    assert api.get_server(ops, vm)['uuid'] == vm
    assert [s['uuid'] for s in api.list_servers(ops)] == [vm]
    # ... a lock does not stop an admin ...
    api.lock_server(cloud.member('p1', 'u1'), vm)
    # ... and the access rules agree (migrate is admin's).
    op = api.migrate(ops, vm, wait=True)
    assert op.migration['status'] == states.MIGRATION_FINISHED
    api.confirm_resize(ops, vm, wait=True)
    assert repository.instance_get(vm)['host'] == 'host2'


def test_a_policy_file_redefines_admin_for_every_check(cloud, policy_file):
    vm = _server_of(cloud)
    policy_file('"context_is_admin": "role:cloud-admin"\n')
    ops = api.RequestContext(user_id='ops', project_id='ops',
                             roles=('Cloud-Admin',))
    old_admin = api.RequestContext(user_id='a', project_id='ops',
                                   roles=('admin',))
    assert ops.is_admin and not old_admin.is_admin
    assert api.get_server(ops, vm)['uuid'] == vm
    with pytest.raises(exception.InstanceNotFound):
        api.get_server(old_admin, vm)
    with pytest.raises(exception.PolicyNotAuthorized):
        api.list_hosts(old_admin)
    assert {h['name'] for h in api.list_hosts(ops)} == {'host1', 'host2'}


def test_is_admin_follows_the_roles_and_the_policy(cloud, policy_file):
    ctx = api.RequestContext(user_id='u', project_id='p', roles=('member',))
    assert not ctx.is_admin
    ctx.roles = ('member', 'ADMIN')
    assert ctx.is_admin
    policy_file('"context_is_admin": "role:root"\n')
    assert not ctx.is_admin
    ctx.roles = ('Root',)
    assert ctx.is_admin


# -- item 12: an admin's lock needs an admin to undo -------------------------

def test_a_member_cannot_undo_an_admins_lock(cloud):
    vm = _server_of(cloud)
    member = cloud.member('p1', 'u1')
    locked = api.lock_server(cloud.ctx, vm)
    assert (locked['locked'], locked['locked_by']) == (True, 'admin')
    # Re-locking as the owner does not turn it into the owner's lock.
    assert api.lock_server(member, vm)['locked_by'] == 'admin'
    before = state.capture()
    with pytest.raises(exception.PolicyNotAuthorized) as e:
        api.unlock_server(member, vm)
    assert e.value.code == 403
    assert 'unlock_override' in str(e.value)
    assert state.capture() == before
    with pytest.raises(exception.InstanceIsLocked):
        api.resize(member, vm, 'big')
    assert repository.migration_list() == []
    unlocked = api.unlock_server(cloud.ctx, vm)
    assert (unlocked['locked'], unlocked['locked_by']) == (False, None)
    api.resize(member, vm, 'big', wait=True)


def test_an_owners_lock_is_undone_by_the_owner(cloud):
    vm = _server_of(cloud)
    member = cloud.member('p1', 'u2')
    assert api.lock_server(member, vm)['locked_by'] == 'owner'
    assert api.unlock_server(cloud.member('p1', 'u1'), vm)['locked'] is False
    # An admin's lock over the owner's is the admin's.
    api.lock_server(member, vm)
    assert api.lock_server(cloud.ctx, vm)['locked_by'] == 'admin'
    with pytest.raises(exception.PolicyNotAuthorized):
        api.unlock_server(member, vm)


def test_the_unlock_override_rule_lets_a_role_undo_an_admins_lock(
        cloud, policy_file):
    vm = _server_of(cloud)
    api.lock_server(cloud.ctx, vm)
    policy_file('"os_compute_api:os-lock-server:unlock:unlock_override": '
                '"role:support"\n')
    support = api.RequestContext(user_id='s', project_id='p1',
                                 roles=('member', 'support'))
    assert api.unlock_server(support, vm)['locked'] is False


# -- item 13: flow rules against the project of the flow's server ------------

FLOW_RULES_FOR_OWNERS = ''.join(
    '"resize_flows:flows:%s": "rule:admin_or_owner"\n' % verb
    for verb in ('list', 'show', 'resume', 'rollback', 'purge'))


def test_flow_rules_are_checked_against_the_flows_project(cloud,
                                                          policy_file):
    vm_a = _server_of(cloud, 'pA', 'ua', 'a1')
    vm_b = _server_of(cloud, 'pB', 'ub', 'b1')
    op_a = api.resize(cloud.member('pA', 'ua'), vm_a, 'big', wait=True)
    op_b = api.resize(cloud.member('pB', 'ub'), vm_b, 'big', wait=True)
    policy_file(FLOW_RULES_FOR_OWNERS)
    member_b = cloud.member('pB', 'ub')
    assert [f['flow_id'] for f in api.list_flows(member_b)] == [op_b.flow_id]
    assert api.list_flows(member_b, server=vm_a) == []
    assert api.show_flow(member_b, op_b.flow_id)['flow_id'] == op_b.flow_id
    with pytest.raises(exception.FlowNotFound):
        api.show_flow(member_b, 'no-such-flow')
    before = state.capture()
    for call in (api.show_flow, api.rollback_flow, api.resume_flow):
        with pytest.raises(exception.PolicyNotAuthorized) as e:
            call(member_b, op_a.flow_id)
        assert e.value.code == 403
    with pytest.raises(exception.PolicyNotAuthorized):
        api.purge_flows(member_b, '2999-01-01', dry_run=True)
    assert state.capture() == before
    assert repository.migration_get(op_a.migration_uuid)['status'] == \
        states.MIGRATION_FINISHED
    # The owner may roll its own resize back; an admin lists everyone's.
    api.rollback_flow(cloud.member('pA', 'ua'), op_a.flow_id)
    assert repository.instance_get(vm_a)['flavor_id'] == cloud.small['id']
    assert {f['flow_id'] for f in api.list_flows(cloud.ctx)} == {
        op_a.flow_id, op_b.flow_id}


def test_a_deleted_servers_flows_keep_their_project(cloud, policy_file):
    vm = _server_of(cloud, 'pA', 'ua', 'a1')
    owner = cloud.member('pA', 'ua')
    op = api.resize(owner, vm, 'big', wait=True)
    api.confirm_resize(owner, vm, wait=True)
    api.delete_server(owner, vm)
    policy_file(FLOW_RULES_FOR_OWNERS)
    flows = api.list_flows(owner)
    assert len(flows) == 2 and op.flow_id in {f['flow_id'] for f in flows}
    assert {f['project_id'] for f in flows} == {'pA'}
    assert api.show_flow(owner, op.flow_id)['flow_id'] == op.flow_id
    other = cloud.member('pB', 'ub')
    assert api.list_flows(other) == []
    with pytest.raises(exception.PolicyNotAuthorized):
        api.show_flow(other, op.flow_id)


# -- item 11: no infrastructure details for tenants --------------------------

def _no_infrastructure(text):
    for word in ('host1', 'host2', 'free', '/', 'qemu-img', 'Traceback'):
        assert word not in text, (word, text)


def test_no_valid_host_is_generic_for_a_member(cloud, caplog):
    caplog.set_level(logging.INFO, logger='resize_flows')
    api.create_flavor(cloud.ctx, 'huge', 64, 1 << 20, 10000)
    vm = _server_of(cloud)
    member = cloud.member('p1', 'u1')
    before = state.capture()
    with pytest.raises(exception.NoValidHost) as e:
        api.resize(member, vm, 'huge')
    assert (e.value.code, str(e.value)) == (400, 'No valid host was found.')
    # An admin is told why.
    with pytest.raises(exception.NoValidHost) as e:
        api.resize(cloud.ctx, vm, 'huge')
    assert 'host2 lacks' in str(e.value)
    assert state.capture() == before
    assert repository.migration_list() == []
    # A member's server that fits nowhere.
    with pytest.raises(exception.NoValidHost) as e:
        api.create_server(member, 'vm2', 'huge')
    assert str(e.value) == 'No valid host was found.'
    assert 'host1 lacks' in caplog.text     # the details: in the log


@pytest.mark.parametrize('host', ['host1', 'host9', 'off'])
def test_a_member_may_not_name_a_host(cloud, host):
    api.create_host(cloud.ctx, 'off', 8, 4096, 40)
    repository.host_set_enabled('off', False)
    member = cloud.member('p1', 'u1')
    before = state.capture()
    with pytest.raises(exception.PolicyNotAuthorized) as e:
        api.create_server(member, 'vm1', 'small', host)
    # The same answer for a host that exists, does not, or is disabled.
    assert (e.value.code, str(e.value)) == (
        403, "Policy doesn't allow os_compute_api:servers:create:forced_host"
             " to be performed.")
    assert state.capture() == before
    assert repository.instance_list() == []
    # Without a host the scheduler chooses; an admin may name one.
    assert api.create_server(member, 'vm1', 'small')['host'] in (
        'host1', 'host2')
    assert api.create_server(cloud.ctx, 'vm2', 'small', 'host2')['host'] == \
        'host2'


class _LeakyDiskError(exception.DiskError):
    """A disk error as the libvirt driver words them: host, path, command."""

    def __init__(self, _message=None):
        super().__init__(host='host2', reason='qemu-img convert -O qcow2 '
                         '/srv/instances/x_resize/disk failed: No space')


@pytest.mark.parametrize('wait', [True, False])
def test_an_internal_error_is_generic_for_a_member(cloud, rf_faults, caplog,
                                                   wait):
    vm = _server_of(cloud)
    member = cloud.member('p1', 'u1')
    rf_faults.inject('CopyDisk', exc_class=_LeakyDiskError)
    with pytest.raises(exception.ServiceError) as e:
        op = api.resize(member, vm, 'big', wait=wait)
        op.wait(timeout=60)
    assert e.value.code == 500
    assert member.request_id in str(e.value)
    _no_infrastructure(str(e.value))
    # The details are in the log, under the request id.
    logged = [r for r in caplog.records if member.request_id in
              r.getMessage() and 'qemu-img convert' in r.getMessage()]
    assert logged
    # The events a member reads: no traceback, no host; an admin's have
    # the traceback.
    [action] = api.list_actions(member, vm)
    failed = [ev for ev in action['events'] if ev['result'] == 'Error']
    assert failed and all(ev['traceback'] is None and ev['host'] is None
                          for ev in action['events'])
    _no_infrastructure(repr(api.list_actions(member, vm)))
    [admins] = api.list_actions(cloud.ctx, vm)
    assert any('qemu-img convert' in (ev['traceback'] or '')
               for ev in admins['events'])
    # An admin's own failure keeps its details.
    rf_faults.inject('CopyDisk', exc_class=_LeakyDiskError)
    with pytest.raises(_LeakyDiskError):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    assert state.leaks() == []


def test_delete_has_an_access_rule(cloud, policy_file):
    """server delete is checked against the server's project like every
    other server action: another project's member may not delete it
    (404: unknown to them), and a policy file can keep it for admins
    (403); either way nothing changes."""
    vm = _server_of(cloud)
    before = state.capture()
    with pytest.raises(exception.InstanceNotFound):
        api.delete_server(cloud.member('p2', 'u9'), vm)
    policy_file('"os_compute_api:servers:delete": "rule:context_is_admin"\n')
    with pytest.raises(exception.PolicyNotAuthorized) as e:
        api.delete_server(cloud.member('p1', 'u1'), vm)
    assert e.value.code == 403
    assert 'os_compute_api:servers:delete' in str(e.value)
    assert state.capture() == before
    api.delete_server(cloud.ctx, vm)
    assert repository.instance_list() == []
