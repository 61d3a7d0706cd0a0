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
import functools
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
from resize_flows.testing import faults
from resize_flows import validation
from resize_flows import virt
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import local

LOG = logging.getLogger(__name__)
#: Where the details of an error that a caller who is not an admin sees
#: only in general go (see :func:`_for_caller`).
DETAILS_LOG = logging.getLogger(__name__ + '.details')


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
        """A cloud administrator, by the access rule ``context_is_admin``
        (:func:`policy.is_admin`): the same answer as every rule that
        names it. Asked once per context (and again should its roles or
        the enforcer change), as Nova's context does."""
        key = (tuple(self.roles), self.project_id, self.user_id,
               policy.generation())
        cached = self.__dict__.get('_is_admin')
        if cached is None or cached[0] != key:
            cached = self.__dict__['_is_admin'] = (key, policy.is_admin(self))
        return cached[1]


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


def create_server(ctx, name, flavor, host=None, power_on=True):
    """Boot a server: a blank qcow2 root disk of the flavor's size and a
    guest, running unless ``power_on`` is False, on the scheduler's choice
    or on ``host``, which only a caller that passes
    ``os_compute_api:servers:create:forced_host`` (an admin) may name, as
    Nova's forced host: for anyone else a named host is refused (403)
    whether it exists or not."""
    validation.check_name('server', name)
    flavor = _get_flavor(ctx, flavor)
    if host is not None:
        policy.authorize(ctx, policy.CREATE_FORCED_HOST)
        host = repository.host_get(host)
        if not host['enabled']:
            raise exception.NoValidHost(reason='host %s is disabled.' %
                                        host['name'])
        candidates = [host['name']]
    else:
        candidates = scheduler.select_destinations(
            repository.flavor_resources(flavor), None)
    for candidate in candidates:
        try:
            inst = repository.instance_create(
                name, ctx.project_id, ctx.user_id, candidate, flavor,
                vm_state=states.BUILDING, task_state=states.SPAWNING)
            break
        except exception.InsufficientResources as e:
            shortage = e            # taken meanwhile: the next one
    else:
        raise exception.NoValidHost(reason=shortage.message)
    host = repository.host_get(inst['host'])
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
    """Delete a server: its guest, disk, allocations, migrations and
    actions.

    The server is taken the way a move takes it: task_state ``deleting``
    by compare-and-swap from the state read, with no task under way, so a
    move or a confirm/revert that starts first wins and the delete is
    refused (409), as it is while a flow of the server is unfinished. A
    RESIZED server is confirmed first, as Nova does, then deleted. A
    delete killed midway (task_state ``deleting``) is finished by running
    it again.
    """
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.DELETE, _target(inst))
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
        #: Who asked: a caller who is not an admin gets errors as
        #: :func:`_for_caller` shows them.
        self.caller = None
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
            self.error = _for_caller(self.caller, e)
            try:
                self.flow_state = handle.engine.storage.get_flow_state()
            except Exception:
                pass
            if self._thread is not None and isinstance(e, Exception):
                # Its details are not for a caller who is not an admin.
                log = (LOG if self.error is e else DETAILS_LOG)
                log.warning('%s of %s failed: %s', self.operation,
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
                failed = exception.OperationFailed(
                    operation=self.operation, flow_id=self.flow_id,
                    state=brief['status'],
                    reason=engine.flow_failure(self.flow_id))
                self.error = _for_caller(self.caller, failed)
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
    handle = engine.create(operation, store, inst['uuid'], migration_uuid,
                           project_id=inst['project_id'])
    try:
        faults.window('flow-stored')
        start(handle.flow_id)
    except Exception:
        engine.discard(handle)
        raise
    except BaseException:       # SimulatedCrash too: the flow stays stored,
        handle.close()          # as a dead process leaves it
        raise
    if posting:
        op = _post(ctx, operation, inst, migration_uuid, handle)
        if op is not None:
            return op.wait() if wait else op
    op = Operation(operation, inst['uuid'], migration_uuid, handle.flow_id,
                   ctx.request_id)
    op.caller = ctx
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
    op = PostedOperation(operation, inst['uuid'], migration_uuid,
                         handle.flow_id, ctx.request_id, job_uuid=job_uuid)
    op.caller = ctx
    return op


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
                action=ACTIONS[operation], request_id=ctx.request_id,
                user_id=ctx.user_id, project_id=ctx.project_id)
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


def _locker(ctx, inst):
    """Who a lock by ``ctx`` is recorded as, as Nova's ``locked_by``:
    ``owner`` for a member of the server's project, else ``admin``."""
    return 'owner' if ctx.project_id == inst['project_id'] else 'admin'


def lock_server(ctx, server):
    """Lock a server: every operation on it is then refused (409) unless
    an admin asks. Who locked is recorded (``locked_by``: ``owner`` or
    ``admin``); an owner's lock does not replace an admin's."""
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.LOCK, _target(inst))
    locker = _locker(ctx, inst)
    if inst['locked'] and locker == 'owner':
        return inst
    return repository.instance_update(inst['uuid'], {'locked': True,
                                                     'locked_by': locker})


def unlock_server(ctx, server):
    """Unlock a server. A lock by someone outside the server's project
    (an admin) is undone only by the same kind of caller or one that
    passes the unlock-override rule (admin by default), as Nova's:
    otherwise PolicyNotAuthorized (403) and the server stays locked."""
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.UNLOCK, _target(inst))
    if inst['locked'] and inst.get('locked_by') != _locker(ctx, inst):
        policy.authorize(ctx, policy.UNLOCK_OVERRIDE, _target(inst))
    return repository.instance_update(inst['uuid'], {'locked': False,
                                                     'locked_by': None})


# -- resize_confirm_window ---------------------------------------------------

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
    """Actions of a server, newest first, each with its events. For a
    caller who is not an admin the events have no traceback and no host
    (``None``), as Nova's."""
    actions = repository.action_list(get_server(ctx, server)['uuid'])
    if not ctx.is_admin:
        for act in actions:
            for event in act['events']:
                event['traceback'] = event['host'] = None
    return actions


# -- flows -------------------------------------------------------------------

def _flow_server(ctx, server):
    """The instance uuid a --server filter means (a deleted server's uuid
    still filters its flows)."""
    try:
        return get_server(ctx, server)['uuid']
    except exception.InstanceNotFound:
        return server


def _flow_target(flow_id):
    """What a flow's rules are checked against: the project of its server
    (stored with the flow; for a flow stored before it was, the server's
    if it still exists, else nobody's project: an admin's only). None for
    an unknown flow."""
    brief = engine.flow_owner(flow_id)
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


def list_flows(ctx, state=None, server=None, operation=None, limit=None,
               marker=None):
    """Stored flows, newest first: at most ``limit``, those after the flow
    ``marker``. ``state`` is a status (queued, running, interrupted,
    finished, rolled back, stuck) or a TaskFlow flow state. A caller whom
    the rule lets list only its own project's flows (``admin_or_owner``)
    gets only those."""
    policy.authorize(ctx, policy.FLOW_LIST)
    project = (None if policy.check(ctx, policy.FLOW_LIST,
                                    policy.every_project())
               else ctx.project_id)
    if server is not None:
        server = _flow_server(ctx, server)
    if operation is not None and operation not in engine.OPERATIONS:
        raise exception.InvalidInput(
            reason='unknown operation %r (one of %s)' % (
                operation, ', '.join(engine.OPERATIONS)))
    if limit is not None:
        validation.check_whole('limit', limit)
    return engine.list_flows(status=state, server=server,
                             operation=operation, limit=limit, marker=marker,
                             project=project)


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
    policy.authorize(ctx, policy.FLOW_PURGE, policy.every_project())
    when = _utc(before)
    purged = engine.purge_flows(when, dry_run=dry_run)
    return {'before': when.isoformat(), 'purged': purged,
            'dry_run': bool(dry_run)}


def show_flow(ctx, flow_id):
    _authorize_flow(ctx, policy.FLOW_SHOW, flow_id)
    return engine.show_flow(flow_id)


def resume_flow(ctx, flow_id, listeners=()):
    """Run an interrupted flow on (see :func:`engine.resume`); admin."""
    _authorize_flow(ctx, policy.FLOW_RESUME, flow_id)
    handle_state = engine.resume(flow_id, listeners)
    return {'flow_id': flow_id, 'flow_state': handle_state}


def rollback_flow(ctx, flow_id, listeners=()):
    """Undo a flow (see :func:`engine.rollback`); admin. A flow queued on
    the jobboard is cancelled: undone, then its job taken off the board
    (left there, e.g. the board unreachable, a conductor only consumes
    it, since its flow has ended)."""
    _authorize_flow(ctx, policy.FLOW_ROLLBACK, flow_id)
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
    policy.authorize(ctx, policy.CONDUCTOR_LIST, policy.every_project())
    return jobboard.list_conductors()


def list_jobs(ctx):
    """The jobs on the jobboard (see :func:`jobboard.list_jobs`); admin."""
    policy.authorize(ctx, policy.JOB_LIST, policy.every_project())
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
        target = _flow_target(flow['flow_id'])
        if target is None or not policy.check(ctx, policy.FLOW_RESUME,
                                              target):
            continue        # gone, or another project's for this caller
        try:
            outcome[flow['flow_id']] = engine.resume(flow['flow_id'],
                                                     listeners)
        except Exception as e:
            LOG.warning('could not resume interrupted flow %s: %s',
                        flow['flow_id'], e)
            outcome[flow['flow_id']] = e
    return outcome


# -- what a caller who is not an admin is told --------------------------------

def _for_caller(ctx, error):
    """``error`` as ``ctx`` may see it. An admin sees every error as it
    is. Anyone else, as Nova's rule has it, sees no infrastructure: a
    NoValidHost (or a shortage on a host) becomes Nova's generic "No valid
    host was found."; an error of a hypervisor, a disk, the jobboard, or
    an unexpected one becomes :class:`~exception.ServiceError` with its
    status code and the request id. The details go to the log, under the
    request id. Errors about the caller's own request and servers (4xx:
    not found, not allowed, wrong state...) are shown as they are."""
    if ctx is None or not isinstance(error, Exception) or \
            getattr(error, 'for_tenants', False) or ctx.is_admin:
        return error
    if isinstance(error, (exception.NoValidHost,
                          exception.InsufficientResources)):
        DETAILS_LOG.info('request %s: %s', ctx.request_id, error)
        shown = exception.NoValidHost(exception.NoValidHost.GENERIC,
                                      reason='')
    elif (isinstance(error, exception.ResizeFlowsException)
          and 400 <= error.code < 500
          and not isinstance(error, exception.HypervisorError)):
        return error
    else:
        DETAILS_LOG.error(
            'request %s of %s (project %s) failed: %s: %s', ctx.request_id,
            ctx.user_id, ctx.project_id, type(error).__name__, error,
            exc_info=(type(error), error, error.__traceback__))
        code = (error.code if isinstance(
            error, exception.ResizeFlowsException) else 500)
        shown = exception.ServiceError(request_id=ctx.request_id, code=code)
    shown.for_tenants = True
    return shown


def _tenant_facing(func):
    """Raise what :func:`_for_caller` lets the caller see."""
    @functools.wraps(func)
    def call(ctx, *args, **kwargs):
        try:
            return func(ctx, *args, **kwargs)
        except Exception as e:
            shown = _for_caller(ctx, e)
            if shown is e:
                raise
            raise shown from None
    return call


for _name in ('create_host', 'delete_host', 'list_hosts', 'create_flavor',
              'list_flavors', 'get_server', 'list_servers', 'create_server',
              'delete_server', 'resize', 'migrate', 'confirm_resize',
              'revert_resize', 'lock_server', 'unlock_server',
              'confirm_expired', 'list_migrations', 'list_actions',
              'list_flows', 'purge_flows', 'show_flow', 'resume_flow',
              'rollback_flow', 'list_conductors', 'list_jobs',
              'resume_interrupted'):
    globals()[_name] = _tenant_facing(globals()[_name])
del _name


# --- added for the CLI split ---

def flavor_names(ctx, servers):
    """The names of the flavors that ``servers`` use, now or as a pending
    resize's old and new one: ``{flavor id: name}``. ``servers`` are
    records :func:`get_server` or :func:`list_servers` gave ``ctx``; like
    them, this is scoped by project, not by a rule: a server of another
    project is unknown to a non-admin (InstanceNotFound). A private
    flavor's name is given for a server the caller may see, as that
    server's own flavor."""
    names = {}
    for inst in servers:
        if not ctx.is_admin and inst['project_id'] != ctx.project_id:
            raise exception.InstanceNotFound(instance_id=inst['uuid'])
        for key in ('flavor_id', 'old_flavor_id', 'new_flavor_id'):
            flavor_id = inst[key]
            if flavor_id is not None and flavor_id not in names:
                names[flavor_id] = repository.flavor_get(flavor_id)['name']
    return names


def get_hypervisor_info(ctx, server):
    """What the hypervisor of ``server``'s host says of it: the driver's
    InstanceInfo (``power_state``, ``vcpus``, ``memory_mb``). Scoped by
    project as :func:`get_server` is. The driver's errors are raised as
    they are, not as :func:`_for_caller` would show them: they name hosts
    and URIs, so a caller showing them to a non-admin says only that the
    answer is unknown."""
    inst = get_server(ctx, server)
    return virt.get_driver(repository.host_get(inst['host'])) \
        .get_info(inst['uuid'])


def conductor_name():
    """The name a conductor of this process claims jobs under:
    ``[jobboard]/conductor_name`` (or the host name), the process id and a
    random suffix. Not a caller's request: no context, no rule (whoever
    may run the process may run a conductor)."""
    return jobboard.conductor_name()


def jobboard_address():
    """``(board name, back-end URL with its credentials masked)``: which
    jobboard a conductor claims on, fit for a message or a log line."""
    return CONF.jobboard.board_name, jobboard.mask_url()


def create_conductor(name):
    """A conductor (:class:`jobboard.Conductor`) named ``name``: ``run()``
    claims jobs and runs their flows until ``stop()``. Like
    :func:`conductor_name`, no context and no rule: it is the operator's
    process, not a caller's request."""
    return jobboard.Conductor(name=name)


def arm_configured_faults(conf):
    """Arm the faults that ``conf`` names (``[testing]/faults``) in this
    process, as a test suite's fault injection asks of a process it
    starts; ignored, with a warning, when injection is off. See
    :func:`resize_flows.testing.faults.configure`. No context, no rule:
    it is the process's own start-up."""
    return faults.configure(conf)


def shutdown():
    """What a process that used the API does before it exits: let every
    operation it started end (:func:`wait_all`), then close every
    hypervisor connection."""
    wait_all()
    virt.reset()


flavor_names = _tenant_facing(flavor_names)
