"""Abort a server's move in progress (``server migration abort``).

The request is recorded in the database (``persistence/flowaborts.py``),
so that whichever process holds the move's flow (this one, another, a
conductor) sees it at its next safe point (``leases.check``: the start
of each task, between the disk copy's chunks, every second of a silent
rsync), fails its task with
:class:`~resize_flows.exception.FlowAborted`, and undoes the flow; the
undo ends the migration ``cancelled``. A flow that nobody runs is undone
here and now: a queued one (on the jobboard, never started) is cancelled
(``recovery.rollback``), an interrupted one rolled back. Refused with
one line, nothing changed: an unknown server, a server with no move, a
move that has finished (its migration ``finished`` or later, a confirm
or revert under way), a flow being undone or stuck already.
"""
import logging
import time

from taskflow import states as tf_states

from resize_flows.api import context
from resize_flows.api import servers
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows import leases
from resize_flows.persistence import flowaborts
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import recovery
from resize_flows import states
from resize_flows import validation

LOG = logging.getLogger(__name__)

#: The operations a migration abort stops.
MOVES = ('resize', 'migrate')
ACTION = 'abort_migration'


def _refuse(inst, reason):
    return exception.MigrationNotAbortable(instance_id=inst['uuid'],
                                           reason=reason)


def _too_late(mig):
    """Why the move of migration ``mig`` can no longer be aborted."""
    last = 'its last move (migration %s)' % mig['uuid']
    if mig['status'] == states.MIGRATION_FINISHED:
        return '%s has finished: confirm or revert it instead' % last
    if mig['status'] in states.MIGRATION_TERMINAL:
        return '%s has ended (%s)' % (last, mig['status'])
    return '%s is %s, past the point where it can be aborted' % (
        last, mig['status'])


def _abortable(inst):
    """(migration, flow brief) of the server's move in progress, or raise
    MigrationNotAbortable saying why there is none to abort."""
    migrations = [m for m in repository.migration_list(inst['uuid'])
                  if m['flow_id']]
    if not migrations:
        raise _refuse(inst, 'it has no move')
    mig = migrations[-1]
    if mig['status'] not in states.MIGRATION_ABORTABLE:
        raise _refuse(inst, _too_late(mig))
    brief = flowstatus.flow_brief(mig['flow_id'])
    if brief is None or brief['operation'] not in MOVES:
        raise _refuse(inst, 'migration %s has no move flow' % mig['uuid'])
    if brief['status'] in (flowstatus.FINISHED, flowstatus.ROLLED_BACK):
        raise _refuse(inst, 'its flow %s has %s' % (mig['flow_id'],
                                                    brief['status']))
    if brief['status'] == flowstatus.STUCK:
        raise _refuse(inst, 'its flow %s is stuck on a failed undo step; '
                            'roll it back with flow rollback once the '
                            'cause is fixed' % mig['flow_id'])
    if brief['state'] == tf_states.REVERTING and brief['status'] == \
            flowstatus.RUNNING:
        raise _refuse(inst, 'its flow %s is being undone already'
                      % mig['flow_id'])
    return mig, brief


@context.tenant_facing
def abort_migration(ctx, server, wait=False, timeout=600):
    """Abort the move in progress of ``server`` (admin). Returns
    {'migration_uuid', 'flow_id', 'status'}: ``cancelled`` once undone
    here (a queued or interrupted flow), ``aborting`` while the process
    that holds the flow has still to see the request (with ``wait``:
    poll until the flow ends, at most ``timeout`` seconds)."""
    validation.check_whole('timeout', timeout)
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, policy.MIGRATION_ABORT, servers.rule_target(inst))
    mig, brief = _abortable(inst)
    flow_id = mig['flow_id']
    flowaborts.abort_request(flow_id, requested_by=ctx.user_id or 'admin',
                             request_id=ctx.request_id)
    instance_actions.action_start(inst['uuid'], ctx.request_id, ACTION,
                                  ctx.user_id, ctx.project_id)
    event = 'abort_%s' % brief['status']
    instance_actions.event_start(inst['uuid'], ctx.request_id, event)
    try:
        status = _stop(flow_id, brief)
        if wait and status != states.MIGRATION_CANCELLED:
            status = _wait(mig['uuid'], timeout)
            if status == states.MIGRATION_FINISHED:
                # Too late: the move finished before a safe point.
                flowaborts.abort_delete(flow_id)
    except Exception as e:
        instance_actions.event_finish(inst['uuid'], ctx.request_id, event,
                                      'Error', traceback=str(e))
        instance_actions.action_finish(inst['uuid'], ctx.request_id,
                                       message=str(e))
        raise
    instance_actions.event_finish(inst['uuid'], ctx.request_id, event,
                                  'Success')
    instance_actions.action_finish(inst['uuid'], ctx.request_id,
                                   message=status)
    return {'migration_uuid': mig['uuid'], 'flow_id': flow_id,
            'status': status}


def _stop(flow_id, brief):
    """Undo the flow here when nobody runs it (queued, interrupted);
    else leave it to its holder. The migration's status after."""
    if brief['status'] in (flowstatus.QUEUED, flowstatus.INTERRUPTED):
        try:
            recovery.rollback(flow_id)
        except exception.FlowBusy:
            # Taken meanwhile (a conductor started it): its holder sees
            # the request at its next safe point.
            return 'aborting'
        if brief['status'] == flowstatus.QUEUED and jobboard.enabled():
            try:
                jobboard.remove_job(brief['job_uuid'], leases.owner())
            except Exception as e:
                LOG.warning('flow %s is cancelled but its job %s is still '
                            'on the board: %s', flow_id, brief['job_uuid'],
                            e)
    return _migration_status(flow_id)


def _migration_status(flow_id):
    brief = flowstatus.flow_brief(flow_id)
    if brief is not None and brief['status'] == flowstatus.ROLLED_BACK:
        return states.MIGRATION_CANCELLED
    return 'aborting'


def _wait(migration_uuid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        mig = repository.migration_get(migration_uuid)
        if mig['status'] in states.MIGRATION_TERMINAL + (
                states.MIGRATION_FINISHED,):
            return mig['status']
        if time.monotonic() >= deadline:
            return 'aborting'
        time.sleep(0.5)
