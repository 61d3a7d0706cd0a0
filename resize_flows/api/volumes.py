"""Volumes (the ``volumes`` plugin): create, list, show and delete them;
attach one to a server and detach it.

A volume belongs to the project that created it: another project's is
unknown to a non-admin (404), as servers are. Every check comes first
(access rule, name, size, format, the server's state, the volume's
attachments), so a refused request writes no file and no record. An
attach records the attachment (connected, on the server's host) and then
gives the guest the disk (``driver.update_devices``: live on a running
QEMU guest, the definition on libvirt's test driver); a detach takes the
disk from the guest and then drops the records. Both hold the server
meanwhile by a task state of their own (``attaching_volume``,
``detaching_volume``: :mod:`resize_flows.persistence.instance_tasks`),
so no move starts in between, and record an instance action. Either,
killed midway, is finished by running it again. Attach and detach need
the plugin enabled (``[DEFAULT]/plugins``), so that every move carries
the volume.
"""
import logging
import uuid as uuidlib

from resize_flows.api import context
from resize_flows.api import moves
from resize_flows.api import servers
from resize_flows import exception
from resize_flows.persistence import instance_tasks
from resize_flows.persistence import volumes as volume_db
from resize_flows import plugins as rf_plugins
from resize_flows.plugins import volume_files
from resize_flows.plugins import volumes as volume_plugin
from resize_flows import policy
from resize_flows import states
from resize_flows.testing import faults
from resize_flows import validation

LOG = logging.getLogger(__name__)

#: The largest volume, in GiB (a sparse file; 64 TiB).
MAX_SIZE_GB = 65536


def _target(vol):
    return {'project_id': vol['project_id'], 'user_id': None}


def _scope(ctx):
    return None if ctx.is_admin else ctx.project_id


@context.tenant_facing
def create_volume(ctx, name, size, disk_format='qcow2'):
    """Create volume ``name`` of ``size`` GiB (``disk_format`` qcow2 or
    raw) in the caller's project: the file ``<volume_dir>/volume-<id>``,
    blank, made by qemu-img and owned by the guests' user, then its
    record. Returns the record."""
    policy.authorize(ctx, policy.VOLUME_CREATE)
    validation.check_name('volume', name)
    validation.check_whole('size', size, minimum=1, maximum=MAX_SIZE_GB)
    if disk_format not in volume_files.FORMATS:
        raise exception.InvalidInput(
            reason='a volume is qcow2 or raw, not %r' % (disk_format,))
    volume_id = str(uuidlib.uuid4())
    path = volume_files.path_of(volume_id)
    volume_files.create(path, size, disk_format)
    try:
        return volume_db.volume_create(name, ctx.project_id, size,
                                       disk_format, path,
                                       volume_id=volume_id)
    except BaseException:
        volume_files.remove(path)
        raise


@context.tenant_facing
def list_volumes(ctx):
    """The volumes of the caller's project (every one for an admin)."""
    policy.authorize(ctx, policy.VOLUME_LIST)
    return volume_db.volume_list(_scope(ctx))


@context.tenant_facing
def get_volume(ctx, ident):
    """A volume by id or name, in the caller's view (VolumeNotFound,
    404, otherwise)."""
    if not isinstance(ident, str) or not ident:
        raise exception.VolumeNotFound(volume_id=ident)
    vol = volume_db.volume_find(ident, _scope(ctx))
    policy.authorize(ctx, policy.VOLUME_SHOW, _target(vol))
    vol['attachments'] = [
        {k: a[k] for k in ('instance_uuid', 'host', 'connected')}
        for a in volume_db.attachment_list(volume_id=vol['id'])]
    return vol


@context.tenant_facing
def delete_volume(ctx, ident):
    """Delete a volume and its file; refused (VolumeInUse, 409) while it
    is attached. The record goes first, then the file (a delete killed
    between the two leaves a file no record names, never a record
    without its file)."""
    vol = get_volume(ctx, ident)
    policy.authorize(ctx, policy.VOLUME_DELETE, _target(vol))
    volume_db.volume_destroy(vol['id'])
    volume_files.remove(vol['path'])


def _server_and_volume(ctx, server, volume, rule, method):
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, rule, servers.rule_target(inst))
    vol = get_volume(ctx, volume)
    if volume_plugin.NAME not in rf_plugins.enabled():
        raise exception.InvalidInput(
            reason='the volumes plugin is not enabled ([DEFAULT]/plugins): '
                   'a move would not carry the volume')
    if inst['locked'] and not ctx.is_admin:
        raise exception.InstanceIsLocked(instance_uuid=inst['uuid'])
    moves._refuse_if_unfinished_flow(inst, method)
    return inst, vol


@context.tenant_facing
def attach_volume(ctx, server, volume):
    """Attach ``volume`` to ``server`` (names or ids, in the caller's
    view) as a virtio disk (vdd, vde...; its serial the volume id).
    Refused while the server has a task or is RESIZED (409), for a volume
    attached elsewhere (VolumeInUse, 409) and for a volume file that is
    not a regular file of ours (a link...). Returns the attachment."""
    inst, vol = _server_and_volume(ctx, server, volume, policy.VOLUME_ATTACH,
                                   'attach_volume')
    volume_files.check(vol['path'])
    uuid, host = inst['uuid'], inst['host']
    volume_plugin.check_files(host, uuid, [vol])
    with instance_tasks.held(ctx, uuid, states.ATTACHING_VOLUME,
                             'attach_volume', volume_db.ATTACH_FROM, host):
        faults.window('device-held')
        volume_db.attach(vol['id'], uuid, host)
        try:
            volume_plugin.sync(host, uuid)
        except BaseException:
            LOG.warning('attaching volume %s to %s failed: undoing',
                        vol['id'], uuid)
            try:
                volume_db.detach(vol['id'], uuid, host)
                volume_plugin.sync(host, uuid)
            except Exception:
                # The attach's own error is the one to tell; what is left
                # is finished by attaching (or detaching) again.
                LOG.exception('could not undo the attach of volume %s to '
                              '%s', vol['id'], uuid)
            raise
    [att] = volume_db.attachment_list(instance_uuid=uuid,
                                      volume_id=vol['id'])
    return att


@context.tenant_facing
def detach_volume(ctx, server, volume):
    """Detach ``volume`` from ``server``: the guest loses the disk (live
    on a running QEMU guest), then the attachment goes and the volume is
    available. VolumeNotAttached (404) when it is not attached to that
    server; refused while the server has a task or is RESIZED (409).
    A running guest must acknowledge the unplug: the detach is sent
    again until it does (``[compute]/device_detach_attempts`` and
    ``device_detach_timeout``); one that never does keeps the disk until
    it stops, while its definition and the records no longer have it.
    Returns ``{'volume_id', 'instance_uuid', 'released'}`` (released:
    the running guest let the disk go, or did not run)."""
    inst, vol = _server_and_volume(ctx, server, volume, policy.VOLUME_DETACH,
                                   'detach_volume')
    uuid, host = inst['uuid'], inst['host']
    volume_db.check_detach(vol['id'], uuid, host)
    with instance_tasks.held(ctx, uuid, states.DETACHING_VOLUME,
                             'detach_volume', volume_db.ATTACH_FROM, host):
        faults.window('device-held')
        volume_db.check_detach(vol['id'], uuid, host)
        _added, _removed, kept = volume_plugin.sync(host, uuid,
                                                    skip=vol['id'])
        volume_db.detach(vol['id'], uuid, host)
    return {'volume_id': vol['id'], 'instance_uuid': uuid,
            'released': vol['id'] not in kept}
