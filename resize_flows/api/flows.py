"""Flows and the jobboard: list, show, purge, resume and roll back stored
flows; resume every interrupted one; list the conductors and their jobs.
A flow's rules are checked against the project of its server."""
import datetime
import logging

from resize_flows.api import context
from resize_flows import audit
from resize_flows.api import servers
from resize_flows import exception
from resize_flows import flows as rf_flows
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows import leases
from resize_flows.persistence import repairs
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import recovery
from resize_flows import states
from resize_flows import validation

LOG = logging.getLogger(__name__)


def _flow_server(ctx, server):
    """The instance uuid a --server filter means (a deleted server's uuid
    still filters its flows)."""
    try:
        return servers.get_server(ctx, server)['uuid']
    except exception.InstanceNotFound:
        return server


def _flow_target(flow_id):
    """What a flow's rules are checked against: the project of its server
    (stored with the flow; for a flow stored before it was, the server's
    if it still exists, else nobody's project: an admin's only). None for
    an unknown flow."""
    brief = flowstatus.flow_owner(flow_id)
    if brief is None:
        return None
    project = brief['project_id']
    if project is None and brief['instance_uuid']:
        try:
            project = repository.instance_get(
                brief['instance_uuid'])['project_id']
        except exception.InstanceNotFound:
            pass
    if project is None:
        return policy.every_project()
    return {'project_id': project, 'user_id': None}


def _authorize_flow(ctx, rule, flow_id):
    """Check ``rule`` on a flow; an unknown flow is FlowNotFound (404) to
    a caller the rule lets in on its own project, else 403."""
    target = _flow_target(flow_id)
    policy.authorize(ctx, rule, target)
    if target is None:
        raise exception.FlowNotFound(flow_id=flow_id)


@context.tenant_facing
def list_flows(ctx, state=None, server=None, operation=None, limit=None,
               marker=None):
    """Stored flows, newest first: at most ``limit``, those after the flow
    ``marker``. ``state`` is a status (queued, running, interrupted,
    finished, rolled back, stuck, abandoned) or a TaskFlow flow state. A
    caller whom the rule lets list only its own project's flows
    (``admin_or_owner``) gets only those."""
    policy.authorize(ctx, policy.FLOW_LIST)
    project = (None if policy.check(ctx, policy.FLOW_LIST,
                                    policy.every_project())
               else ctx.project_id)
    if server is not None:
        server = _flow_server(ctx, server)
    if operation is not None and operation not in rf_flows.OPERATIONS:
        raise exception.InvalidInput(
            reason='unknown operation %r (one of %s)' % (
                operation, ', '.join(rf_flows.OPERATIONS)))
    if limit is not None:
        validation.check_whole('limit', limit)
    return flowstatus.list_flows(status=state, server=server,
                                 operation=operation, limit=limit,
                                 marker=marker, project=project)


def _utc(value):
    """A naive UTC datetime from an ISO 8601 date or time (an aware one is
    converted to UTC)."""
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, datetime.date):
        parsed = datetime.datetime.combine(value, datetime.time())
    else:
        try:
            parsed = datetime.datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise exception.InvalidInput(
                reason='%r is not an ISO 8601 date or time (2026-11-01 or '
                       '2026-11-01T12:00:00)' % (value,))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(
            tzinfo=None)
    return parsed


@context.tenant_facing
def purge_flows(ctx, before, dry_run=False):
    """Delete the flows that ended before ``before`` (see
    :func:`flowstatus.purge_flows`). Returns {'before', 'purged',
    'dry_run'}."""
    policy.authorize(ctx, policy.FLOW_PURGE, policy.every_project())
    when = _utc(before)
    purged = flowstatus.purge_flows(when, dry_run=dry_run)
    return {'before': when.isoformat(), 'purged': purged,
            'dry_run': bool(dry_run)}


@context.tenant_facing
def show_flow(ctx, flow_id):
    _authorize_flow(ctx, policy.FLOW_SHOW, flow_id)
    return flowstatus.show_flow(flow_id)


@context.tenant_facing
def resume_flow(ctx, flow_id, listeners=()):
    """Run an interrupted flow on (see :func:`recovery.resume`); admin."""
    _authorize_flow(ctx, policy.FLOW_RESUME, flow_id)
    handle_state = recovery.resume(flow_id, listeners)
    return {'flow_id': flow_id, 'flow_state': handle_state}


@context.tenant_facing
def rollback_flow(ctx, flow_id, listeners=()):
    """Undo a flow (see :func:`recovery.rollback`); admin. A flow queued on
    the jobboard is cancelled: undone, then its job taken off the board
    (left there, e.g. the board unreachable, a conductor only consumes
    it, since its flow has ended)."""
    _authorize_flow(ctx, policy.FLOW_ROLLBACK, flow_id)
    brief = flowstatus.flow_brief(flow_id)
    handle_state = recovery.rollback(flow_id, listeners)
    if brief is not None and brief['status'] == flowstatus.QUEUED and \
            jobboard.enabled():
        try:
            jobboard.remove_job(brief['job_uuid'], leases.owner())
        except Exception as e:
            LOG.warning('flow %s is rolled back but its job %s is still on '
                        'the board: %s', flow_id, brief['job_uuid'], e)
    return {'flow_id': flow_id, 'flow_state': handle_state}


def _check_reason(reason):
    """Why a flow is abandoned: 1 to 255 characters, no control ones."""
    if not isinstance(reason, str) or not reason.strip() or \
            len(reason) > 255 or any(ord(c) < 32 or ord(c) == 127
                                     for c in reason):
        raise exception.InvalidInput(
            reason='--reason must be 1 to 255 characters with no control '
                   'characters, not %r' % (reason if not isinstance(
                       reason, str) else reason[:60],))


@context.tenant_facing
def abandon_flow(ctx, flow_id, reason):
    """Give up on a flow that neither resume nor rollback can finish (its
    source host is gone for good); admin. Only an interrupted or stuck
    flow (nobody holds it, not ended, not queued) is abandonable, else
    FlowStateConflict and nothing changed. Under the flow's lease, in one
    transaction (:func:`repairs.abandon`): the flow ends ``abandoned``
    (with the reason, who and when; its stored atoms are kept, and resume
    and rollback refuse it from then on), its server goes to vm_state
    ``error`` with no task_state (Nova's reset-state), its migration to
    ``error``, the allocations of both on the hosts that do not answer
    now are released (those that answer keep theirs: ``audit`` lists
    what is left there), and the server gets an instance action
    ``abandon`` with the reason. The job it was posted as, if any, is
    taken off the jobboard. Returns {'flow_id', 'status', 'reason',
    'released_on'}."""
    _authorize_flow(ctx, policy.FLOW_ABANDON, flow_id)
    _check_reason(reason)
    _abandonable(flow_id)
    lease = leases.Lease(flow_id).acquire()
    try:
        # Again under the lease: another process may have taken the flow
        # on (and finished it) or abandoned it between the check and here.
        if repairs.abandon_get(flow_id) is not None:
            raise exception.FlowStateConflict(
                verb='abandon', flow_id=flow_id,
                reason='it is abandoned already')
        brief = flowstatus.flow_brief(flow_id)
        if brief['state'] in states.FLOW_ENDED:
            raise exception.FlowStateConflict(
                verb='abandon', flow_id=flow_id,
                reason='it has ended (%s) meanwhile' % brief['state'])
        owner = flowstatus.flow_owner(flow_id)
        instance_uuid = owner['instance_uuid']
        migration_uuid = _migration_of(flow_id)
        hosts = _hosts_of(instance_uuid, migration_uuid)
        cache = {}
        released = sorted(h for h in hosts if not audit.answers(h, cache))
        repairs.abandon(flow_id, reason, instance_uuid, migration_uuid,
                        released, ctx.request_id, ctx.user_id,
                        ctx.project_id)
    finally:
        lease.release()
    LOG.warning('flow %s abandoned by %s: %s (allocations released on %s)',
                flow_id, ctx.user_id, reason, released or 'no host')
    if brief['job_uuid'] and jobboard.enabled():
        # Left there (the board unreachable), a conductor only consumes
        # it: an abandoned flow is never run again.
        try:
            jobboard.remove_job(brief['job_uuid'], leases.owner())
        except Exception as e:
            LOG.warning('flow %s is abandoned but its job %s is still on '
                        'the board: %s', flow_id, brief['job_uuid'], e)
    return {'flow_id': flow_id, 'status': flowstatus.ABANDONED,
            'reason': reason, 'released_on': released}


def _abandonable(flow_id):
    brief = flowstatus.flow_brief(flow_id)
    if brief['status'] in (flowstatus.INTERRUPTED, flowstatus.STUCK):
        return
    why = {
        flowstatus.RUNNING: 'it is running (a live process holds it); '
                            'wait for it, or for its lease to expire',
        flowstatus.QUEUED: 'it is queued on the jobboard; roll it back to '
                           'cancel it',
        flowstatus.FINISHED: 'it has finished',
        flowstatus.ROLLED_BACK: 'it was rolled back',
        flowstatus.ABANDONED: 'it is abandoned already',
    }.get(brief['status'], 'it is %s' % brief['status'])
    raise exception.FlowStateConflict(verb='abandon', flow_id=flow_id,
                                      reason=why)


def _migration_of(flow_id):
    row = flowstatus.flow_row(flow_id)
    return row['migration_uuid'] if row else None


def _hosts_of(instance_uuid, migration_uuid):
    """The hosts a flow's server and migration are on."""
    hosts = set()
    if instance_uuid:
        try:
            hosts.add(repository.instance_get(instance_uuid)['host'])
        except exception.InstanceNotFound:
            pass
    if migration_uuid:
        try:
            mig = repository.migration_get(migration_uuid)
            hosts |= {mig['source_compute'], mig['dest_compute']}
        except exception.MigrationNotFound:
            pass
    return hosts - {None}


@context.tenant_facing
def list_conductors(ctx):
    """The live conductors of the jobboard (see
    :func:`jobboard.list_conductors`); admin."""
    policy.authorize(ctx, policy.CONDUCTOR_LIST, policy.every_project())
    return jobboard.list_conductors()


@context.tenant_facing
def list_jobs(ctx):
    """The jobs on the jobboard (see :func:`jobboard.list_jobs`); admin."""
    policy.authorize(ctx, policy.JOB_LIST, policy.every_project())
    return jobboard.list_jobs()


@context.tenant_facing
def resume_interrupted(ctx, listeners=()):
    """Resume every interrupted flow (process dead, lease expired), oldest
    first; for a process that starts up with ``[flows]/resume_interrupted``.
    Returns {flow_id: final state, or the error that stopped it}. A flow
    stuck on a failed undo step is left to an operator."""
    policy.authorize(ctx, policy.FLOW_RESUME)
    outcome = {}
    flows = flowstatus.list_flows(status=flowstatus.INTERRUPTED)
    for flow in reversed(flows):
        target = _flow_target(flow['flow_id'])
        if target is None or not policy.check(ctx, policy.FLOW_RESUME,
                                              target):
            continue        # gone, or another project's for this caller
        try:
            outcome[flow['flow_id']] = recovery.resume(flow['flow_id'],
                                                       listeners)
        except Exception as e:
            LOG.warning('could not resume interrupted flow %s: %s',
                        flow['flow_id'], e)
            outcome[flow['flow_id']] = e
    return outcome
