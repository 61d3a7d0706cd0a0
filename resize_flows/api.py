"""The embedding API: one function per operation, Nova's checks first.

Every operation finds the server in the caller's view (another project's
server is unknown to a non-admin: 404), checks the access rule
(:mod:`resize_flows.policy`: 403), then Nova's checks (lock, state,
flavor, scheduler: 409 or 400), before it changes anything; so a refused
request leaves the database, the hypervisors and the disks as they were,
and raises at once. A move then stores its flow, starts in the records
with one compare-and-swap transaction (which is what stops two operations
on one instance: 409 for the loser), and runs the flow: in a thread of
this process, returning at once an :class:`Operation` with the migration,
flow and request ids, or to its end with ``wait=True``. The CLI is a thin
user of these functions.
"""
import dataclasses
import datetime
import logging
import os
import threading
import time
import uuid as uuidlib

from resize_flows.conf import CONF
from resize_flows import engine
from resize_flows import exception
from resize_flows import jobboard
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import scheduler
from resize_flows import states
from resize_flows import validation
from resize_flows import virt
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import local

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class RequestContext:
    """Who asks: user, project, roles; one request id per request."""
    user_id: str = 'admin'
    project_id: str = 'admin'
    roles: tuple = ('admin',)
    request_id: str = dataclasses.field(
        default_factory=lambda: 'req-' + str(uuidlib.uuid4()))

    @property
    def is_admin(self):
        return 'admin' in self.roles


# Instance action names, as Nova records them.
ACTIONS = {'resize': 'resize', 'migrate': 'migrate',
           'confirm_resize': 'confirmResize',
           'revert_resize': 'revertResize'}


def get_admin_context():
    return RequestContext()


# -- hosts and flavors -------------------------------------------------------

def _positive(**values):
    for name, value in values.items():
        validation.check_whole(name, value)


def create_host(ctx, name, vcpus, memory_mb, disk_gb, uri=None,
                instances_path=None, ssh=None):
    """Register a compute host.

    Without ``uri`` the host is a local simulated one under
    ``$state_dir/hosts/<name>`` (``[libvirt]/local_hypervisor`` says which
    kind), set up here. With ``uri``, ``instances_path`` is required; with
    ``ssh`` too (``[user@]host[:port]``), that path is on the machine at
    that ssh address, which must answer and have it.
    """
    policy.authorize(ctx, policy.HOST_MANAGE)
    _positive(vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb)
    validation.check_host_name(name)
    try:
        repository.host_get(name)
    except exception.HostNotFound:
        pass
    else:
        raise exception.Duplicate(kind='Host', name=name)
    if ssh is not None:
        if uri is None:
            raise exception.InvalidInput(
                reason='--ssh needs --uri and --instances-path (a local '
                       'host is on this machine)')
        host_files.parse_address(ssh)
        if instances_path and not os.path.isabs(instances_path):
            raise exception.InvalidInput(
                reason='the instances path of a host reached by ssh must '
                       'be absolute, not %r' % instances_path)
    if uri is None:
        if instances_path is not None:
            raise exception.InvalidInput(
                reason='--instances-path needs --uri (a local host keeps '
                       'its instances under its own directory)')
    elif not instances_path:
        raise exception.InvalidInput(
            reason='a host given by URI needs its instances path')
    made = uri is None and not os.path.exists(local.host_dir(name))
    try:
        if uri is None:
            spec = local.create_local_host(name)
            uri, instances_path = spec['uri'], spec['instances_path']
        # The hypervisor must answer, and the instances path exist, before
        # the host is recorded.
        drv = virt.get_driver({'name': name, 'uri': uri, 'ssh': ssh,
                               'instances_path': instances_path})
        drv.list_instance_uuids()
        if not drv.files.has_root():
            raise exception.InvalidInput(
                reason='no directory %s on %s' % (
                    instances_path, ssh or 'this machine'))
        return repository.host_create(name, uri, instances_path, vcpus,
                                      memory_mb, disk_gb, ssh=ssh)
    except BaseException:
        if made:        # refused: leave no local host directory behind
            try:
                local.remove_local_host(name)
            except Exception:
                LOG.exception('could not remove the local host %s that '
                              'was refused', name)
        raise


def delete_host(ctx, name):
    """Remove a host that holds nothing. A local host's daemon is stopped
    and its directory removed."""
    policy.authorize(ctx, policy.HOST_MANAGE)
    # Not the host name pattern: a host recorded before it was checked
    # (say "cn 3", by URI) can still be deleted.
    validation.check_name('host', name)
    host = repository.host_get(name)
    if repository.instance_list(host=name) or \
            repository.allocation_list(host=name) or \
            repository.migration_list(host=name, open_only=True):
        raise exception.Conflict(
            reason='host %s still has servers, allocations or moves' % name)
    drv = virt.get_driver(host)
    if drv.list_instance_uuids():
        raise exception.Conflict(
            reason='host %s still has guests: %s' % (
                name, ', '.join(drv.list_instance_uuids())))
    hdir = os.path.join(local.hosts_dir(), name)
    if os.path.dirname(os.path.abspath(host['instances_path'])) == hdir:
        local.remove_local_host(name)
    repository.host_destroy(name)


def list_hosts(ctx):
    policy.authorize(ctx, policy.HOST_MANAGE)
    return repository.host_list_with_usage()


def create_flavor(ctx, name, vcpus, memory_mb, root_gb, is_public=True,
                  projects=()):
    policy.authorize(ctx, policy.FLAVOR_MANAGE)
    validation.check_name('flavor', name)
    _positive(vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb)
    if vcpus < 1 or memory_mb < 1:
        raise exception.InvalidInput(
            reason='a flavor needs at least 1 vCPU and 1 MB of RAM')
    if not name or name.isdigit():
        raise exception.InvalidInput(
            reason='a flavor name must be non-empty and not all digits')
    return repository.flavor_create(name, vcpus, memory_mb, root_gb,
                                    is_public=is_public, projects=projects)


def list_flavors(ctx):
    return [f for f in repository.flavor_list()
            if f['is_public'] or ctx.is_admin
            or ctx.project_id in f['projects']]


def _get_flavor(ctx, ident):
    """A flavor the caller may use. Another project's private flavor is
    unknown to a non-admin: FlavorNotFound (404), as for a flavor that
    does not exist, so its existence is not revealed. (Nova's REST API
    answers 400 "flavor not found" for a resize; a front that wants that
    maps FlavorNotFound from resize() to 400.)"""
    flavor = repository.flavor_get(ident)
    if (not flavor['is_public'] and not ctx.is_admin
            and ctx.project_id not in flavor['projects']):
        raise exception.FlavorNotFound(flavor_id=ident)
    return flavor


# -- servers -----------------------------------------------------------------

def get_server(ctx, ident):
    project = None if ctx.is_admin else ctx.project_id
    return repository.instance_find(ident, project_id=project)


def list_servers(ctx, host=None):
    project = None if ctx.is_admin else ctx.project_id
    return repository.instance_list(project_id=project, host=host)


def create_server(ctx, name, flavor, host, power_on=True):
    """Boot a server on a named host: a blank qcow2 root disk of the
    flavor's size and a guest, running unless ``power_on`` is False."""
    validation.check_name('server', name)
    flavor = _get_flavor(ctx, flavor)
    host = repository.host_get(host)
    if not host['enabled']:
        raise exception.NoValidHost(reason='host %s is disabled.' %
                                    host['name'])
    try:
        inst = repository.instance_create(
            name, ctx.project_id, ctx.user_id, host['name'], flavor,
            vm_state=states.BUILDING, task_state=states.SPAWNING)
    except exception.InsufficientResources as e:
        raise exception.NoValidHost(reason=e.message)
    drv = virt.get_driver(host)
    try:
        drv.spawn({'uuid': inst['uuid'], 'name': name},
                  {k: flavor[k] for k in
                   ('name', 'vcpus', 'memory_mb', 'root_gb')},
                  power_on=power_on)
        power = drv.get_info(inst['uuid']).power_state
    except Exception:
        drv.destroy(inst['uuid'], destroy_disks=True)
        repository.instance_destroy(inst['uuid'])
        raise
    return repository.instance_update(inst['uuid'], {
        'vm_state': states.vm_state_for_power(power), 'task_state': None,
        'power_state': power})


def delete_server(ctx, server):
    """Delete a server that no operation is acting on: its guest, disk,
    allocations, finished migrations and actions. A RESIZED server must
    be confirmed or reverted first."""
    inst = get_server(ctx, server)
    if inst['locked'] and not ctx.is_admin:
        raise exception.InstanceIsLocked(instance_uuid=inst['uuid'])
    if inst['task_state'] is not None or inst['vm_state'] == states.RESIZED:
        raise exception.InstanceInvalidState(
            method='delete', instance_uuid=inst['uuid'],
            attr='task_state' if inst['task_state'] else 'vm_state',
            state=inst['task_state'] or inst['vm_state'])
    virt.get_driver(repository.host_get(inst['host'])).destroy(
        inst['uuid'], destroy_disks=True)
    repository.instance_destroy(inst['uuid'])


# -- moves -------------------------------------------------------------------

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


def _target(inst):
    """What a server's access rules are checked against."""
    return {'project_id': inst['project_id'], 'user_id': inst['user_id']}


def _refuse_if_unfinished_flow(inst, method):
    """Refuse while a flow of this instance is queued, running or
    unfinished, and name it: a queued one waits for a conductor, an
    unfinished one must be resumed or rolled back first."""
    for mig in repository.migration_list(inst['uuid']):
        if not mig['flow_id']:
            continue
        flow = engine.flow_brief(mig['flow_id'])
        if flow is not None and flow['status'] == engine.QUEUED:
            raise exception.InstanceHasQueuedFlow(
                method=method, instance_uuid=inst['uuid'],
                operation=flow['operation'], flow_id=mig['flow_id'],
                job_uuid=flow['job_uuid'])
        if flow is not None and flow['status'] not in (
                engine.FINISHED, engine.ROLLED_BACK):
            raise exception.InstanceHasUnfinishedFlow(
                method=method, instance_uuid=inst['uuid'],
                operation=flow['operation'], flow_id=mig['flow_id'],
                status=flow['status'], job_uuid=flow.get('job_uuid'))


# -- operations under way ----------------------------------------------------

_RUNNING_LOCK = threading.Lock()
_RUNNING = set()


class Operation:
    """A started resize, migration, confirm or revert.

    Its ids are known at once: ``operation``, ``instance_uuid``,
    ``migration_uuid``, ``flow_id``, ``request_id``. Its flow runs in a
    thread of this process (which holds the flow's lease while it runs);
    :meth:`wait` blocks until it has ended and raises the error that
    undid it. ``migration`` reads the migration's current record, so
    polling it shows the progress (``pre-migrating`` ... ``finished``).

    ``op['migration']``, ``op['flow_id']``, ``op['flow_state']`` read as
    the dict that operations returned before they could run in the
    background.
    """

    def __init__(self, operation, instance_uuid, migration_uuid, flow_id,
                 request_id):
        self.operation = operation
        self.instance_uuid = instance_uuid
        self.migration_uuid = migration_uuid
        self.flow_id = flow_id
        self.request_id = request_id
        self.flow_state = None
        self.error = None
        #: The migration record when the flow was started in a thread.
        self.started_migration = None
        self._done = threading.Event()
        self._thread = None

    def __repr__(self):
        return '<Operation %s of %s: migration %s, flow %s, %s>' % (
            self.operation, self.instance_uuid, self.migration_uuid,
            self.flow_id, self.flow_state or 'running')

    def _run(self, handle, listeners):
        try:
            self.flow_state = engine.run(handle, listeners)
        except BaseException as e:      # SimulatedCrash too: give it back
            self.error = e
            try:
                self.flow_state = handle.engine.storage.get_flow_state()
            except Exception:
                pass
            if self._thread is not None and isinstance(e, Exception):
                LOG.warning('%s of %s failed: %s', self.operation,
                            self.instance_uuid, e)
        finally:
            self._done.set()
            with _RUNNING_LOCK:
                _RUNNING.discard(self)

    def _start_thread(self, handle, listeners):
        self._thread = threading.Thread(
            target=self._run, args=(handle, listeners),
            name='%s-%s' % (self.operation, self.flow_id))
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self._thread.start()

    def done(self):
        """Whether the flow has ended (finished or undone)."""
        return self._done.is_set()

    def wait(self, timeout=None):
        """Block until the flow has ended; return this operation. Raises
        the error of a flow that failed and was undone, and TimeoutError
        when ``timeout`` seconds pass first (the flow goes on)."""
        if not self._done.wait(timeout):
            raise TimeoutError('%r still running after %ss' % (self,
                                                              timeout))
        if self.error is not None:
            raise self.error
        return self

    @property
    def migration(self):
        return repository.migration_get(self.migration_uuid)

    def as_dict(self):
        return {'operation': self.operation,
                'instance_uuid': self.instance_uuid,
                'migration_uuid': self.migration_uuid,
                'flow_id': self.flow_id, 'request_id': self.request_id,
                'flow_state': self.flow_state, 'migration': self.migration}

    def __getitem__(self, key):
        if key == 'migration':
            return self.migration
        return self.as_dict()[key]


class PostedOperation(Operation):
    """An operation posted as a job on the jobboard (``[jobboard]/
    enabled``): a conductor runs its flow. :meth:`wait` and :meth:`done`
    follow the flow in the flow log; a flow that failed and was undone
    raises :class:`~resize_flows.exception.OperationFailed` with the
    failed task's error as text."""

    def __init__(self, *args, job_uuid=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.job_uuid = job_uuid

    def _poll(self):
        if self._done.is_set():
            return True
        brief = engine.flow_brief(self.flow_id)
        if brief is None:
            return False
        self.flow_state = brief['state']
        if brief['status'] in (engine.FINISHED, engine.ROLLED_BACK,
                               engine.STUCK):
            if brief['status'] != engine.FINISHED:
                self.error = exception.OperationFailed(
                    operation=self.operation, flow_id=self.flow_id,
                    state=brief['status'],
                    reason=engine.flow_failure(self.flow_id))
            self._done.set()
            return True
        return False

    def done(self):
        return self._poll()

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._poll():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError('%r still running after %ss' % (
                    self, timeout))
            time.sleep(CONF.jobboard.wait_poll_interval)
        if self.error is not None:
            raise self.error
        return self


def running_operations():
    """Operations of this process whose flows are still running."""
    with _RUNNING_LOCK:
        return list(_RUNNING)


def wait_all(timeout=None):
    """Wait for every operation this process started in the background
    (e.g. before it exits, or a test ends). Their errors are not raised:
    each is on its :class:`Operation`."""
    for op in running_operations():
        op._done.wait(timeout)


def _run_operation(ctx, operation, inst, migration_uuid, start, listeners,
                   wait):
    """Store the operation's flow, start it in the records with
    ``start(flow_id)`` (a compare-and-swap that may refuse, and then the
    stored flow is discarded and the refusal raised), and run the flow: in
    a thread of this process, or here to its end when ``wait``."""
    store = {'migration_uuid': migration_uuid,
             'instance_uuid': inst['uuid'],
             'request_id': ctx.request_id}
    posting = jobboard.enabled()
    if posting:
        jobboard.check()        # unreachable: refused, nothing changed
    handle = engine.create(operation, store, inst['uuid'], migration_uuid)
    try:
        start(handle.flow_id)
    except Exception:
        engine.discard(handle)
        raise
    if posting:
        op = _post(ctx, operation, inst, migration_uuid, handle)
        if op is not None:
            return op.wait() if wait else op
    op = Operation(operation, inst['uuid'], migration_uuid, handle.flow_id,
                   ctx.request_id)
    if wait:
        op._run(handle, listeners)
        return op.wait()
    # What the caller is told the operation started as, before the flow
    # moves it on.
    op.started_migration = repository.migration_get(migration_uuid)
    op._start_thread(handle, listeners)
    return op


def _post(ctx, operation, inst, migration_uuid, handle):
    """Hand a started operation's flow to the conductors: give up its
    lease and post its job. None when the post failed (the flow then runs
    here, as without a jobboard, so the started operation still ends)."""
    meta = dict(handle.meta)
    handle.close()
    try:
        job_uuid = jobboard.post_flow(handle.flow_id, meta)
    except Exception as e:
        LOG.error('could not post flow %s on the jobboard (%s); running it '
                  'in this process', handle.flow_id, e)
        handle.lease = engine.Lease(handle.flow_id).acquire()
        fresh = engine.load(handle.flow_id, handle.lease)
        handle.engine = fresh.engine
        handle.flow = fresh.flow
        return None
    return PostedOperation(operation, inst['uuid'], migration_uuid,
                           handle.flow_id, ctx.request_id, job_uuid=job_uuid)


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
            action=ACTIONS[operation], request_id=ctx.request_id,
            user_id=ctx.user_id, project_id=ctx.project_id)

    return _run_operation(ctx, operation, inst, migration_uuid, start,
                          listeners, wait)


def resize(ctx, server, flavor, wait=False, listeners=()):
    """Resize a server to another flavor (Nova's resize).

    Raises at once, changing nothing: InstanceNotFound (404, also for
    another project's server), PolicyNotAuthorized (403), FlavorNotFound
    (404, also for another project's private flavor), InstanceIsLocked,
    InstanceInvalidState (not ACTIVE/SHUTOFF, busy, or another request
    started first), InstanceHasUnfinishedFlow (409),
    CannotResizeToSameFlavor, CannotResizeDisk (smaller root disk),
    NoValidHost (400).

    Returns the started :class:`Operation`; with ``wait`` once its flow
    has ended, raising the error of a flow that failed and was undone.
    ``listeners`` are TaskFlow listener factories, called with the engine.
    """
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.RESIZE, _target(inst))
    new = _get_flavor(ctx, flavor)
    _check_state(inst, 'resize', ctx)
    old = repository.flavor_get(inst['flavor_id'])
    if new['id'] == old['id']:
        raise exception.CannotResizeToSameFlavor()
    if new['root_gb'] < old['root_gb']:
        raise exception.CannotResizeDisk(
            reason='flavor %s has a smaller root disk (%d GB) than the '
                   'server\'s (%d GB)' % (new['name'], new['root_gb'],
                                          old['root_gb']))
    scheduler.select_destinations(
        repository.flavor_resources(new), inst['host'],
        allow_same_host=CONF.compute.allow_resize_to_same_host)
    return _start_move(ctx, inst, 'resize', old, new, None, listeners, wait)


def migrate(ctx, server, host=None, wait=False, listeners=()):
    """Cold-migrate a server, keeping its flavor, to ``host`` or to the
    scheduler's choice (never its own host). A named host is tried alone;
    otherwise alternates are tried when the first destination fails.

    Raises at once, changing nothing: InstanceNotFound,
    PolicyNotAuthorized (403: admin only by default), HostNotFound,
    InstanceIsLocked, InstanceInvalidState, InvalidInput (same host),
    NoValidHost. Returns as :func:`resize`.
    """
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.MIGRATE, _target(inst))
    if host is not None:
        policy.authorize(ctx, policy.MIGRATE_HOST, _target(inst))
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


def _resolve(ctx, server, method, task_state, status, operation, rule,
             listeners, wait):
    inst = get_server(ctx, server)
    policy.authorize(ctx, rule, _target(inst))
    _check_state(inst, method, ctx)
    mig = repository.migration_get_by_instance_and_status(
        inst['uuid'], states.MIGRATION_FINISHED)

    def start(flow_id):
        repository.start_resolution(
            inst['uuid'], task_state, mig['uuid'], status, flow_id,
            action=ACTIONS[operation], request_id=ctx.request_id,
            user_id=ctx.user_id, project_id=ctx.project_id)

    return _run_operation(ctx, operation, inst, mig['uuid'], start,
                          listeners, wait)


def confirm_resize(ctx, server, wait=False, listeners=()):
    """Confirm a finished resize or migration: the source host's copy and
    usage go. Raises at once, changing nothing, unless the server is
    RESIZED, visible and the caller allowed. Returns as :func:`resize`."""
    return _resolve(ctx, server, 'confirm_resize', states.RESIZE_CONFIRMING,
                    states.MIGRATION_CONFIRMING, 'confirm_resize',
                    policy.CONFIRM_RESIZE, listeners, wait)


def revert_resize(ctx, server, wait=False, listeners=()):
    """Revert a finished resize or migration: the server runs again on its
    source host with its old flavor, powered on only if it was ACTIVE.
    Raises at once, changing nothing, unless the server is RESIZED,
    visible and the caller allowed. Returns as :func:`resize`."""
    return _resolve(ctx, server, 'revert_resize', states.RESIZE_REVERTING,
                    states.MIGRATION_REVERTING, 'revert_resize',
                    policy.REVERT_RESIZE, listeners, wait)


def lock_server(ctx, server):
    """Lock a server: every operation on it is then refused (409) unless
    an admin asks."""
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.LOCK, _target(inst))
    return repository.instance_update(inst['uuid'], {'locked': True})


def unlock_server(ctx, server):
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.UNLOCK, _target(inst))
    return repository.instance_update(inst['uuid'], {'locked': False})


# -- resize_confirm_window ---------------------------------------------------

def confirm_expired(ctx, window=None):
    """Confirm every resize or migration that has waited, finished, longer
    than ``window`` seconds (default ``[compute]/resize_confirm_window``;
    0 does nothing), as Nova's periodic _poll_unconfirmed_resizes does.

    Each is confirmed to its end, one after another; a server that is
    busy, locked or fails is skipped and reported, and the rest go on.
    Returns {instance uuid: 'confirmed' or the error, as text}.
    """
    policy.authorize(ctx, policy.CONFIRM_EXPIRED)
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


class PeriodicConfirmer:
    """Runs :func:`confirm_expired` every ``interval`` seconds in a thread,
    for a long-running process (cron runs ``resize-flows confirm-expired``
    instead). ``start()``, ``stop()``."""

    def __init__(self, ctx=None, interval=60.0):
        self.ctx = ctx or get_admin_context()
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None

    def run_once(self):
        try:
            return confirm_expired(self.ctx)
        except Exception:
            LOG.exception('periodic confirm of expired resizes failed')
            return {}

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.run_once()

    def start(self):
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name='confirm-expired')
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# -- reads -------------------------------------------------------------------

def list_migrations(ctx, server=None):
    if server is None:
        if not ctx.is_admin:
            return [m for s in list_servers(ctx)
                    for m in repository.migration_list(s['uuid'])]
        return repository.migration_list()
    return repository.migration_list(get_server(ctx, server)['uuid'])


def list_actions(ctx, server):
    """Actions of a server, newest first, each with its events."""
    return repository.action_list(get_server(ctx, server)['uuid'])


# -- flows -------------------------------------------------------------------

def _flow_server(ctx, server):
    """The instance uuid a --server filter means (a deleted server's uuid
    still filters its flows)."""
    try:
        return get_server(ctx, server)['uuid']
    except exception.InstanceNotFound:
        return server


def list_flows(ctx, state=None, server=None, operation=None, limit=None,
               marker=None):
    """Stored flows, newest first: at most ``limit``, those after the flow
    ``marker``. ``state`` is a status (queued, running, interrupted,
    finished, rolled back, stuck) or a TaskFlow flow state."""
    policy.authorize(ctx, policy.FLOW_LIST)
    if server is not None:
        server = _flow_server(ctx, server)
    if operation is not None and operation not in engine.OPERATIONS:
        raise exception.InvalidInput(
            reason='unknown operation %r (one of %s)' % (
                operation, ', '.join(engine.OPERATIONS)))
    if limit is not None:
        validation.check_whole('limit', limit)
    return engine.list_flows(status=state, server=server,
                             operation=operation, limit=limit, marker=marker)


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


def purge_flows(ctx, before, dry_run=False):
    """Delete the flows that ended before ``before`` (see
    :func:`engine.purge_flows`). Returns {'before', 'purged', 'dry_run'}."""
    policy.authorize(ctx, policy.FLOW_PURGE)
    when = _utc(before)
    purged = engine.purge_flows(when, dry_run=dry_run)
    return {'before': when.isoformat(), 'purged': purged,
            'dry_run': bool(dry_run)}


def show_flow(ctx, flow_id):
    policy.authorize(ctx, policy.FLOW_SHOW)
    return engine.show_flow(flow_id)


def resume_flow(ctx, flow_id, listeners=()):
    """Run an interrupted flow on (see :func:`engine.resume`); admin."""
    policy.authorize(ctx, policy.FLOW_RESUME)
    handle_state = engine.resume(flow_id, listeners)
    return {'flow_id': flow_id, 'flow_state': handle_state}


def rollback_flow(ctx, flow_id, listeners=()):
    """Undo a flow (see :func:`engine.rollback`); admin. A flow queued on
    the jobboard is cancelled: undone, then its job taken off the board
    (left there, e.g. the board unreachable, a conductor only consumes
    it, since its flow has ended)."""
    policy.authorize(ctx, policy.FLOW_ROLLBACK)
    brief = engine.flow_brief(flow_id)
    handle_state = engine.rollback(flow_id, listeners)
    if brief is not None and brief['status'] == engine.QUEUED and \
            jobboard.enabled():
        try:
            jobboard.remove_job(brief['job_uuid'], engine.OWNER)
        except Exception as e:
            LOG.warning('flow %s is rolled back but its job %s is still on '
                        'the board: %s', flow_id, brief['job_uuid'], e)
    return {'flow_id': flow_id, 'flow_state': handle_state}


def list_conductors(ctx):
    """The live conductors of the jobboard (see
    :func:`jobboard.list_conductors`); admin."""
    policy.authorize(ctx, policy.CONDUCTOR_LIST)
    return jobboard.list_conductors()


def list_jobs(ctx):
    """The jobs on the jobboard (see :func:`jobboard.list_jobs`); admin."""
    policy.authorize(ctx, policy.JOB_LIST)
    return jobboard.list_jobs()


def resume_interrupted(ctx, listeners=()):
    """Resume every interrupted flow (process dead, lease expired), oldest
    first; for a process that starts up with ``[flows]/resume_interrupted``.
    Returns {flow_id: final state, or the error that stopped it}. A flow
    stuck on a failed undo step is left to an operator."""
    policy.authorize(ctx, policy.FLOW_RESUME)
    outcome = {}
    flows = engine.list_flows(status=engine.INTERRUPTED)
    for flow in reversed(flows):
        try:
            outcome[flow['flow_id']] = engine.resume(flow['flow_id'],
                                                     listeners)
        except Exception as e:
            LOG.warning('could not resume interrupted flow %s: %s',
                        flow['flow_id'], e)
            outcome[flow['flow_id']] = e
    return outcome
