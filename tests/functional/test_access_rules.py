"""Who is an admin, who may undo a lock, whose flows a rule is checked
against, and what a tenant is told: issue 11, items 11 to 14."""
import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows import policy
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state


def _server_of(cloud, project='p1', user='u1', name='vm1'):
    """A server of ``project``, created by one of its members."""
    return api.create_server(cloud.member(project, user), name, 'small',
                             'host1')['uuid']


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
