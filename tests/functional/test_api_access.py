"""Who may do what, who sees what, and operations that run in the
background: the embedding API as a REST front would use it."""
import threading

import pytest
from taskflow.listeners import base as listener_base
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import exception
from resize_flows import policy
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state


def _nothing_changed(before, vm):
    assert state.capture() == before
    assert repository.migration_list() == []
    assert api.list_actions(api.get_admin_context(), vm) == []


def _other_projects_server(cloud):
    """vm1 of project 'p1', created by a member of p1 (on the scheduler's
    choice: naming a host is an admin's)."""
    return api.create_server(cloud.member('p1', 'u1'), 'vm1',
                             'small')['uuid']


# -- visibility --------------------------------------------------------------

@pytest.mark.parametrize('call', [
    lambda c, vm: api.resize(c, vm, 'big'),
    lambda c, vm: api.resize(c, 'vm1', 'big', wait=True),
    lambda c, vm: api.migrate(c, vm),
    lambda c, vm: api.confirm_resize(c, vm),
    lambda c, vm: api.revert_resize(c, vm),
    lambda c, vm: api.get_server(c, vm),
    lambda c, vm: api.list_migrations(c, vm),
    lambda c, vm: api.list_actions(c, vm),
    lambda c, vm: api.delete_server(c, vm),
    lambda c, vm: api.lock_server(c, vm),
], ids=['resize', 'resize-by-name', 'migrate', 'confirm', 'revert', 'show',
        'migrations', 'actions', 'delete', 'lock'])
def test_another_projects_server_is_unknown(cloud, call):
    vm = _other_projects_server(cloud)
    before = state.capture()
    with pytest.raises(exception.InstanceNotFound) as e:
        call(cloud.member('p2', 'u2'), vm)
    assert e.value.code == 404
    _nothing_changed(before, vm)


def test_lists_show_only_the_callers_project(cloud):
    mine = api.create_server(cloud.member('p2'), 'mine', 'small')
    theirs = _other_projects_server(cloud)
    api.resize(cloud.ctx, theirs, 'big', wait=True)
    member = cloud.member('p2')
    assert [s['uuid'] for s in api.list_servers(member)] == [mine['uuid']]
    assert api.list_migrations(member) == []
    assert len(api.list_migrations(cloud.ctx)) == 1
    assert {s['uuid'] for s in api.list_servers(cloud.ctx)} == {
        mine['uuid'], theirs}


# -- access rules ------------------------------------------------------------

def test_member_resizes_confirms_and_reverts_its_own_server(cloud):
    member = cloud.member('p1', 'u1')
    vm = _other_projects_server(cloud)
    api.resize(member, vm, 'big', wait=True)
    api.revert_resize(member, vm, wait=True)
    api.resize(member, vm, 'big', wait=True)
    api.confirm_resize(member, vm, wait=True)
    inst = repository.instance_get(vm)
    assert (inst['vm_state'], inst['flavor_id']) == (states.ACTIVE,
                                                     cloud.big['id'])
    actions = api.list_actions(member, vm)
    assert [a['action'] for a in actions] == [
        'confirmResize', 'resize', 'revertResize', 'resize']
    assert {a['user_id'] for a in actions} == {'u1'}
    assert state.leaks() == []


@pytest.mark.parametrize('host', [None, 'host2'])
def test_member_may_not_migrate(cloud, host):
    vm = _other_projects_server(cloud)
    before = state.capture()
    with pytest.raises(exception.PolicyNotAuthorized) as e:
        api.migrate(cloud.member('p1', 'u1'), vm, host=host)
    assert e.value.code == 403
    assert 'os_compute_api:os-migrate-server:migrate' in str(e.value)
    _nothing_changed(before, vm)


def test_member_may_not_resume_or_roll_back_flows(cloud):
    vm = _other_projects_server(cloud)
    op = api.resize(cloud.ctx, vm, 'big', wait=True)
    member = cloud.member('p1', 'u1')
    for call in (api.resume_flow, api.rollback_flow, api.show_flow):
        with pytest.raises(exception.PolicyNotAuthorized):
            call(member, op.flow_id)
    with pytest.raises(exception.PolicyNotAuthorized):
        api.list_flows(member)
    with pytest.raises(exception.PolicyNotAuthorized):
        api.confirm_expired(member)
    assert repository.migration_get(op.migration_uuid)['status'] == \
        states.MIGRATION_FINISHED


def test_private_flavor_of_another_project_is_unknown(cloud):
    api.create_flavor(cloud.ctx, 'p2-only', 2, 128, 2, is_public=False,
                      projects=['p2'])
    vm = _other_projects_server(cloud)
    before = state.capture()
    with pytest.raises(exception.FlavorNotFound) as e:
        api.resize(cloud.member('p1', 'u1'), vm, 'p2-only')
    assert e.value.code == 404
    _nothing_changed(before, vm)
    # The project it is shared with, and an admin, may use it.
    api.create_flavor(cloud.ctx, 'p1-only', 2, 128, 2, is_public=False,
                      projects=['p1'])
    api.resize(cloud.member('p1', 'u1'), vm, 'p1-only', wait=True)
    api.revert_resize(cloud.ctx, vm, wait=True)
    api.resize(cloud.ctx, vm, 'p2-only', wait=True)


def test_locked_server_refuses_all_but_an_admin(cloud):
    member = cloud.member('p1', 'u1')
    vm = _other_projects_server(cloud)
    api.resize(member, vm, 'big', wait=True)
    api.lock_server(member, vm)
    before = state.capture()
    for call in (lambda: api.confirm_resize(member, vm),
                 lambda: api.revert_resize(member, vm),
                 lambda: api.delete_server(member, vm)):
        with pytest.raises(exception.InstanceIsLocked) as e:
            call()
        assert e.value.code == 409
    assert state.capture() == before
    api.revert_resize(cloud.ctx, vm, wait=True)
    with pytest.raises(exception.InstanceIsLocked):
        api.resize(member, vm, 'big')
    api.unlock_server(member, vm)
    api.resize(member, vm, 'big', wait=True)


def test_policy_file_overrides_the_defaults(cloud, conf, tmp_path):
    policy_file = tmp_path / 'policy.yaml'
    policy_file.write_text(
        '"os_compute_api:os-migrate-server:migrate": "rule:admin_or_owner"\n'
        '"os_compute_api:servers:resize": "role:resizer"\n')
    conf.set_override('policy_file', str(policy_file), group='oslo_policy')
    policy.reset()
    try:
        vm = _other_projects_server(cloud)
        member = cloud.member('p1', 'u1')
        op = api.migrate(member, vm, wait=True)
        assert op.migration['status'] == states.MIGRATION_FINISHED
        api.confirm_resize(member, vm, wait=True)
        # A named host is still admin's.
        with pytest.raises(exception.PolicyNotAuthorized):
            api.migrate(member, vm, host='host1')
        # Resizing now needs the resizer role, even for an admin.
        with pytest.raises(exception.PolicyNotAuthorized):
            api.resize(cloud.ctx, vm, 'big')
        resizer = api.RequestContext(user_id='u3', project_id='p1',
                                     roles=('resizer',))
        api.resize(resizer, vm, 'big', wait=True)
    finally:
        conf.clear_override('policy_file', group='oslo_policy')
        policy.reset()


# -- concurrency -------------------------------------------------------------

def test_concurrent_resizes_of_one_server_one_wins(cloud):
    vm = cloud.server()['uuid']
    barrier = threading.Barrier(2)
    outcome = []

    def attempt():
        ctx = cloud.ctx
        barrier.wait()
        try:
            outcome.append(api.resize(ctx, vm, 'big', wait=True))
        except Exception as e:
            outcome.append(e)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [o for o in outcome if isinstance(o, api.Operation)]
    lost = [o for o in outcome if not isinstance(o, api.Operation)]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert isinstance(lost[0], exception.Conflict), lost[0]
    assert lost[0].code == 409
    [mig] = repository.migration_list()
    assert mig['uuid'] == won[0].migration_uuid
    assert mig['status'] == states.MIGRATION_FINISHED
    assert [a['action'] for a in api.list_actions(cloud.ctx, vm)] == [
        'resize']
    assert state.leaks() == []


# -- operations in the background --------------------------------------------

class _Gate(listener_base.Listener):
    """Holds a flow before ``task`` runs until ``opened`` is set."""

    def __init__(self, engine, task, reached, opened):
        super().__init__(engine, task_listen_for=(tf_states.RUNNING,))
        self._task, self._reached, self._opened = task, reached, opened

    def _task_receiver(self, state, details):
        if details['task_name'] == self._task:
            self._reached.set()
            assert self._opened.wait(30)


def test_operation_returns_at_once_and_waits_when_asked(cloud):
    vm = cloud.server()['uuid']
    reached, opened = threading.Event(), threading.Event()
    ctx = cloud.ctx
    op = api.resize(ctx, vm, 'big', listeners=(
        lambda eng: _Gate(eng, 'CopyDisk', reached, opened),))
    try:
        assert isinstance(op, api.Operation)
        assert op.request_id == ctx.request_id
        assert reached.wait(30)
        assert not op.done()
        assert op in api.running_operations()
        mig = op.migration
        assert (mig['flow_id'], mig['status']) == (
            op.flow_id, states.MIGRATION_MIGRATING)
        with pytest.raises(TimeoutError):
            op.wait(timeout=0.01)
        # While it runs, the server refuses another operation.
        with pytest.raises(exception.Conflict):
            api.migrate(cloud.ctx, vm)
    finally:
        opened.set()
    assert op.wait(timeout=60) is op
    assert op.done() and op.flow_state == tf_states.SUCCESS
    assert op['migration']['status'] == states.MIGRATION_FINISHED
    assert op.as_dict()['flow_id'] == op.flow_id
    assert op not in api.running_operations()
    assert state.leaks() == []


def test_errors_before_the_flow_is_stored_raise_at_once(cloud):
    vm = cloud.server()['uuid']
    before = state.capture()
    with pytest.raises(exception.FlavorNotFound):
        api.resize(cloud.ctx, vm, 'nope')
    with pytest.raises(exception.InstanceInvalidState):
        api.confirm_resize(cloud.ctx, vm)
    with pytest.raises(exception.PolicyNotAuthorized):
        api.migrate(cloud.member(), vm)
    _nothing_changed(before, vm)


def test_background_failure_is_undone_and_raised_by_wait(cloud):
    vm = cloud.server()['uuid']
    before = state.capture()
    faults.inject('CopyDisk', faults.AFTER_EXECUTE)
    op = api.migrate(cloud.ctx, vm)
    with pytest.raises(faults.InjectedFault):
        op.wait(timeout=60)
    assert isinstance(op.error, faults.InjectedFault)
    assert op.flow_state == tf_states.REVERTED
    assert state.capture() == before
    assert op.migration['status'] == states.MIGRATION_ERROR
    assert state.leaks() == []
