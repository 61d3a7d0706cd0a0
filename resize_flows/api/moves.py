"""Moves: resize, migrate, confirm and revert a server; confirm the moves
that waited too long; delete a server; list migrations and actions.

Every move finds the server in the caller's view (another project's
server is unknown to a non-admin: 404), checks the access rule
(:mod:`resize_flows.policy`: 403), then Nova's checks (lock, state,
flavor, scheduler: 409 or 400), before it changes anything; so a refused
request leaves the database, the hypervisors and the disks as they were,
and raises at once. It then stores its flow, starts in the records with
one compare-and-swap transaction (which is what stops two operations on
one instance: 409 for the loser), and runs the flow
(:func:`resize_flows.operations.start`).
"""
import datetime
import logging
import uuid as uuidlib

from resize_flows.api import context
from resize_flows.api import hosts
from resize_flows.api import servers
from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import flows as rf_flows
from resize_flows import flowstatus
from resize_flows import operations
from resize_flows import periodic
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import plugins as rf_plugins
from resize_flows import policy
from resize_flows import scheduler
from resize_flows import states
from resize_flows.testing import faults
from resize_flows import validation
from resize_flows import virt

LOG = logging.getLogger(__name__)


# -- the checks before a change ----------------------------------------------

def _check_state(inst, method, ctx):
    if inst['locked'] and not ctx.is_admin:
        raise exception.InstanceIsLocked(instance_uuid=inst['uuid'])
    _refuse_if_unfinished_flow(inst, method)
    if inst['vm_state'] not in states.ALLOWED_VM_STATES[method]:
        raise exception.InstanceInvalidState(
            method=method, instance_uuid=inst['uuid'], attr='vm_state',
            state=inst['vm_state'])
    if inst['task_state'] is not None:
        raise exception.InstanceInvalidState(
            method=method, instance_uuid=inst['uuid'], attr='task_state',
            state=inst['task_state'])


def _refuse_if_unfinished_flow(inst, method):
    """Refuse while a flow of this instance is queued, running or
    unfinished, and name it: a queued one waits for a conductor, an
    unfinished one must be resumed or rolled back first."""
    for mig in repository.migration_list(inst['uuid']):
        if not mig['flow_id']:
            continue
        flow = flowstatus.flow_brief(mig['flow_id'])
        if flow is not None and flow['status'] == flowstatus.QUEUED:
            raise exception.InstanceHasQueuedFlow(
                method=method, instance_uuid=inst['uuid'],
                operation=flow['operation'], flow_id=mig['flow_id'],
                job_uuid=flow['job_uuid'])
        if flow is not None and flow['status'] not in (
                flowstatus.FINISHED, flowstatus.ROLLED_BACK):
            raise exception.InstanceHasUnfinishedFlow(
                method=method, instance_uuid=inst['uuid'],
                operation=flow['operation'], flow_id=mig['flow_id'],
                status=flow['status'], job_uuid=flow.get('job_uuid'))


# -- delete ------------------------------------------------------------------

@context.tenant_facing
def delete_server(ctx, server):
    """Delete a server: its guest, disk, allocations, migrations and
    actions; each enabled plugin is told (``instance_deleted``: ports are
    unbound, volumes detached), after the guest is gone and before the
    records go.

    The server is taken the way a move takes it: task_state ``deleting``
    by compare-and-swap from the state read, with no task under way, so a
    move or a confirm/revert that starts first wins and the delete is
    refused (409), as it is while a flow of the server is unfinished. A
    RESIZED server is confirmed first, as Nova does, then deleted. A
    delete killed midway (task_state ``deleting``) is finished by running
    it again.
    """
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, policy.DELETE, servers.rule_target(inst))
    if inst['locked'] and not ctx.is_admin:
        raise exception.InstanceIsLocked(instance_uuid=inst['uuid'])
    if inst['task_state'] != states.DELETING:
        _refuse_if_unfinished_flow(inst, 'delete')
        if inst['vm_state'] == states.RESIZED and inst['task_state'] is None:
            confirm_resize(ctx, inst['uuid'], wait=True)
            inst = repository.instance_get(inst['uuid'])
        _take_for_delete(inst)
        faults.window('delete-claimed')
    virt.get_driver(repository.host_get(inst['host'])).destroy(
        inst['uuid'], destroy_disks=True)
    faults.window('delete-destroyed')
    for plugin in rf_plugins.load(rf_plugins.enabled()):
        plugin.instance_deleted(inst['uuid'], inst['host'])
    repository.instance_destroy(inst['uuid'])


def _take_for_delete(inst):
    """task_state ``deleting``, only from the state read with no task
    under way; else the conflict, naming an unfinished flow if any."""
    try:
        if inst['task_state'] is not None:
            raise exception.UnexpectedTaskStateError(
                instance_uuid=inst['uuid'], expected=(None,),
                actual=inst['task_state'])
        repository.instance_update(
            inst['uuid'], {'task_state': states.DELETING},
            expected_vm_state=inst['vm_state'], expected_task_state=None)
    except (exception.InstanceInvalidState,
            exception.UnexpectedTaskStateError):
        current = repository.instance_get(inst['uuid'])
        _refuse_if_unfinished_flow(current, 'delete')
        busy = current['task_state'] is not None
        raise exception.InstanceInvalidState(
            method='delete', instance_uuid=inst['uuid'],
            attr='task_state' if busy else 'vm_state',
            state=current['task_state'] if busy else current['vm_state'])


# -- moves -------------------------------------------------------------------

def _run_operation(ctx, operation, inst, migration_uuid, start, listeners,
                   wait):
    """Run ``operation`` for ``ctx`` (see :func:`operations.start`)."""
    store = {'migration_uuid': migration_uuid,
             'instance_uuid': inst['uuid'],
             'request_id': ctx.request_id}
    return operations.start(operation, store, inst, migration_uuid, start,
                            listeners, wait, caller=ctx,
                            shown=context.shown_to(ctx))


def _start_move(ctx, inst, operation, old, new, requested_host, listeners,
                wait=True):
    migration_uuid = str(uuidlib.uuid4())

    def start(flow_id):
        repository.start_move(
            inst['uuid'],
            {'task_state': states.RESIZE_PREP,
             'old_flavor_id': old['id'], 'new_flavor_id': new['id']},
            expected_vm_state=inst['vm_state'],
            migration_values={
                'uuid': migration_uuid,
                'migration_type': (states.MIGRATION_TYPE_RESIZE
                                   if operation == 'resize'
                                   else states.MIGRATION_TYPE_MIGRATION),
                'source_compute': inst['host'],
                'dest_compute': requested_host,
                'old_flavor_id': old['id'], 'new_flavor_id': new['id'],
                'old_vm_state': inst['vm_state'],
                'status': states.MIGRATION_PRE_MIGRATING,
                'flow_id': flow_id},
            action=rf_flows.OPERATIONS[operation].action,
            request_id=ctx.request_id, user_id=ctx.user_id,
            project_id=ctx.project_id)

    return _run_operation(ctx, operation, inst, migration_uuid, start,
                          listeners, wait)


@context.tenant_facing
def resize(ctx, server, flavor, wait=False, listeners=()):
    """Resize a server to another flavor (Nova's resize).

    Raises at once, changing nothing: InstanceNotFound (404, also for
    another project's server), PolicyNotAuthorized (403), FlavorNotFound
    (404, also for another project's private flavor), InstanceIsLocked,
    InstanceInvalidState (not ACTIVE/SHUTOFF, busy, or another request
    started first), InstanceHasUnfinishedFlow (409),
    CannotResizeToSameFlavor, CannotResizeDisk (smaller root or
    ephemeral disk),
    NoValidHost (400).

    Returns the started :class:`Operation`; with ``wait`` once its flow
    has ended, raising the error of a flow that failed and was undone.
    ``listeners`` are TaskFlow listener factories, called with the engine.
    """
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, policy.RESIZE, servers.rule_target(inst))
    new = hosts.get_flavor(ctx, flavor)
    _check_state(inst, 'resize', ctx)
    old = repository.flavor_get(inst['flavor_id'])
    if new['id'] == old['id']:
        raise exception.CannotResizeToSameFlavor()
    for key, disk in (('root_gb', 'root'), ('ephemeral_gb', 'ephemeral')):
        if new[key] < old[key]:
            raise exception.CannotResizeDisk(
                reason='flavor %s has a smaller %s disk (%d GB) than the '
                       'server\'s (%d GB)' % (new['name'], disk, new[key],
                                              old[key]))
    scheduler.select_destinations(
        repository.flavor_resources(new), inst['host'],
        allow_same_host=CONF.compute.allow_resize_to_same_host)
    return _start_move(ctx, inst, 'resize', old, new, None, listeners, wait)


@context.tenant_facing
def migrate(ctx, server, host=None, wait=False, listeners=()):
    """Cold-migrate a server, keeping its flavor, to ``host`` or to the
    scheduler's choice (never its own host). A named host is tried alone;
    otherwise alternates are tried when the first destination fails.

    Raises at once, changing nothing: InstanceNotFound,
    PolicyNotAuthorized (403: admin only by default), HostNotFound,
    InstanceIsLocked, InstanceInvalidState, InvalidInput (same host),
    NoValidHost. Returns as :func:`resize`.
    """
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, policy.MIGRATE, servers.rule_target(inst))
    if host is not None:
        policy.authorize(ctx, policy.MIGRATE_HOST, servers.rule_target(inst))
        repository.host_get(host)
    _check_state(inst, 'migrate', ctx)
    if host is not None and host == inst['host']:
        raise exception.InvalidInput(
            reason='cannot migrate server %s to the host it is on (%s)' % (
                inst['uuid'], host))
    flavor = repository.flavor_get(inst['flavor_id'])
    scheduler.select_destinations(
        repository.flavor_resources(flavor), inst['host'],
        requested_host=host)
    return _start_move(ctx, inst, 'migrate', flavor, flavor, host, listeners,
                       wait)


# -- confirm and revert ------------------------------------------------------

def _resolve(ctx, server, method, task_state, status, operation, rule,
             listeners, wait):
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, rule, servers.rule_target(inst))
    _check_state(inst, method, ctx)
    try:
        mig = repository.migration_get_by_instance_and_status(
            inst['uuid'], states.MIGRATION_FINISHED)
    except exception.MigrationNotFoundByStatus:
        # Another confirm or revert started since the checks above.
        migs = repository.migration_list(inst['uuid'])
        if not migs:
            raise
        raise _lost_resolution(inst, method, migs[-1]['uuid'])

    def start(flow_id):
        try:
            repository.start_resolution(
                inst['uuid'], task_state, mig['uuid'], status, flow_id,
                action=rf_flows.OPERATIONS[operation].action,
                request_id=ctx.request_id, user_id=ctx.user_id,
                project_id=ctx.project_id)
        except (exception.InstanceInvalidState,
                exception.UnexpectedTaskStateError,
                exception.UnexpectedMigrationStatus) as e:
            raise _lost_resolution(inst, method, mig['uuid']) from e

    return _run_operation(ctx, operation, inst, mig['uuid'], start,
                          listeners, wait)


def _lost_resolution(inst, method, migration_uuid):
    """The 409 of a confirm or revert that another request beat to the
    server: the migration as it is now, or the server's state when that
    migration still waits."""
    mig = repository.migration_get(migration_uuid)
    if mig['status'] != states.MIGRATION_FINISHED:
        return exception.MigrationResolvedMeanwhile(
            method=method, instance_uuid=inst['uuid'],
            migration_uuid=mig['uuid'], status=mig['status'])
    current = repository.instance_get(inst['uuid'])
    busy = current['task_state'] is not None
    return exception.InstanceInvalidState(
        method=method, instance_uuid=inst['uuid'],
        attr='task_state' if busy else 'vm_state',
        state=current['task_state'] if busy else current['vm_state'])


@context.tenant_facing
def confirm_resize(ctx, server, wait=False, listeners=()):
    """Confirm a finished resize or migration: the source host's copy and
    usage go. Raises at once, changing nothing, unless the server is
    RESIZED, visible and the caller allowed. Returns as :func:`resize`."""
    return _resolve(ctx, server, 'confirm_resize', states.RESIZE_CONFIRMING,
                    states.MIGRATION_CONFIRMING, 'confirm_resize',
                    policy.CONFIRM_RESIZE, listeners, wait)


@context.tenant_facing
def revert_resize(ctx, server, wait=False, listeners=()):
    """Revert a finished resize or migration: the server runs again on its
    source host with its old flavor, powered on only if it was ACTIVE.
    Raises at once, changing nothing, unless the server is RESIZED,
    visible and the caller allowed. Returns as :func:`resize`."""
    return _resolve(ctx, server, 'revert_resize', states.RESIZE_REVERTING,
                    states.MIGRATION_REVERTING, 'revert_resize',
                    policy.REVERT_RESIZE, listeners, wait)


# -- resize_confirm_window ---------------------------------------------------

@context.tenant_facing
def confirm_expired(ctx, window=None):
    """Confirm every resize or migration that has waited, finished, longer
    than ``window`` seconds (default ``[compute]/resize_confirm_window``;
    0 does nothing), as Nova's periodic _poll_unconfirmed_resizes does.

    Each is confirmed to its end, one after another; a server that is
    busy, locked or fails is skipped and reported, and the rest go on.
    Returns {instance uuid: 'confirmed' or the error, as text}.
    """
    policy.authorize(ctx, policy.CONFIRM_EXPIRED, policy.every_project())
    window = CONF.compute.resize_confirm_window if window is None else window
    validation.check_seconds('window', window, maximum=int(
        datetime.timedelta.max.total_seconds()))
    if not window:
        return {}
    cutoff = datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None) - datetime.timedelta(seconds=window)
    outcome = {}
    for mig in repository.migration_list(status=states.MIGRATION_FINISHED):
        finished = datetime.datetime.fromisoformat(
            mig['updated_at'] or mig['created_at'])
        if finished.tzinfo is not None:
            finished = finished.astimezone(
                datetime.timezone.utc).replace(tzinfo=None)
        if finished > cutoff:
            continue
        try:
            confirm_resize(ctx, mig['instance_uuid'], wait=True)
            outcome[mig['instance_uuid']] = 'confirmed'
        except Exception as e:
            LOG.warning('could not auto-confirm the move of %s: %s',
                        mig['instance_uuid'], e)
            outcome[mig['instance_uuid']] = '%s: %s' % (type(e).__name__, e)
    return outcome


class PeriodicConfirmer(periodic.Periodic):
    """Runs :func:`confirm_expired` every ``interval`` seconds in a thread,
    for a long-running process (cron runs ``resize-flows confirm-expired``
    instead). ``start()``, ``stop()``."""

    thread_name = 'confirm-expired'

    def __init__(self, ctx=None, interval=60.0):
        super().__init__(interval)
        self.ctx = ctx or context.get_admin_context()

    def run_once(self):
        try:
            return confirm_expired(self.ctx)
        except Exception:
            LOG.exception('periodic confirm of expired resizes failed')
            return {}


# -- reads -------------------------------------------------------------------

@context.tenant_facing
def list_migrations(ctx, server=None):
    if server is None:
        if not ctx.is_admin:
            return [m for s in servers.list_servers(ctx)
                    for m in repository.migration_list(s['uuid'])]
        return repository.migration_list()
    return repository.migration_list(servers.get_server(ctx, server)['uuid'])


@context.tenant_facing
def list_actions(ctx, server):
    """Actions of a server, newest first, each with its events. For a
    caller who is not an admin the events have no traceback and no host
    (``None``), as Nova's."""
    actions = instance_actions.action_list(
        servers.get_server(ctx, server)['uuid'])
    if not ctx.is_admin:
        for act in actions:
            for event in act['events']:
                event['traceback'] = event['host'] = None
    return actions
