"""Attach and detach of ports and volumes against moves
(persistence/instance_tasks.py): each holds the server by its own task
state while it changes the guest, so a move started in between is
refused (409) and an attach or detach started during a move is refused
too. No timing: the other side is started from inside the first, at a
fault injected in its middle (the injected exception's constructor
runs it), and the first is then failed by that fault and undone."""
import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from tests.functional import cli_helpers as cli


@pytest.fixture
def pcloud(cloud, conf):
    conf.set_override('plugins', ['ports', 'volumes'])
    faults.clear()
    yield cloud
    faults.clear()
    conf.clear_override('plugins')


class Meanwhile(Exception):
    """An injected fault that first runs ``action`` (what another caller
    does at that instant) and keeps its outcome in ``seen``."""

    action = None
    seen = []

    def __init__(self, message):
        super().__init__(message)
        try:
            Meanwhile.seen.append(('done', type(self).action()))
        except exception.ResizeFlowsException as exc:
            Meanwhile.seen.append((type(exc), str(exc)))


def _arm(task, point, action):
    Meanwhile.action = staticmethod(action)
    Meanwhile.seen = []
    faults.inject(task, point, exc_class=Meanwhile)


def _server_with_devices(cloud):
    """vm1 on host1 with port 'held' and volume 'kept' attached, and a
    free port 'spare' and volume 'data'."""
    ctx = cloud.ctx
    vm = cloud.server()['uuid']
    api.create_port(ctx, 'held', server=vm)
    api.create_port(ctx, 'spare')
    api.create_volume(ctx, 'kept', 1)
    api.attach_volume(ctx, vm, 'kept')
    api.create_volume(ctx, 'data', 1)
    return vm


DEVICE_CHANGES = {
    'attach_volume': (states.ATTACHING_VOLUME,
                      lambda ctx, vm: api.attach_volume(ctx, vm, 'data')),
    'detach_volume': (states.DETACHING_VOLUME,
                      lambda ctx, vm: api.detach_volume(ctx, vm, 'kept')),
    'attach_port': (states.ATTACHING_INTERFACE,
                    lambda ctx, vm: api.attach_port(ctx, vm, 'spare')),
    'detach_port': (states.DETACHING_INTERFACE,
                    lambda ctx, vm: api.detach_port(ctx, vm, 'held')),
}


@pytest.mark.parametrize('change', sorted(DEVICE_CHANGES))
def test_a_move_started_during_an_attach_or_detach_is_refused(
        pcloud, change):
    ctx = pcloud.ctx
    vm = _server_with_devices(pcloud)
    task_state, do = DEVICE_CHANGES[change]
    before = state.capture()
    _arm('device-held', faults.WINDOW,
         lambda: api.migrate(ctx, vm, wait=True))
    with pytest.raises(Meanwhile):
        do(ctx, vm)
    [(kind, message)] = Meanwhile.seen
    assert issubclass(kind, exception.Conflict)
    assert task_state in message and '\n' not in message
    # The attach or detach failed at the fault and was undone; the server
    # is free again, and its action says how it ended.
    assert state.capture() == before
    assert repository.migration_list(vm) == []
    # (the newest of its kind: the setup attached a port and a volume)
    action = [a for a in instance_actions.action_list(vm)
              if a['action'] == change][0]
    assert action['finish_time'] is not None
    assert [(e['event'], e['result']) for e in action['events']] == [
        (change, 'Error')]
    assert state.leaks() == []
    # Nothing holds it now: the same change succeeds, then a move.
    faults.clear()
    do(ctx, vm)
    assert repository.instance_get(vm)['task_state'] is None
    api.migrate(ctx, vm, wait=True)
    api.confirm_resize(ctx, vm, wait=True)
    assert state.leaks() == []


@pytest.mark.parametrize('change', sorted(DEVICE_CHANGES))
def test_an_attach_or_detach_during_a_move_is_refused(pcloud, change):
    ctx = pcloud.ctx
    vm = _server_with_devices(pcloud)
    _task_state, do = DEVICE_CHANGES[change]
    before = state.capture(caches=False)
    actions = len(instance_actions.action_list(vm))
    _arm('FinishMigration', faults.BEFORE_EXECUTE, lambda: do(ctx, vm))
    with pytest.raises(Meanwhile):
        api.migrate(ctx, vm, wait=True)
    [(kind, message)] = Meanwhile.seen
    assert issubclass(kind, exception.Conflict)
    # Named: the move's unfinished flow (checked first) or its task state.
    assert 'migrate flow' in message or 'resize_' in message
    assert '\n' not in message
    assert state.capture(caches=False) == before
    # One more action: the migrate's, none of the refused change.
    assert [a['action'] for a in instance_actions.action_list(vm)][
        :-actions] == ['migrate']
    assert state.leaks() == []


@pytest.mark.parametrize('change', sorted(DEVICE_CHANGES))
def test_a_command_killed_while_holding_the_server_is_finished_again(
        pcloud, change):
    """Killed between its task state and anything else (a simulated
    crash: no undo runs), the command leaves the task state: a move, and
    another change, are refused with one line; the same command run
    again takes it over and finishes."""
    ctx = pcloud.ctx
    vm = _server_with_devices(pcloud)
    task_state, do = DEVICE_CHANGES[change]
    faults.inject('device-held', faults.WINDOW,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        do(ctx, vm)
    faults.clear()
    assert repository.instance_get(vm)['task_state'] == task_state
    with pytest.raises(exception.Conflict, match=task_state):
        api.migrate(ctx, vm, wait=True)
    other = [c for c in DEVICE_CHANGES if c != change]
    for name in other:
        with pytest.raises(exception.Conflict, match=task_state):
            DEVICE_CHANGES[name][1](ctx, vm)
    do(ctx, vm)
    assert repository.instance_get(vm)['task_state'] is None
    assert state.leaks() == []
    api.migrate(ctx, vm, wait=True)
    api.revert_resize(ctx, vm, wait=True)
    assert state.leaks() == []


def test_the_cli_refuses_a_move_of_a_held_server_in_one_line(conf, tmp_path):
    run = cli.make_cli(conf, tmp_path, plugins=['volumes'])
    vm = cli.show(run, 'server', 'show', 'vm1')['uuid']
    repository.instance_update(vm, {'task_state': states.DETACHING_VOLUME})
    before = state.capture()
    code, out, err = run('server', 'migrate', 'vm1')
    assert code != 0
    assert err.count('\n') == 1 and 'detaching_volume' in err, err
    assert state.capture() == before
