"""Recovery: resume, roll back or cancel a flow that another process left.

A flow that is neither finished nor leased was interrupted: its process
died. Only such a flow may be resumed (:func:`resume`) or rolled back
(:func:`rollback`) by another process; a conductor runs a flow of its job
with :func:`run_job`. A flow posted as a job on the jobboard that no
conductor has started yet is not interrupted but queued: resume refuses
it, rollback cancels it (:func:`_cancel`). A flow whose operation the
records never started ends rolled back, changing nothing
(:func:`_end_never_started`). A finished move may be undone while it
waits for confirm or revert (:data:`UNDOING_FINISHED_MOVE`); a flow past
a point of no return is finished forward (:func:`_redirect_forward`).

TaskFlow's own resume has traps (shared/TASKFLOW.md): running a REVERTED
flow again re-executes it forward from scratch, and after an undo step
raised, a plain run marks the flow REVERTED without undoing the steps
before it. :func:`resume` and :func:`rollback` read the atom states first
and never fall into either.

What it reads from a task is declared on ``tasks/base.ResizeFlowsTask``:
``point_of_no_return``, ``undoable(migration_uuid)`` and ``lifecycle``.
"""
import logging

from taskflow import states as tf_states
from taskflow.types import failure as tf_failure

from resize_flows import conf as rf_conf
from resize_flows.conf import CONF
from resize_flows import engine as rf_engine
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import flows as rf_flows
from resize_flows import leases
from resize_flows.persistence import flowaborts
from resize_flows.persistence import models
from resize_flows.persistence import repairs
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows import timeutils

LOG = logging.getLogger(__name__)


def _take(flow_id, owner=None):
    """Lease a stored flow for this process (or ``owner``) and load it;
    refuse one that another live process holds."""
    rf_conf.validate(CONF)
    _book, detail = rf_engine.find_detail(flow_id)
    rf_engine.check_plugins(detail)
    lease = leases.Lease(flow_id, owner).acquire()
    try:
        # Checked under the lease: ``flow abandon`` holds it as it writes.
        if repairs.abandon_get(flow_id) is not None:
            _refuse_abandoned({'status': flowstatus.ABANDONED},
                              'run', flow_id)
        return rf_engine.load(flow_id, lease)
    except Exception:
        lease.release()
        raise


def _record_holder(handle):
    """Note in the flow's meta who took it, with which fencing token and
    when (``flow show``: ``holders``), so that the flow log shows each
    takeover. One write, itself fenced."""
    holders = list(handle.meta.get('holders') or [])
    holders.append({'owner': handle.lease.owner, 'token': handle.lease.token,
                    'at': timeutils.iso(models.utcnow())})
    handle.meta['holders'] = holders
    handle.engine.storage.update_flow_metadata({'holders': holders})


def _atoms(handle):
    """[(name, state, intention)] of the flow's tasks, in flow order."""
    storage = handle.engine.storage
    return [(atom.name, storage.get_atom_state(atom.name),
             storage.get_atom_intention(atom.name))
            for atom in rf_flows.iter_atoms(handle.flow)]


def _point_of_no_return_atoms(handle):
    """{name: task} of the flow's tasks whose execute cannot be undone
    once it has deleted files."""
    return {atom.name: atom for atom in rf_flows.iter_tasks(handle.flow)
            if atom.point_of_no_return}


def _past_no_return(handle, atoms):
    """Names of the points of no return this flow has passed: done, or
    interrupted after deleting what an undo would need."""
    tasks = _point_of_no_return_atoms(handle)
    past = []
    for name, state, _intention in atoms:
        if name not in tasks:
            continue
        if state in (tf_states.SUCCESS, tf_states.REVERT_FAILURE) or (
                state in (tf_states.RUNNING, tf_states.FAILURE,
                          tf_states.REVERTING)
                and not tasks[name].undoable(handle.meta['migration_uuid'])):
            past.append(name)
    return past


def _lifecycle_task(handle):
    """The name of the flow's lifecycle task (its task whose
    ``lifecycle`` is true: the one whose undo undoes what the API did
    before it stored the flow), or None."""
    for atom in rf_flows.iter_tasks(handle.flow):
        if atom.lifecycle:
            return atom.name
    return None


#: Set in a flow's meta when the records never started its operation:
#: why (the flow then ends rolled back without running anything).
NEVER_STARTED = 'never_started'


def _never_started(handle):
    """Why the records never started this flow's operation, or None when
    they did: its process died after storing the flow and before the
    API's compare-and-swap start, so no migration names the flow (a move's
    migration does not exist; a confirm's or revert's belongs to another
    flow, maybe a later one's). Not asked once the flow's lifecycle task
    has run: it found the records started."""
    lifecycle = _lifecycle_task(handle)
    _book, detail = rf_engine.find_detail(handle.flow_id)
    first = (None if lifecycle is None
             else rf_engine.find_atom(detail, lifecycle))
    if first is not None and first.state not in (None, tf_states.PENDING):
        return None
    try:
        mig = repository.migration_get(handle.meta['migration_uuid'])
    except exception.MigrationNotFound:
        return 'no migration %s exists' % handle.meta['migration_uuid']
    if mig['flow_id'] != handle.flow_id:
        return 'migration %s belongs to flow %s' % (mig['uuid'],
                                                    mig['flow_id'])
    return None


def _end_never_started(handle, reason):
    """End a flow whose operation the records never started as rolled
    back, touching nothing else (no task runs, nothing is undone: it owns
    nothing); the reason stays in its meta (``flow show``)."""
    try:
        LOG.warning('flow %s never started its operation (%s): ending it '
                    'as rolled back, changing nothing else', handle.flow_id,
                    reason)
        storage = handle.engine.storage
        storage.update_flow_metadata({NEVER_STARTED: reason})
        storage.set_flow_state(tf_states.REVERTED)
    finally:
        handle.close()
    return tf_states.REVERTED


def _take_unless_never_started(flow_id, owner=None):
    """(handle, None) of a flow taken for resume or rollback, or (None,
    final state) of one the records never started, ended here."""
    handle = _take(flow_id, owner)
    try:
        if handle.engine.storage.get_flow_state() in states.FLOW_ENDED:
            return handle, None
        reason = _never_started(handle)
    except BaseException:
        handle.close()
        raise
    if reason is None:
        return handle, None
    return None, _end_never_started(handle, reason)


def _refuse_abandoned(brief, verb, flow_id):
    """An abandoned flow is never run again (``flow abandon``)."""
    if brief is not None and brief['status'] == flowstatus.ABANDONED:
        raise exception.FlowStateConflict(
            verb=verb, flow_id=flow_id,
            reason='it was abandoned (see flow show); start a new '
                   'operation instead')


def run_job(flow_id, listeners=(), owner=None):
    """Run a stored flow for a conductor's job, under ``owner``'s lease:
    a flow never run starts, an interrupted one is resumed (see
    :func:`resume`), an ended one or one stuck on a failed undo step is
    left as it is. Returns the flow's state at the end."""
    brief = flowstatus.flow_brief(flow_id)
    if brief is None:
        raise exception.FlowNotFound(flow_id=flow_id)
    if brief['state'] in states.FLOW_ENDED or \
            brief['status'] in (flowstatus.STUCK, flowstatus.ABANDONED):
        return brief['state']
    if brief['state'] in states.FLOW_NEVER_RUN:
        # Never started: nothing to resume, no task ran (its tasks may not
        # be in the log yet: the engine adds them as it first compiles).
        return _start(_take(flow_id, owner), listeners)
    return resume(flow_id, listeners, owner=owner)


def _start(handle, listeners):
    """Run a flow that was never run (taken already); should another
    process have run it meanwhile, as :func:`resume` does. One the
    records never started ends rolled back (:func:`_end_never_started`)."""
    if handle.engine.storage.get_flow_state() not in states.FLOW_NEVER_RUN:
        handle.close()
        return resume(handle.flow_id, listeners, owner=handle.lease.owner)
    try:
        reason = _never_started(handle)
    except BaseException:
        handle.close()
        raise
    if reason is not None:
        return _end_never_started(handle, reason)
    return _run_expecting(handle, listeners, None)


def resume(flow_id, listeners=(), owner=None):
    """Run an interrupted flow on from where it stopped.

    Tasks that had finished are not run again (their stored results feed
    the later ones); a task that was running when its process died runs
    again from its start; a flow that was being undone goes on undoing. A
    flow stuck on a point of no return (its files deleted, the undo
    refused) is finished forward. Refused: a finished or rolled-back flow,
    a flow another live process holds, a flow stuck on a failed undo step
    (that needs :func:`rollback` once the cause is fixed), a flow queued
    on the jobboard (a conductor will start it; :func:`rollback` cancels
    it). A flow that never ran a task, its operation started in the
    records (its process died before it ran), is started. A flow whose
    operation the records never started (its process died between
    storing it and starting it) ends rolled back, changing nothing else
    (:func:`_end_never_started`). An unfinished rollback of a finished
    move first claims the server, if it had not yet (:func:`_hold_claim`).
    """
    brief = flowstatus.flow_brief(flow_id)
    _refuse_abandoned(brief, 'resume', flow_id)
    if brief is not None and brief['status'] == flowstatus.QUEUED:
        raise exception.FlowStateConflict(
            verb='resume', flow_id=flow_id,
            reason='it is queued as job %s on the jobboard and a conductor '
                   'will start it (roll it back to cancel it)'
                   % brief['job_uuid'])
    handle, ended = _take_unless_never_started(flow_id, owner)
    if handle is None:
        return ended
    if handle.engine.storage.get_flow_state() in states.FLOW_NEVER_RUN:
        # Its process died before it ran anything: start it.
        return _run_expecting(handle, listeners, None)
    try:
        state = handle.engine.storage.get_flow_state()
        if state == tf_states.SUCCESS:
            raise exception.FlowStateConflict(
                verb='resume', flow_id=flow_id, reason='it has finished')
        if state == tf_states.REVERTED:
            raise exception.FlowStateConflict(
                verb='resume', flow_id=flow_id,
                reason='it was rolled back; start a new operation instead')
        atoms = _atoms(handle)
        undoing = any(intention == tf_states.REVERT
                      for _name, _state, intention in atoms)
        failed = [name for name, st, _ in atoms
                  if st == tf_states.REVERT_FAILURE]
        if failed:
            if not set(failed) <= set(_point_of_no_return_atoms(handle)):
                raise exception.FlowStateConflict(
                    verb='resume', flow_id=flow_id,
                    reason='the undo step of %s failed; fix its cause, '
                           'then roll the flow back' % ', '.join(failed))
            _redirect_forward(handle, atoms, failed)
            undoing = False
        handle.engine.compile()
        handle.engine.prepare()
        if undoing and handle.meta.get(UNDOING_FINISHED_MOVE):
            _hold_claim(handle)
    except BaseException:
        handle.close()
        raise
    return _run_expecting(handle, listeners,
                          tf_states.REVERTED if undoing else None)


def _run_expecting(handle, listeners, expected):
    """Run; when the flow ends in ``expected`` (REVERTED for an undo that
    was asked for, or that was under way), that is success, not the
    failure TaskFlow raises again for a reverted flow."""
    try:
        _record_holder(handle)
    except Exception:
        handle.close()
        raise
    try:
        return rf_engine.run(handle, listeners)
    except Exception:
        brief = flowstatus.flow_brief(handle.flow_id)
        if expected is not None and brief and brief['state'] == expected:
            return expected
        raise


def _redirect_forward(handle, atoms, failed):
    """A point of no return's undo refused: finish the flow instead."""
    engine = handle.engine
    engine.compile()
    engine.prepare()
    storage = engine.storage
    for name, state, intention in atoms:
        if name in failed:
            storage.reset(name)
        elif intention != tf_states.EXECUTE:
            storage.set_atom_intention(name, tf_states.EXECUTE)
    storage.set_flow_state(tf_states.RUNNING)


def rollback(flow_id, listeners=()):
    """Undo every task of a flow that ran or was running, newest first.

    Works on an interrupted flow, a flow whose undo step failed (that step
    is tried again, then the undo goes on), a finished resize or migration
    that no later operation has built on, and a flow that never started
    (queued on the jobboard, or its process died first): that one is
    cancelled (:func:`_cancel`). Refused: a flow already rolled back, a
    flow another live process holds, and a flow past its point of no
    return (a confirm or revert that deleted files: resume it instead).
    """
    _refuse_abandoned(flowstatus.flow_brief(flow_id), 'roll back', flow_id)
    handle, ended = _take_unless_never_started(flow_id)
    if handle is None:
        return ended
    if handle.engine.storage.get_flow_state() in states.FLOW_NEVER_RUN:
        return _cancel(handle, listeners)
    try:
        engine = handle.engine
        state = engine.storage.get_flow_state()
        if state == tf_states.REVERTED:
            raise exception.FlowStateConflict(
                verb='roll back', flow_id=flow_id,
                reason='it is rolled back already')
        atoms = _atoms(handle)
        past = _past_no_return(handle, atoms)
        if past:
            raise exception.FlowStateConflict(
                verb='roll back', flow_id=flow_id,
                reason='%s has deleted files already; resume the flow to '
                       'finish it' % ', '.join(past))
        if state == tf_states.SUCCESS:
            # The undo is recorded first, then the server claimed: killed
            # in between, the flow is an unfinished undo, which blocks the
            # server's other operations, and whose resume or rollback
            # claims the server before it undoes anything.
            _check_finished_move(handle)
            # An abort that came too late (the move finished first) is
            # not this undo's: the migration ends error, not cancelled.
            flowaborts.abort_delete(flow_id)
            handle.meta[UNDOING_FINISHED_MOVE] = True
            engine.storage.update_flow_metadata(
                {UNDOING_FINISHED_MOVE: True})
        engine.compile()
        engine.prepare()
        storage = engine.storage
        for name, st, _intention in atoms:
            if st == tf_states.REVERT_FAILURE:
                # TaskFlow would call the flow REVERTED without undoing
                # the tasks before this one: undo this one again.
                storage.set_atom_state(name, tf_states.REVERTING)
            if st != tf_states.PENDING:
                storage.set_atom_intention(name, tf_states.REVERT)
        if state in (tf_states.SUCCESS, tf_states.FAILURE):
            storage.set_flow_state(tf_states.RUNNING)
        if handle.meta.get(UNDOING_FINISHED_MOVE):
            faults.window('rollback-recorded')
            _hold_claim(handle)
    except BaseException:
        handle.close()
        raise
    return _run_expecting(handle, listeners, tf_states.REVERTED)


def _cancel(handle, listeners):
    """Roll back a flow none of whose tasks ran: undo what the API did
    before it stored the flow, which is what its lifecycle task (the
    first one) undoes (e.g. the migration ``error`` and the instance
    back as it was). That task is recorded as failed with
    :class:`~resize_flows.exception.FlowCancelled` and the engine undoes
    it, so the flow log, the instance's action events and a client
    waiting on the flow see an ordinary rolled-back flow. The caller holds
    the flow's lease: a conductor that claims its job meanwhile cannot
    take the flow, and once it is rolled back only consumes the job."""
    engine = handle.engine
    try:
        engine.compile()
        engine.prepare()
        storage = engine.storage
        atoms = _atoms(handle)
        ran = [name for name, st, _ in atoms if st != tf_states.PENDING]
        if ran:
            raise exception.FlowStateConflict(
                verb='cancel', flow_id=handle.flow_id,
                reason='%s ran already' % ', '.join(ran))
        lifecycle = _lifecycle_task(handle)
        if lifecycle is None:
            raise exception.FlowStateConflict(
                verb='cancel', flow_id=handle.flow_id,
                reason='it has no lifecycle task to cancel')
        cancelled = exception.FlowCancelled(flow_id=handle.flow_id,
                                            owner=handle.lease.owner)
        storage.save(lifecycle, tf_failure.Failure.from_exception(cancelled),
                     tf_states.FAILURE)
        for name, _st, _intention in atoms:
            storage.set_atom_intention(name, tf_states.REVERT)
    except Exception:
        handle.close()
        raise
    return _run_expecting(handle, listeners, tf_states.REVERTED)


#: Set in a flow's meta when its rollback as a finished move was recorded:
#: its undo must hold the server (task_state ``resize_reverting``).
UNDOING_FINISHED_MOVE = 'undoing_finished_move'


def _check_finished_move(handle):
    """Rolling back a finished move is an operation on its instance: only
    while the move waits for confirm or revert and nothing else runs."""
    mig = repository.migration_get(handle.meta['migration_uuid'])
    if mig['status'] != states.MIGRATION_FINISHED:
        raise exception.FlowStateConflict(
            verb='roll back', flow_id=handle.flow_id,
            reason='its migration is %s now' % mig['status'])
    inst = repository.instance_get(mig['instance_uuid'])
    if inst['vm_state'] != states.RESIZED or inst['task_state'] is not None:
        raise exception.FlowStateConflict(
            verb='roll back', flow_id=handle.flow_id,
            reason='instance %s is %s with task %s' % (
                inst['uuid'], inst['vm_state'], inst['task_state']))


def _hold_claim(handle):
    """Make sure the recorded rollback of a finished move holds its server
    (task_state ``resize_reverting`` by compare-and-swap from RESIZED and
    idle), claiming it if the process that recorded the undo died first.
    Held already once the undo has begun (the last task's undo moves the
    migration off ``finished``). Lost to another operation that started
    first: the undo is taken back, the flow is finished again, and the
    rollback refused."""
    last = list(rf_flows.iter_tasks(handle.flow))[-1].name
    undo_begun = handle.engine.storage.get_atom_state(last) != \
        tf_states.SUCCESS
    if undo_begun:
        return
    mig = repository.migration_get(handle.meta['migration_uuid'])
    if mig['status'] == states.MIGRATION_FINISHED:
        try:
            repository.instance_update(
                mig['instance_uuid'],
                {'task_state': states.RESIZE_REVERTING},
                expected_vm_state=states.RESIZED,
                expected_task_state=(None, states.RESIZE_REVERTING))
            return
        except (exception.InstanceInvalidState,
                exception.UnexpectedTaskStateError):
            pass
    inst = repository.instance_get(mig['instance_uuid'])
    _unrecord_rollback(handle)
    raise exception.FlowStateConflict(
        verb='roll back', flow_id=handle.flow_id,
        reason='another operation took instance %s first (migration %s is '
               '%s, task %s); the flow is finished again' % (
                   inst['uuid'], mig['uuid'], mig['status'],
                   inst['task_state']))


def _unrecord_rollback(handle):
    """Take back the recorded rollback of a finished move that could not
    claim its server: the flow is finished again, as it was."""
    storage = handle.engine.storage
    for name, _state, _intention in _atoms(handle):
        storage.set_atom_intention(name, tf_states.EXECUTE)
    storage.update_flow_metadata({UNDOING_FINISHED_MOVE: False})
    handle.meta[UNDOING_FINISHED_MOVE] = False
    storage.set_flow_state(tf_states.SUCCESS)
