"""The crash matrix: every flow killed by a real process death at every
point of every task, on real QEMU hosts, then finished or undone by
another process.

For each of resize, migrate, confirm_resize and revert_resize, each task of
its flow and each of before-execute and after-execute, the operation runs
as ``resize-flows`` in a subprocess armed with
``OS_TESTING__FAULTS=<task>:<point>:crash``, which dies there through
``os._exit`` (no cleanup, no flow log update, the guests keep running).
Once the dead process's lease has expired, the flow shows ``interrupted``,
and another ``resize-flows`` process runs ``flow resume`` or ``flow
rollback`` on it. A rollback past a point of no return (CleanupSource or
DeleteDestinationFiles done) must be refused with one line, changing
nothing; the flow is resumed instead.

The reference plugins ``ports`` and ``volumes`` are enabled, in the test
process and in every ``resize-flows`` process (crash_servers.py): their
tasks (``ports.BindDestination``, ``volumes.ConnectOnDestination``...)
are in the flows, and so crash points like the others, and each test's
server has a port (a NIC of its guest) and a volume (a virtio disk of its
guest), attached through the API before the operation.

The undo points (before-revert, after-revert) are reached by rolling a
finished resize back in a subprocess that dies at that point of a task,
then rolling it back again.

After each recovery the test process checks, against the hypervisors and
the disks: one domain per instance, on the host the records name, in the
power state they name (during a move that waits for confirm or revert,
the source keeps its defined, shut-off guest, as in Nova); allocations
exactly what the instance and its migration imply, no directory, disk or
snapshot that nothing refers to, and nothing the plugins' ``audit()``
finds: every port bound ACTIVE on exactly the host the records name, every
attached volume connected to exactly one guest, on that host
(``state.leaks()``); the migration in its resting status; after a
rollback, the whole cloud as it was before the operation, the plugins'
records included (``state.capture(caches=False)``). A move that was
resumed to ``finished`` is then confirmed (resize) or reverted (migrate)
to prove it is a sound resting state.

The hosts are shared by the tests of a session (one pair per pytest-xdist
worker); each test boots and deletes its own server, a real instance
directory: a root overlay on the image cached in ``_base``, an ephemeral
and a swap disk on their blank bases, a config drive, ``disk.info`` (no
OS boots: the image holds data only). Every file of it is in
``state.capture()``; the image caches are left out of the comparisons,
since a base that an undone move fetched stays cached (not a leak).

With both plugins the flows have 12 (resize, migrate), 6 (confirm) and
9 (revert) tasks: the whole matrix is 180 cases (156 kills while doing,
24 while undoing) and takes about 30 minutes with ``-n 2`` on a
2-core machine. A plain run (``make test``) runs a sample of
22: four tasks of each flow spread over it (its first, its last and two
between; for migrate, which takes resize's path, its copy, its plugins'
step and its finish), each with another of the four points and
recoveries, both refusals past a point of no return, and four tasks'
undo. The whole matrix
runs when the marker is selected (``-m crash_matrix``, as CI does) or with
``RESIZE_FLOWS_CRASH_MATRIX=full``; the rest are skipped, saying so.
"""
import json

import pytest

from resize_flows import api
from resize_flows import flows
from resize_flows.flows import confirm
from resize_flows.flows import resize
from resize_flows.flows import revert
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from tests.integration.conftest import assert_consistent
from tests.integration.conftest import full_crash_run
from tests.integration.conftest import wait_leases_expired
from tests.integration.crash_servers import assert_devices
from tests.integration.crash_servers import PLUGINS

pytestmark = [pytest.mark.integration, pytest.mark.crash_matrix]

_FLOWS = {
    'resize': resize.get_resize_flow('resize', plugins=PLUGINS),
    'migrate': resize.get_resize_flow('migrate', plugins=PLUGINS),
    'confirm_resize': confirm.get_confirm_resize_flow(plugins=PLUGINS),
    'revert_resize': revert.get_revert_resize_flow(plugins=PLUGINS),
}
TASKS = {op: [atom.name for atom in flows.iter_tasks(flow)]
         for op, flow in _FLOWS.items()}
NO_RETURN = {atom.name for flow in _FLOWS.values()
             for atom in flows.iter_tasks(flow)
             if getattr(atom, 'point_of_no_return', False)}

EXECUTE_POINTS = (faults.BEFORE_EXECUTE, faults.AFTER_EXECUTE)
REVERT_POINTS = (faults.BEFORE_REVERT, faults.AFTER_REVERT)
RECOVERIES = ('resume', 'rollback')

#: The migration's status once each operation has run to its end.
DONE = {'resize': states.MIGRATION_FINISHED,
        'migrate': states.MIGRATION_FINISHED,
        'confirm_resize': states.MIGRATION_CONFIRMED,
        'revert_resize': states.MIGRATION_REVERTED}
#: ... and once its flow has been rolled back.
UNDONE = {'resize': states.MIGRATION_ERROR,
          'migrate': states.MIGRATION_ERROR,
          'confirm_resize': states.MIGRATION_FINISHED,
          'revert_resize': states.MIGRATION_FINISHED}

CASES = [
    pytest.param(op, task, point, recovery,
                 id='%s-%s-%s-%s' % (op, task, point, recovery))
    for op in _FLOWS for task in TASKS[op] for point in EXECUTE_POINTS
    for recovery in RECOVERIES]

REVERT_CASES = [
    pytest.param(task, point, id='%s-%s' % (task, point))
    for task in TASKS['resize'] for point in REVERT_POINTS]

# The sample of a plain run (see the module docstring).
_COMBOS = ((faults.BEFORE_EXECUTE, 'resume'),
           (faults.AFTER_EXECUTE, 'rollback'),
           (faults.AFTER_EXECUTE, 'resume'),
           (faults.BEFORE_EXECUTE, 'rollback'))
_OFFSET = {'resize': 0, 'migrate': 2, 'confirm_resize': 1,
           'revert_resize': 3}


def _spread(tasks, n=4):
    """``n`` tasks spread over the flow: its first, its last and between."""
    return [tasks[round(i * (len(tasks) - 1) / (n - 1))] for i in range(n)]


_SAMPLED = dict({op: _spread(TASKS[op]) for op in _FLOWS},
                migrate=['MoveSourceToResize', 'CopyDisk',
                         'volumes.ConnectOnDestination', 'FinishMigration'])
SAMPLE = (
    {'%s-%s-%s-%s' % ((op, task) + _COMBOS[(i + _OFFSET[op]) % 4])
     for op in _FLOWS for i, task in enumerate(_SAMPLED[op])} |
    {'%s-%s-%s-rollback' % (op, task, faults.AFTER_EXECUTE)
     for op in _FLOWS for task in TASKS[op] if task in NO_RETURN} |
    {'%s-%s' % (task, REVERT_POINTS[i % 2])
     for i, task in enumerate(_spread(TASKS['resize']))})


@pytest.fixture(autouse=True)
def _sample_unless_full_matrix(request):
    if (request.node.callspec.id not in SAMPLE
            and not full_crash_run(request.config)):
        pytest.skip('whole crash matrix only: select it with -m '
                    'crash_matrix or RESIZE_FLOWS_CRASH_MATRIX=full')


def _command(operation, vm):
    return {
        'resize': ('server', 'resize', '--flavor', 'bigger', vm),
        'migrate': ('server', 'migrate', vm),
        'confirm_resize': ('server', 'resize', 'confirm', vm),
        'revert_resize': ('server', 'resize', 'revert', vm),
    }[operation] + ('-q', '-f', 'json')


def _crash(cloud, args, task, point):
    """Run ``resize-flows ARGS`` so that it dies at ``task``/``point``."""
    proc = cloud.cli(*args, fault='%s:%s:crash' % (task, point))
    assert proc.returncode == faults.CRASH_EXIT_CODE, (
        'expected the process to die at %s %s (exit %d), it exited %d: %s'
        % (task, point, faults.CRASH_EXIT_CODE, proc.returncode,
           proc.stderr or proc.stdout))


def _interrupted_flow(cloud, vm, operation):
    """The flow a dead process left, once its lease has expired, as
    ``flow list -f json`` shows it: ``interrupted``. Returns its id."""
    assert wait_leases_expired(vm, operation), 'no %s flow' % operation
    rows = cloud.cli_ok('flow', 'list', '--server', vm,
                        '--operation', operation)
    newest = rows[0]
    assert (newest['Status'], newest['Owner']) == (flowstatus.INTERRUPTED,
                                                   None), newest
    # The migration names the same flow.
    assert repository.migration_list(vm)[-1]['flow_id'] == newest['Flow']
    return newest['Flow']


def _recover(cloud, verb, flow_id):
    """``flow resume|rollback FLOW`` in a new process; its ``-f json``."""
    proc = cloud.cli('flow', verb, flow_id, '-q', '-f', 'json')
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _assert_finished(operation, vm, before):
    """``operation`` ran to its end. ``before`` is the cloud before the
    move (for confirm and revert: before the resize they resolve)."""
    mig = repository.migration_list(vm)[-1]
    assert mig['status'] == DONE[operation]
    assert_consistent(vm)
    assert_devices(vm)
    inst = repository.instance_get(vm)
    if operation in ('resize', 'confirm_resize'):
        assert (inst['host'], inst['flavor_id']) == (
            'host2', repository.flavor_get('bigger')['id'])
    elif operation == 'migrate':
        assert (inst['host'], inst['flavor_id']) == (
            'host2', repository.flavor_get('tiny')['id'])
    else:
        assert state.capture(caches=False) == before
    # A move resumed to ``finished`` is a sound resting state: it can be
    # resolved, either way.
    if operation == 'resize':
        api.confirm_resize(api.get_admin_context(), vm, wait=True)
        assert repository.migration_get(mig['uuid'])['status'] == \
            states.MIGRATION_CONFIRMED
        assert_consistent(vm)
        assert_devices(vm)
    elif operation == 'migrate':
        api.revert_resize(api.get_admin_context(), vm, wait=True)
        assert repository.migration_get(mig['uuid'])['status'] == \
            states.MIGRATION_REVERTED
        assert_consistent(vm)
        assert_devices(vm)
        assert state.capture(caches=False) == before


def _assert_rolled_back(operation, vm, before):
    assert state.capture(caches=False) == before
    assert repository.migration_list(vm)[-1]['status'] == UNDONE[operation]
    assert_consistent(vm)


@pytest.mark.parametrize('operation, task, point, recovery', CASES)
def test_crash_then_recover(crash_cloud, operation, task, point, recovery):
    vm = crash_cloud.server(devices=True)
    before = state.capture(caches=False)
    if operation in ('confirm_resize', 'revert_resize'):
        api.resize(crash_cloud.ctx, vm, 'bigger', wait=True)
    start = state.capture(caches=False)

    _crash(crash_cloud, _command(operation, vm), task, point)
    flow_id = _interrupted_flow(crash_cloud, vm, operation)

    if recovery == 'resume':
        shown = _recover(crash_cloud, 'resume', flow_id)
        assert shown['status'] == flowstatus.FINISHED
        _assert_finished(operation, vm, before)
        return

    if task in NO_RETURN and point == faults.AFTER_EXECUTE:
        # Files are gone: refused, one line, nothing changed; resume.
        log_before = flowstatus.show_flow(flow_id)
        cloud_before = state.capture(caches=False)
        proc = crash_cloud.cli('flow', 'rollback', flow_id, '-q')
        assert proc.returncode != 0
        message = proc.stderr.strip()
        assert '\n' not in message, message
        assert 'deleted files already; resume' in message, message
        assert task in message
        assert flowstatus.show_flow(flow_id) == log_before
        assert state.capture(caches=False) == cloud_before
        shown = _recover(crash_cloud, 'resume', flow_id)
        assert shown['status'] == flowstatus.FINISHED
        _assert_finished(operation, vm, before)
        return

    shown = _recover(crash_cloud, 'rollback', flow_id)
    assert shown['status'] == flowstatus.ROLLED_BACK
    _assert_rolled_back(operation, vm, start)
    assert_devices(vm)


@pytest.mark.parametrize('task, point', REVERT_CASES)
def test_crash_during_rollback_then_rollback_again(crash_cloud, task, point):
    vm = crash_cloud.server(devices=True)
    before = state.capture(caches=False)
    moved = crash_cloud.cli_ok(*_command('resize', vm)[:-2])
    assert moved['status'] == states.MIGRATION_FINISHED
    flow_id = moved['flow']

    _crash(crash_cloud, ('flow', 'rollback', flow_id, '-q'), task, point)
    assert _interrupted_flow(crash_cloud, vm, 'resize') == flow_id

    shown = _recover(crash_cloud, 'rollback', flow_id)
    assert shown['status'] == flowstatus.ROLLED_BACK
    _assert_rolled_back('resize', vm, before)
    assert_devices(vm)
