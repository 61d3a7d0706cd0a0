"""The exact story of every atom's states, flow by flow.

A story is the ordered list of ``(name, state)`` that TaskFlow's
CaptureListener sees while an operation runs: the flow's own states (its
name is the operation's) and every task's and retry controller's. For
resize, migrate, confirm_resize and revert_resize this checks the story of
a clean run, of a fault at each task (before and after its execute: the
forward story up to it, then the undo story back to the first task), of a
crash at each task followed by a resume (the resumed story starts at the
crashed task and runs no task that had succeeded again), and of a
reschedule (the first destination fails, the alternate takes the move).

The expected stories are derived from each flow's atom order by the small
helpers below; one of each kind is also written out literally, so a reader
sees what a story looks like and the helpers are checked against it.
"""
import pytest
from taskflow.listeners import capturing
from taskflow import states as tf

from resize_flows import api
from resize_flows import exception
from resize_flows import flows
from resize_flows.flows import confirm
from resize_flows.flows import resize
from resize_flows.flows import revert
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state

RUN, OK, FAIL = tf.RUNNING, tf.SUCCESS, tf.FAILURE
UNDOING, UNDONE, UNDO_FAILED = tf.REVERTING, tf.REVERTED, tf.REVERT_FAILURE

#: The atoms of each flow in order (the retry controller of the resize
#: flow's destination subflow included), written out: a test checks the
#: factories build them so, the others expect stories from them.
MOVE = ['BeginMigration', 'SelectDestination', 'TryDestinations',
        'ClaimResources', 'PrepareDestination', 'PowerOffSource',
        'MoveSourceToResize', 'CopyDisk', 'FinishMigration',
        'MarkMigrationFinished']
ATOMS = {
    'resize': MOVE,
    'migrate': MOVE,
    'confirm_resize': ['BeginConfirm', 'ReleaseSourceClaim', 'MarkConfirmed',
                       'CleanupSource'],
    'revert_resize': ['BeginRevert', 'DestroyDestination', 'RestoreSource',
                      'ReleaseDestinationClaim', 'PowerOnSource',
                      'MarkReverted', 'DeleteDestinationFiles'],
}
FACTORIES = {
    'resize': resize.get_resize_flow,
    'migrate': lambda: resize.get_resize_flow('migrate'),
    'confirm_resize': confirm.get_confirm_resize_flow,
    'revert_resize': revert.get_revert_resize_flow,
}
RETRIES = {'TryDestinations'}
#: Tasks whose undo is refused once they ran (their files are deleted).
NO_RETURN = {'CleanupSource', 'DeleteDestinationFiles'}
#: Tasks that report their progress as they go.
REPORTS_PROGRESS = {'CopyDisk'}
OPERATIONS = tuple(ATOMS)
POINTS = (faults.BEFORE_EXECUTE, faults.AFTER_EXECUTE)
TASK_CASES = [(op, name) for op in OPERATIONS for name in ATOMS[op]
              if name not in RETRIES]


class StoryListener(capturing.CaptureListener):
    """CaptureListener keeping ``(atom or flow name, state)``."""

    @staticmethod
    def _format_capture(kind, state, details):
        return (details['%s_name' % kind], state)


def _listening(story):
    """Listener factories (each called with the engine) appending to
    ``story``."""
    return (lambda engine: StoryListener(engine, values=story),)


# -- expected stories --------------------------------------------------------

def forward(atoms):
    """Each atom runs and succeeds, in order."""
    return [(a, s) for a in atoms for s in (RUN, OK)]


def undo(atoms):
    """Each atom is undone, newest first."""
    return [(a, s) for a in reversed(atoms) for s in (UNDOING, UNDONE)]


def clean_run(operation):
    return [(operation, RUN)] + forward(ATOMS[operation]) + [(operation, OK)]


def failed_at(operation, task):
    """The story of a run whose ``task`` raised: the atoms before it run,
    it fails, then it and every atom before it are undone."""
    atoms = ATOMS[operation]
    done = atoms[:atoms.index(task)]
    return ([(operation, RUN)] + forward(done) + [(task, RUN), (task, FAIL)]
            + undo(done + [task]) + [(operation, UNDONE)])


def failed_past_no_return(operation, task):
    """The story of a run whose point of no return raised after it
    deleted files: its undo is refused and the flow stops, stuck."""
    atoms = ATOMS[operation]
    done = atoms[:atoms.index(task)]
    return ([(operation, RUN)] + forward(done)
            + [(task, RUN), (task, FAIL), (task, UNDOING),
               (task, UNDO_FAILED), (operation, FAIL)])


def crashed_at(operation, task):
    """The story a process saw before dying in ``task``."""
    atoms = ATOMS[operation]
    return ([(operation, RUN)] + forward(atoms[:atoms.index(task)])
            + [(task, RUN)])


def resumed_at(operation, task, progressed=False):
    """The story of the resume: ``task``, stored as RUNNING, runs again
    and then the atoms after it; none before it. TaskFlow tells no
    RUNNING for an atom stored RUNNING already, unless the task had
    reported progress before it died (``progressed``): its progress
    goes back to 0 then."""
    atoms = ATOMS[operation]
    again = [(task, RUN), (task, OK)] if progressed else [(task, OK)]
    return ([(operation, RUN)] + again
            + forward(atoms[atoms.index(task) + 1:]) + [(operation, OK)])


# -- running the operations -------------------------------------------------

def _server(cloud, operation):
    """A server ready for ``operation``: resized first (without listening)
    for a confirm or a revert."""
    vm = cloud.server()['uuid']
    if operation in ('confirm_resize', 'revert_resize'):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    return vm


def _run(cloud, operation, vm, story):
    listeners = _listening(story)
    if operation == 'resize':
        return api.resize(cloud.ctx, vm, 'big', wait=True,
                          listeners=listeners)
    return getattr(api, operation)(cloud.ctx, vm, wait=True,
                                   listeners=listeners)


# -- the helpers against stories written out --------------------------------

@pytest.mark.parametrize('operation', OPERATIONS)
def test_factories_build_the_atoms_in_this_order(operation):
    flow = FACTORIES[operation]()
    assert flow.name == operation
    assert [a.name for a in flows.iter_atoms(flow)] == ATOMS[operation]
    assert {a.name for a in flows.iter_atoms(flow)
            if getattr(a, 'point_of_no_return', False)} == \
        NO_RETURN & set(ATOMS[operation])


def test_written_out_stories_match_the_helpers():
    assert clean_run('confirm_resize') == [
        ('confirm_resize', 'RUNNING'),
        ('BeginConfirm', 'RUNNING'), ('BeginConfirm', 'SUCCESS'),
        ('ReleaseSourceClaim', 'RUNNING'), ('ReleaseSourceClaim', 'SUCCESS'),
        ('MarkConfirmed', 'RUNNING'), ('MarkConfirmed', 'SUCCESS'),
        ('CleanupSource', 'RUNNING'), ('CleanupSource', 'SUCCESS'),
        ('confirm_resize', 'SUCCESS')]
    assert failed_at('revert_resize', 'RestoreSource') == [
        ('revert_resize', 'RUNNING'),
        ('BeginRevert', 'RUNNING'), ('BeginRevert', 'SUCCESS'),
        ('DestroyDestination', 'RUNNING'), ('DestroyDestination', 'SUCCESS'),
        ('RestoreSource', 'RUNNING'), ('RestoreSource', 'FAILURE'),
        ('RestoreSource', 'REVERTING'), ('RestoreSource', 'REVERTED'),
        ('DestroyDestination', 'REVERTING'),
        ('DestroyDestination', 'REVERTED'),
        ('BeginRevert', 'REVERTING'), ('BeginRevert', 'REVERTED'),
        ('revert_resize', 'REVERTED')]
    assert failed_past_no_return('confirm_resize', 'CleanupSource') == [
        ('confirm_resize', 'RUNNING'),
        ('BeginConfirm', 'RUNNING'), ('BeginConfirm', 'SUCCESS'),
        ('ReleaseSourceClaim', 'RUNNING'), ('ReleaseSourceClaim', 'SUCCESS'),
        ('MarkConfirmed', 'RUNNING'), ('MarkConfirmed', 'SUCCESS'),
        ('CleanupSource', 'RUNNING'), ('CleanupSource', 'FAILURE'),
        ('CleanupSource', 'REVERTING'), ('CleanupSource', 'REVERT_FAILURE'),
        ('confirm_resize', 'FAILURE')]
    assert crashed_at('migrate', 'PrepareDestination') == [
        ('migrate', 'RUNNING'),
        ('BeginMigration', 'RUNNING'), ('BeginMigration', 'SUCCESS'),
        ('SelectDestination', 'RUNNING'), ('SelectDestination', 'SUCCESS'),
        ('TryDestinations', 'RUNNING'), ('TryDestinations', 'SUCCESS'),
        ('ClaimResources', 'RUNNING'), ('ClaimResources', 'SUCCESS'),
        ('PrepareDestination', 'RUNNING')]
    assert resumed_at('migrate', 'CopyDisk') == [
        ('migrate', 'RUNNING'),
        ('CopyDisk', 'SUCCESS'),
        ('FinishMigration', 'RUNNING'), ('FinishMigration', 'SUCCESS'),
        ('MarkMigrationFinished', 'RUNNING'),
        ('MarkMigrationFinished', 'SUCCESS'),
        ('migrate', 'SUCCESS')]


# -- a clean run -------------------------------------------------------------

def test_resize_story(cloud):
    vm = cloud.server()['uuid']
    story = []
    _run(cloud, 'resize', vm, story)
    assert story == [
        ('resize', 'RUNNING'),
        ('BeginMigration', 'RUNNING'), ('BeginMigration', 'SUCCESS'),
        ('SelectDestination', 'RUNNING'), ('SelectDestination', 'SUCCESS'),
        ('TryDestinations', 'RUNNING'), ('TryDestinations', 'SUCCESS'),
        ('ClaimResources', 'RUNNING'), ('ClaimResources', 'SUCCESS'),
        ('PrepareDestination', 'RUNNING'), ('PrepareDestination', 'SUCCESS'),
        ('PowerOffSource', 'RUNNING'), ('PowerOffSource', 'SUCCESS'),
        ('MoveSourceToResize', 'RUNNING'), ('MoveSourceToResize', 'SUCCESS'),
        ('CopyDisk', 'RUNNING'), ('CopyDisk', 'SUCCESS'),
        ('FinishMigration', 'RUNNING'), ('FinishMigration', 'SUCCESS'),
        ('MarkMigrationFinished', 'RUNNING'),
        ('MarkMigrationFinished', 'SUCCESS'),
        ('resize', 'SUCCESS')]
    assert story == clean_run('resize')


def test_revert_resize_story(cloud):
    vm = _server(cloud, 'revert_resize')
    story = []
    _run(cloud, 'revert_resize', vm, story)
    assert story == [
        ('revert_resize', 'RUNNING'),
        ('BeginRevert', 'RUNNING'), ('BeginRevert', 'SUCCESS'),
        ('DestroyDestination', 'RUNNING'), ('DestroyDestination', 'SUCCESS'),
        ('RestoreSource', 'RUNNING'), ('RestoreSource', 'SUCCESS'),
        ('ReleaseDestinationClaim', 'RUNNING'),
        ('ReleaseDestinationClaim', 'SUCCESS'),
        ('PowerOnSource', 'RUNNING'), ('PowerOnSource', 'SUCCESS'),
        ('MarkReverted', 'RUNNING'), ('MarkReverted', 'SUCCESS'),
        ('DeleteDestinationFiles', 'RUNNING'),
        ('DeleteDestinationFiles', 'SUCCESS'),
        ('revert_resize', 'SUCCESS')]
    assert story == clean_run('revert_resize')


@pytest.mark.parametrize('operation', OPERATIONS)
def test_clean_run_story(cloud, operation):
    vm = _server(cloud, operation)
    story = []
    _run(cloud, operation, vm, story)
    assert story == clean_run(operation)
    assert state.leaks() == []


# -- a fault at each task ----------------------------------------------------

def test_resize_fault_at_copy_disk_story(cloud):
    vm = cloud.server()['uuid']
    faults.inject('CopyDisk', faults.AFTER_EXECUTE)
    story = []
    with pytest.raises(faults.InjectedFault):
        _run(cloud, 'resize', vm, story)
    assert story == [
        ('resize', 'RUNNING'),
        ('BeginMigration', 'RUNNING'), ('BeginMigration', 'SUCCESS'),
        ('SelectDestination', 'RUNNING'), ('SelectDestination', 'SUCCESS'),
        ('TryDestinations', 'RUNNING'), ('TryDestinations', 'SUCCESS'),
        ('ClaimResources', 'RUNNING'), ('ClaimResources', 'SUCCESS'),
        ('PrepareDestination', 'RUNNING'), ('PrepareDestination', 'SUCCESS'),
        ('PowerOffSource', 'RUNNING'), ('PowerOffSource', 'SUCCESS'),
        ('MoveSourceToResize', 'RUNNING'), ('MoveSourceToResize', 'SUCCESS'),
        ('CopyDisk', 'RUNNING'), ('CopyDisk', 'FAILURE'),
        ('CopyDisk', 'REVERTING'), ('CopyDisk', 'REVERTED'),
        ('MoveSourceToResize', 'REVERTING'),
        ('MoveSourceToResize', 'REVERTED'),
        ('PowerOffSource', 'REVERTING'), ('PowerOffSource', 'REVERTED'),
        ('PrepareDestination', 'REVERTING'),
        ('PrepareDestination', 'REVERTED'),
        ('ClaimResources', 'REVERTING'), ('ClaimResources', 'REVERTED'),
        ('TryDestinations', 'REVERTING'), ('TryDestinations', 'REVERTED'),
        ('SelectDestination', 'REVERTING'), ('SelectDestination', 'REVERTED'),
        ('BeginMigration', 'REVERTING'), ('BeginMigration', 'REVERTED'),
        ('resize', 'REVERTED')]


@pytest.mark.sweep
@pytest.mark.parametrize('point', POINTS)
@pytest.mark.parametrize('operation, task', TASK_CASES)
def test_fault_story(cloud, operation, task, point):
    """With two hosts there is no alternate: a fault in the destination
    subflow undoes the whole move too. A point of no return that failed
    after its execute cannot be undone: the flow is stuck, and its resume
    finishes it."""
    vm = _server(cloud, operation)
    before = state.capture()
    faults.inject(task, point)
    story = []
    if task in NO_RETURN and point == faults.AFTER_EXECUTE:
        with pytest.raises(exception.CannotUndo):
            _run(cloud, operation, vm, story)
        assert story == failed_past_no_return(operation, task)
        flow_id = repository.migration_list(vm)[-1]['flow_id']
        resumed = []
        api.resume_flow(cloud.ctx, flow_id, listeners=_listening(resumed))
        # The resume stores the flow RUNNING and the task PENDING before
        # its engine runs: the engine tells neither.
        assert resumed == [(task, RUN), (task, OK), (operation, OK)]
        assert state.leaks() == []
        return
    with pytest.raises(faults.InjectedFault):
        _run(cloud, operation, vm, story)
    assert faults.hits(task, point) == 1
    assert story == failed_at(operation, task)
    assert state.capture() == before


# -- a crash at each task, then resume ---------------------------------------

def test_resize_crash_in_copy_disk_then_resume_story(cloud):
    vm = cloud.server()['uuid']
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    crashed = []
    with pytest.raises(faults.SimulatedCrash):
        _run(cloud, 'resize', vm, crashed)
    faults.clear()
    assert crashed[-5:] == [
        ('PowerOffSource', 'RUNNING'), ('PowerOffSource', 'SUCCESS'),
        ('MoveSourceToResize', 'RUNNING'), ('MoveSourceToResize', 'SUCCESS'),
        ('CopyDisk', 'RUNNING')]
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    resumed = []
    api.resume_flow(cloud.ctx, flow_id, listeners=_listening(resumed))
    assert resumed == [
        ('resize', 'RUNNING'),
        ('CopyDisk', 'SUCCESS'),
        ('FinishMigration', 'RUNNING'), ('FinishMigration', 'SUCCESS'),
        ('MarkMigrationFinished', 'RUNNING'),
        ('MarkMigrationFinished', 'SUCCESS'),
        ('resize', 'SUCCESS')]


@pytest.mark.sweep
@pytest.mark.parametrize('operation, task', TASK_CASES)
def test_crash_then_resume_story(cloud, operation, task):
    """A crash after the task's side effects (SimulatedCrash: TaskFlow
    records nothing more, no undo runs) leaves it RUNNING in the flow
    log; the resume starts there. (A crash before them gives the same
    story: see test_resize_crash_in_copy_disk_then_resume_story.)"""
    point = faults.AFTER_EXECUTE
    vm = _server(cloud, operation)
    faults.inject(task, point, exc_class=faults.SimulatedCrash)
    crashed = []
    with pytest.raises(faults.SimulatedCrash):
        _run(cloud, operation, vm, crashed)
    faults.clear()
    assert crashed == crashed_at(operation, task)
    flow_id = repository.migration_list(vm)[-1]['flow_id']
    resumed = []
    assert api.resume_flow(cloud.ctx, flow_id,
                           listeners=_listening(resumed))['flow_state'] \
        == tf.SUCCESS
    assert resumed == resumed_at(operation, task,
                                 progressed=task in REPORTS_PROGRESS)
    succeeded = {name for name, st in crashed if st == OK}
    assert not succeeded & {name for name, st in resumed if st == RUN}
    assert state.leaks() == []


# -- a reschedule ------------------------------------------------------------

@pytest.mark.parametrize('task', ['ClaimResources', 'PrepareDestination'])
def test_reschedule_story(cloud, task):
    """Three hosts: the first destination fails at ``task``, the retry
    controller undoes its subflow and the alternate takes the move."""
    api.create_host(cloud.ctx, 'host3', 8, 4096, 40)
    vm = cloud.server()['uuid']
    faults.inject(task, faults.BEFORE_EXECUTE)
    story = []
    result = _run(cloud, 'resize', vm, story)
    assert result['migration']['dest_compute'] == 'host3'
    claim_tried = ([('ClaimResources', 'RUNNING'),
                    ('ClaimResources', 'SUCCESS')]
                   if task == 'PrepareDestination' else [])
    assert story == (
        [('resize', 'RUNNING'),
         ('BeginMigration', 'RUNNING'), ('BeginMigration', 'SUCCESS'),
         ('SelectDestination', 'RUNNING'), ('SelectDestination', 'SUCCESS'),
         ('TryDestinations', 'RUNNING'), ('TryDestinations', 'SUCCESS')]
        + claim_tried
        + [(task, 'RUNNING'), (task, 'FAILURE'),
           (task, 'REVERTING'), (task, 'REVERTED')]
        + ([('ClaimResources', 'REVERTING'), ('ClaimResources', 'REVERTED')]
           if claim_tried else [])
        # The atoms of the subflow that ran are PENDING again.
        + [('TryDestinations', 'RETRYING'), ('ClaimResources', 'PENDING')]
        + ([('PrepareDestination', 'PENDING')] if claim_tried else [])
        + [('TryDestinations', 'RUNNING'), ('TryDestinations', 'SUCCESS'),
           ('ClaimResources', 'RUNNING'), ('ClaimResources', 'SUCCESS'),
           ('PrepareDestination', 'RUNNING'),
           ('PrepareDestination', 'SUCCESS'),
           ('PowerOffSource', 'RUNNING'), ('PowerOffSource', 'SUCCESS'),
           ('MoveSourceToResize', 'RUNNING'),
           ('MoveSourceToResize', 'SUCCESS'),
           ('CopyDisk', 'RUNNING'), ('CopyDisk', 'SUCCESS'),
           ('FinishMigration', 'RUNNING'), ('FinishMigration', 'SUCCESS'),
           ('MarkMigrationFinished', 'RUNNING'),
           ('MarkMigrationFinished', 'SUCCESS'),
           ('resize', 'SUCCESS')])
    assert state.leaks() == []
