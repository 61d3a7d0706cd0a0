"""Compute hosts and flavors: register, remove and list them; the flavor
a caller may use."""
import logging
import os

from resize_flows.api import context
from resize_flows import exception
from resize_flows.persistence import hostflags
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import validation
from resize_flows import virt

LOG = logging.getLogger(__name__)


def _positive(**values):
    for name, value in values.items():
        validation.check_whole(name, value)


@context.tenant_facing
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
        virt.check_ssh_address(ssh)
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
    made = uri is None and not virt.local_host_exists(name)
    try:
        if uri is None:
            spec = virt.create_local_host(name)
            uri, instances_path = spec['uri'], spec['instances_path']
        # The hypervisor must answer, and the instances path exist, before
        # the host is recorded.
        drv = virt.get_driver({'name': name, 'uri': uri, 'ssh': ssh,
                               'instances_path': instances_path})
        drv.list_instance_uuids()
        if not drv.instances_path_ready():
            raise exception.InvalidInput(
                reason='no directory %s on %s' % (
                    instances_path, ssh or 'this machine'))
        return repository.host_create(name, uri, instances_path, vcpus,
                                      memory_mb, disk_gb, ssh=ssh)
    except BaseException:
        if made:        # refused: leave no local host directory behind
            try:
                virt.remove_local_host(name)
            except Exception:
                LOG.exception('could not remove the local host %s that '
                              'was refused', name)
        raise


@context.tenant_facing
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
    if virt.is_local_host(name, host['instances_path']):
        virt.remove_local_host(name)
    repository.host_destroy(name)


@context.tenant_facing
def list_hosts(ctx):
    policy.authorize(ctx, policy.HOST_MANAGE)
    return repository.host_list_with_usage()


@context.tenant_facing
def create_flavor(ctx, name, vcpus, memory_mb, root_gb, is_public=True,
                  projects=(), ephemeral_gb=0, swap_mb=0):
    """Create a flavor: vCPUs, memory (MB), root disk (GB), and an
    ephemeral disk (GB) and a swap disk (MB), 0 for none. Claims on a
    host count the root disk only."""
    policy.authorize(ctx, policy.FLAVOR_MANAGE)
    validation.check_name('flavor', name)
    _positive(vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb,
              ephemeral_gb=ephemeral_gb, swap_mb=swap_mb)
    if vcpus < 1 or memory_mb < 1:
        raise exception.InvalidInput(
            reason='a flavor needs at least 1 vCPU and 1 MB of RAM')
    if not name or name.isdigit():
        raise exception.InvalidInput(
            reason='a flavor name must be non-empty and not all digits')
    return repository.flavor_create(name, vcpus, memory_mb, root_gb,
                                    is_public=is_public, projects=projects,
                                    ephemeral_gb=ephemeral_gb,
                                    swap_mb=swap_mb)


@context.tenant_facing
def list_flavors(ctx):
    return [f for f in repository.flavor_list()
            if f['is_public'] or ctx.is_admin
            or ctx.project_id in f['projects']]


@context.tenant_facing
def get_flavor(ctx, ident):
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


@context.tenant_facing
def disable_host(ctx, name, reason=None):
    """Disable a host: the scheduler no longer picks it for a move or a
    new server (as Nova's ``compute service set --disable``); what runs
    on it stays. ``reason`` (at most 255 characters) is recorded and
    shown by ``list_hosts``. Returns the host."""
    policy.authorize(ctx, policy.HOST_MANAGE)
    validation.check_name('host', name)
    if reason is not None:
        validation.check_name('disabled reason', reason)
    return hostflags.host_set_disabled(name, True, reason)


@context.tenant_facing
def enable_host(ctx, name):
    """Enable a host again (its disabled reason goes). Returns the host."""
    policy.authorize(ctx, policy.HOST_MANAGE)
    validation.check_name('host', name)
    return hostflags.host_set_disabled(name, False)
