"""Servers: find one or list them in the caller's view, boot one, lock and
unlock it. (Deleting a server is in :mod:`.moves`: it confirms a resized
server first.)"""
import shutil

from resize_flows.api import context
from resize_flows.api import hosts
from resize_flows.api import images
from resize_flows import exception
from resize_flows import imagestore
from resize_flows.persistence import repository
from resize_flows import plugins as rf_plugins
from resize_flows import policy
from resize_flows import scheduler
from resize_flows import states
from resize_flows import validation
from resize_flows import virt


#: What a driver is given of a flavor.
DRIVER_FLAVOR_KEYS = ('name', 'vcpus', 'memory_mb', 'root_gb', 'ephemeral_gb',
                      'swap_mb')
#: What makes a config drive (an ISO 9660 image), as Nova's default.
CONFIG_DRIVE_TOOL = 'genisoimage'
GiB = 1024 ** 3


def rule_target(inst):
    """What a server's access rules are checked against."""
    return {'project_id': inst['project_id'], 'user_id': inst['user_id']}


@context.tenant_facing
def get_server(ctx, ident):
    project = None if ctx.is_admin else ctx.project_id
    return repository.instance_find(ident, project_id=project)


@context.tenant_facing
def list_servers(ctx, host=None):
    project = None if ctx.is_admin else ctx.project_id
    return repository.instance_list(project_id=project, host=host)


@context.tenant_facing
def create_server(ctx, name, flavor, host=None, power_on=True, image=None,
                  config_drive=False):
    """Boot a server, running unless ``power_on`` is False, on the
    scheduler's choice or on ``host``, which only a caller that passes
    ``os_compute_api:servers:create:forced_host`` (an admin) may name, as
    Nova's forced host: for anyone else a named host is refused (403)
    whether it exists or not.

    Its root disk is a blank qcow2 of the flavor's size, or with
    ``image`` (a name or uuid) an overlay on that image, whose virtual
    size must fit the flavor's root disk (FlavorDiskSmallerThanImage,
    400); ``config_drive`` gives it a config drive, which needs
    genisoimage here (ConfigDriveUnavailable, 400). Every refusal comes
    before anything is changed. The server's record names its image in
    the transaction that creates it, which fails (ImageNotFound) if the
    image was deleted meanwhile: an image in use is never deleted."""
    if config_drive and shutil.which(CONFIG_DRIVE_TOOL) is None:
        raise exception.ConfigDriveUnavailable(tool=CONFIG_DRIVE_TOOL)
    validation.check_name('server', name)
    flavor = hosts.get_flavor(ctx, flavor)
    image_record = None
    if image is not None:
        image_record = images.get_image(ctx, image)
        if flavor['root_gb'] * GiB < image_record['virtual_size']:
            raise exception.FlavorDiskSmallerThanImage(
                flavor=flavor['name'], image=image_record['name'],
                flavor_size=flavor['root_gb'] * GiB,
                image_size=image_record['virtual_size'])
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
                vm_state=states.BUILDING, task_state=states.SPAWNING,
                image_id=image_record and image_record['uuid'],
                config_drive=bool(config_drive))
            break
        except exception.InsufficientResources as e:
            shortage = e            # taken meanwhile: the next one
    else:
        raise exception.NoValidHost(reason=shortage.message)
    host = repository.host_get(inst['host'])
    drv = virt.get_driver(host)
    try:
        drv.spawn({'uuid': inst['uuid'], 'name': name},
                  {k: flavor[k] for k in DRIVER_FLAVOR_KEYS},
                  power_on=power_on,
                  image=image_record and imagestore.for_driver(image_record),
                  config_drive=bool(config_drive),
                  plugin_devices=rf_plugins.devices(
                      rf_plugins.enabled(), inst['uuid'], inst['host']))
        power = drv.get_info(inst['uuid']).power_state
    except Exception:
        drv.destroy(inst['uuid'], destroy_disks=True)
        repository.instance_destroy(inst['uuid'])
        raise
    return repository.instance_update(inst['uuid'], {
        'vm_state': states.vm_state_for_power(power), 'task_state': None,
        'power_state': power})


def _locker(ctx, inst):
    """Who a lock by ``ctx`` is recorded as, as Nova's ``locked_by``:
    ``owner`` for a member of the server's project, else ``admin``."""
    return 'owner' if ctx.project_id == inst['project_id'] else 'admin'


@context.tenant_facing
def lock_server(ctx, server):
    """Lock a server: every operation on it is then refused (409) unless
    an admin asks. Who locked is recorded (``locked_by``: ``owner`` or
    ``admin``); an owner's lock does not replace an admin's."""
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.LOCK, rule_target(inst))
    locker = _locker(ctx, inst)
    if inst['locked'] and locker == 'owner':
        return inst
    return repository.instance_update(inst['uuid'], {'locked': True,
                                                     'locked_by': locker})


@context.tenant_facing
def unlock_server(ctx, server):
    """Unlock a server. A lock by someone outside the server's project
    (an admin) is undone only by the same kind of caller or one that
    passes the unlock-override rule (admin by default), as Nova's:
    otherwise PolicyNotAuthorized (403) and the server stays locked."""
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.UNLOCK, rule_target(inst))
    if inst['locked'] and inst.get('locked_by') != _locker(ctx, inst):
        policy.authorize(ctx, policy.UNLOCK_OVERRIDE, rule_target(inst))
    return repository.instance_update(inst['uuid'], {'locked': False,
                                                     'locked_by': None})


@context.tenant_facing
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
    they are, not filtered for tenants: they name hosts and URIs, so a
    caller showing them to a non-admin says only that the answer is
    unknown (the CLI does)."""
    inst = get_server(ctx, server)
    return virt.get_driver(repository.host_get(inst['host'])) \
        .get_info(inst['uuid'])


@context.tenant_facing
def get_console_output(ctx, server, lines=None):
    """The text of a server's serial console (its ``console.log`` on its
    host), or its last ``lines`` lines; '' when there is none. Scoped by
    project as :func:`get_server` is; rule
    ``os_compute_api:os-console-output`` (admin or owner)."""
    if lines is not None and (isinstance(lines, bool) or
                              not isinstance(lines, int) or lines < 0):
        raise exception.InvalidInput(
            reason='lines must be a whole number >= 0, not %r' % (lines,))
    inst = get_server(ctx, server)
    policy.authorize(ctx, policy.CONSOLE_OUTPUT, rule_target(inst))
    try:
        text = virt.get_driver(repository.host_get(inst['host'])) \
            .get_console_output(inst['uuid'])
    except OSError as exc:      # a host over ssh that could not read it
        raise exception.DiskError(host=inst['host'], reason=str(exc))
    if lines is None:
        return text
    return ''.join(text.splitlines(keepends=True)[-lines:] if lines else [])
