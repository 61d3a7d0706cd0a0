"""Real process deaths in the windows between a flow's writes (issue 11,
items 1, 2, 3 and 8), on real QEMU hosts.

Each case runs ``resize-flows`` in a subprocess armed with
``OS_TESTING__FAULTS=<window>:window:crash`` (``faults.WINDOWS``), which
dies there through ``os._exit``; the test checks from the database that
it died inside the window, then recovers as an operator would (``flow
list``, ``flow resume`` or ``flow rollback``, sometimes after the user's
next operation), in new processes, and checks the crash matrix's
invariants (test_crash_matrix.py) plus the guest's disk, byte for byte
(``qemu-img compare``), against a copy taken before the crash.
"""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from resize_flows import api
from resize_flows import flowstatus
from resize_flows.persistence import flowindex
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests.integration.conftest import assert_consistent
from tests.integration.conftest import domains_of
from tests.integration.conftest import full_crash_run
from tests.integration.conftest import wait_leases_expired
from tests.integration import test_crash_matrix as matrix

pytestmark = [pytest.mark.integration, pytest.mark.crash_matrix]

OPPOSITE = {'confirm_resize': 'revert_resize',
            'revert_resize': 'confirm_resize'}


def _crash(cloud, args, window):
    """``resize-flows ARGS`` in a new process that dies in ``window``."""
    proc = cloud.cli(*args, fault='%s:%s:crash' % (window, faults.WINDOW))
    assert proc.returncode == faults.CRASH_EXIT_CODE, (
        'expected the process to die in window %s (exit %d), it exited '
        '%d: %s' % (window, faults.CRASH_EXIT_CODE, proc.returncode,
                    proc.stderr or proc.stdout))


def _dead_flow(vm, operation):
    """The newest flow of ``operation`` on ``vm``, once the dead process's
    lease has expired (what the database shows, polled)."""
    flows = wait_leases_expired(vm, operation)
    assert flows, 'no %s flow of %s' % (operation, vm)
    return flows[0]


#: The cases ``make test`` runs: one of each kind of window. The rest run
#: with the crash matrix (``make crash-matrix``, CI).
SAMPLE = {
    'test_killed_before_start_ends_rolled_back[resize-flow-logged-rollback]',
    'test_killed_before_start_ends_rolled_back'
    '[confirm_resize-flow-logged-resume]',
    'test_stale_resolution_after_the_opposite_one[confirm_resize-resume]',
    'test_killed_rollback_of_a_finished_move[resume]',
    'test_killed_delete_is_finished_by_a_second_one[delete-destroyed]',
}


@pytest.fixture(autouse=True)
def _sample_or_whole(request):
    if request.node.name not in SAMPLE and \
            not full_crash_run(request.config):
        pytest.skip('crash windows: runs with -m crash_matrix or '
                    'RESIZE_FLOWS_CRASH_MATRIX=full')


def _never_started(cloud, vm, operation):
    """The flow a process killed between storing it and starting it left:
    interrupted in ``flow list``, and no migration names it."""
    flow = _dead_flow(vm, operation)
    rows = cloud.cli_ok('flow', 'list', '--server', vm,
                        '--operation', operation)
    assert (rows[0]['Flow'], rows[0]['Status']) == (flow['flow_id'],
                                                    flowstatus.INTERRUPTED)
    assert flow['flow_id'] not in [
        m['flow_id'] for m in repository.migration_list(vm)]
    return flow['flow_id']


def _live_disk(vm):
    inst = repository.instance_get(vm)
    drv = virt.get_driver(repository.host_get(inst['host']))
    return os.path.join(drv.instance_dir(vm), 'disk')


class DiskCopy:
    """A copy of the guest's live disk, to compare with later."""

    def __init__(self, vm):
        self.dir = tempfile.mkdtemp(prefix='rf-disk-', dir='/tmp')
        self.path = os.path.join(self.dir, 'disk')
        subprocess.run(['qemu-img', 'convert', '-U', '-O', 'qcow2',
                        _live_disk(vm), self.path], check=True)

    def assert_same(self, vm):
        proc = subprocess.run(['qemu-img', 'compare', '-U', self.path,
                               _live_disk(vm)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def disk_copy():
    copies = []

    def take(vm):
        copies.append(DiskCopy(vm))
        return copies[-1]
    yield take
    for copy in copies:
        copy.remove()


def _migrations(vm):
    return [(m['uuid'], m['status'], m['flow_id'])
            for m in repository.migration_list(vm)]


def _recover(cloud, verb, flow_id):
    proc = cloud.cli('flow', verb, flow_id, '-q', '-f', 'json')
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _ok(cloud, *args):
    """``resize-flows ARGS`` (a command without output) succeeds."""
    proc = cloud.cli(*args)
    assert proc.returncode == 0, (args, proc.stderr)


def _refused(cloud, *args):
    """``resize-flows ARGS`` is refused: non-zero, one line. Returns it."""
    proc = cloud.cli(*args)
    assert proc.returncode != 0, proc.stdout
    message = proc.stderr.strip()
    assert message and '\n' not in message, message
    return message


# -- 1: killed between storing a flow and starting it ----------------------

@pytest.mark.parametrize('operation, window, verb', [
    ('resize', 'flow-logged', 'rollback'),
    ('migrate', 'flow-stored', 'resume'),
    ('confirm_resize', 'flow-logged', 'resume'),
    ('revert_resize', 'flow-stored', 'rollback'),
])
def test_killed_before_start_ends_rolled_back(crash_cloud, disk_copy,
                                              operation, window, verb):
    vm = crash_cloud.server()
    if operation in OPPOSITE:
        api.resize(crash_cloud.ctx, vm, 'bigger', wait=True)
    before = (state.capture(caches=False), _migrations(vm))
    disk = disk_copy(vm)

    _crash(crash_cloud, matrix._command(operation, vm), window)
    flow_id = _never_started(crash_cloud, vm, operation)
    # The server was never blocked.
    assert repository.instance_get(vm)['task_state'] is None

    shown = _recover(crash_cloud, verb, flow_id)
    assert shown['status'] == flowstatus.ROLLED_BACK
    assert flowindex.lease_get(flow_id) is None
    assert (state.capture(caches=False), _migrations(vm)) == before
    assert state.leaks() == []
    disk.assert_same(vm)
    # Ended: the other verb refuses it, one line.
    other = 'resume' if verb == 'rollback' else 'rollback'
    assert flow_id in _refused(crash_cloud, 'flow', other, flow_id)


# -- 2: the stale flow after the user's next operation ---------------------

@pytest.mark.parametrize('stale, verb', [
    ('confirm_resize', 'resume'),
    ('confirm_resize', 'rollback'),
    ('revert_resize', 'resume'),
    ('revert_resize', 'rollback'),
])
def test_stale_resolution_after_the_opposite_one(crash_cloud, disk_copy,
                                                 stale, verb):
    vm = crash_cloud.server()
    api.resize(crash_cloud.ctx, vm, 'bigger', wait=True)
    disk = disk_copy(vm)

    _crash(crash_cloud, matrix._command(stale, vm), 'flow-stored')
    flow_id = _never_started(crash_cloud, vm, stale)
    # The user's opposite operation goes through, in another process.
    done = crash_cloud.cli_ok(*matrix._command(OPPOSITE[stale], vm)[:-2])
    assert done['status'] == matrix.DONE[OPPOSITE[stale]]
    after = (state.capture(caches=False), _migrations(vm))
    assert [f['flow_id'] for f in flowstatus.list_flows(
        server=vm, status=flowstatus.INTERRUPTED)] == [flow_id]

    shown = _recover(crash_cloud, verb, flow_id)
    assert shown['status'] == flowstatus.ROLLED_BACK
    assert (state.capture(caches=False), _migrations(vm)) == after
    assert_consistent(vm)
    inst = repository.instance_get(vm)
    assert list(domains_of(vm)) == [inst['host']]
    disk.assert_same(vm)


# -- 3: killed rollback of a finished move ---------------------------------

@pytest.mark.parametrize('verb', ('resume', 'rollback'))
def test_killed_rollback_of_a_finished_move(crash_cloud, disk_copy, verb):
    vm = crash_cloud.server()
    before = state.capture(caches=False)
    disk = disk_copy(vm)
    moved = crash_cloud.cli_ok(*matrix._command('resize', vm)[:-2])
    assert moved['status'] == states.MIGRATION_FINISHED
    flow_id = moved['flow']

    _crash(crash_cloud, ('flow', 'rollback', flow_id, '-q'),
           'rollback-recorded')
    flow = _dead_flow(vm, 'resize')
    assert flow['flow_id'] == flow_id
    # Inside the window: the undo is recorded, the server not claimed.
    assert flow['status'] == flowstatus.INTERRUPTED
    assert repository.instance_get(vm)['task_state'] is None
    assert repository.migration_list(vm)[-1]['status'] == \
        states.MIGRATION_FINISHED
    # The flow blocks the server's other operations, naming itself.
    for other in ('confirm_resize', 'revert_resize'):
        assert flow_id in _refused(crash_cloud,
                                   *matrix._command(other, vm)[:-2])

    shown = _recover(crash_cloud, verb, flow_id)
    assert shown['status'] == flowstatus.ROLLED_BACK
    matrix._assert_rolled_back('resize', vm, before)
    disk.assert_same(vm)


# -- 8: server delete killed midway; refused while a flow is unfinished ----

@pytest.mark.parametrize('window', ('delete-claimed', 'delete-destroyed'))
def test_killed_delete_is_finished_by_a_second_one(crash_cloud, window):
    vm = crash_cloud.server()
    _crash(crash_cloud, ('server', 'delete', vm), window)
    # Inside the window: the server is being deleted, and nothing else
    # starts on it.
    assert repository.instance_get(vm)['task_state'] == states.DELETING
    assert states.DELETING in _refused(
        crash_cloud, *matrix._command('migrate', vm)[:-2])
    _ok(crash_cloud, 'server', 'delete', vm)
    assert repository.instance_list() == []
    assert domains_of(vm) == {}
    assert repository.allocation_list() == []
    assert state.leaks() == []


def test_delete_of_a_resized_server_confirms_first(crash_cloud):
    vm = crash_cloud.server()
    crash_cloud.cli_ok(*matrix._command('resize', vm)[:-2])
    _ok(crash_cloud, 'server', 'delete', vm)
    assert repository.instance_list() == []
    assert domains_of(vm) == {}
    assert repository.allocation_list() == []
    for host in state.capture(caches=False)['hosts'].values():
        assert host['dirs'] == {}, host
    assert state.leaks() == []


def test_delete_refused_while_a_flow_is_unfinished(crash_cloud, disk_copy):
    vm = crash_cloud.server()
    disk = disk_copy(vm)
    matrix._crash(crash_cloud, matrix._command('resize', vm), 'CopyDisk',
                  faults.BEFORE_EXECUTE)
    flow_id = matrix._interrupted_flow(crash_cloud, vm, 'resize')
    before = state.capture(caches=False)
    assert flow_id in _refused(crash_cloud, 'server', 'delete', vm)
    assert state.capture(caches=False) == before
    assert _recover(crash_cloud, 'rollback', flow_id)['status'] == \
        flowstatus.ROLLED_BACK
    disk.assert_same(vm)
    _ok(crash_cloud, 'server', 'delete', vm)
    assert domains_of(vm) == {}
    assert state.leaks() == []
