"""The ``volumes`` reference plugin: file-backed volumes, Cinder-like.

A volume is a qcow2 or raw file in ``[volumes]/volume_dir``
(:mod:`.volume_files`), which every host reaches at the same path; its
records are :mod:`resize_flows.persistence.volumes`'. A volume attached
to a server has an attachment per host, and the one that is
``connected`` is a virtio disk of the guest on that host
(:meth:`VolumesPlugin.domain_devices`: alias ``ua-volumes-<id>``, its
serial the volume id). A move never copies it: the file stays where it
is and only the connection moves.

- resize/migrate, before the destination is defined
  (:class:`ConnectOnDestination`): the source's attachment is
  disconnected (the stashed source's domain and ``libvirt.xml`` lose the
  disk) and the destination's is made, connected, so that
  FinishMigration defines the destination with the disk. On one host
  nothing changes.
- confirm, with the source's clean-up (:class:`DropSourceAttachment`):
  the source's attachment record goes.
- revert, before the source is restored (:class:`ConnectOnSource`): the
  source's attachment is connected again (the stashed domain gets the
  disk back, RestoreSource defines it so) and the destination's goes.

Every task makes the records first, in one transaction, then makes the
host's domain say what the records say: run again, it finds both done.
"""
from resize_flows.persistence import repository
from resize_flows.persistence import volumes as volume_db
from resize_flows import plugins
from resize_flows.plugins import volume_audit
from resize_flows.plugins import volume_files
from resize_flows.plugins import volume_hosts
from resize_flows.tasks import base
from resize_flows.virt import driver as virt_driver

NAME = 'volumes'


def devices(instance_uuid, host, skip=None):
    """The disks of the volumes connected to ``instance_uuid`` on
    ``host`` but ``skip`` (a volume id); each file is checked first (no
    link, ours or the guests' user's)."""
    found = []
    for vol in volume_db.connected_volumes(instance_uuid, host):
        if vol['id'] == skip:
            continue
        volume_files.check(vol['path'])
        found.append({'type': 'disk', 'id': vol['id'], 'path': vol['path'],
                      'format': vol['disk_format'], 'serial': vol['id']})
    return found


def sync(host, instance_uuid, suffix='', skip=None):
    """Make the domain of ``<uuid><suffix>/libvirt.xml`` on ``host`` (and
    the domain defined from it) have the disks the records say (but the
    volume ``skip``: one being detached); the driver's ``(added,
    removed, kept)`` (kept: what a running guest did not let go)."""
    return base.ResizeFlowsTask.driver(host).update_devices(
        instance_uuid, NAME, devices(instance_uuid, host, skip), suffix)


def check_files(host, instance_uuid, volumes=None):
    """Refuse (one line naming ``host`` and the path) unless the file of
    every volume attached to ``instance_uuid`` (or of each record in
    ``volumes``) is there on ``host``, of its recorded size
    (:func:`.volume_hosts.check_on_host`): before a volume is connected
    there."""
    if volumes is None:
        ids = {a['volume_id'] for a in
               volume_db.attachment_list(instance_uuid=instance_uuid)}
        volumes = [v for v in volume_db.volume_list() if v['id'] in ids]
    if volumes:
        drv = base.ResizeFlowsTask.driver(host)
        for vol in volumes:
            volume_hosts.check_on_host(drv, vol)


def _move(migration_uuid):
    mig = repository.migration_get(migration_uuid)
    return mig, mig['instance_uuid']


class ConnectOnDestination(base.ResizeFlowsTask):
    """Resize/migrate, with the source off and stashed and before the
    destination is defined: disconnect the instance's volumes from the
    source (its attachment kept, not connected; the stashed source's
    ``libvirt.xml`` and domain lose the disks) and connect them on the
    destination (an attachment there, connected: FinishMigration defines
    the destination with the disks). Nothing on one host.

    Reversion strategy: the destination's attachments go and the
    source's are connected again; the stashed source's ``libvirt.xml``
    and domain get the disks back.
    """

    def execute(self, migration_uuid, dest_host):
        mig, uuid = _move(migration_uuid)
        if dest_host == mig['source_compute']:
            return
        check_files(dest_host, uuid)
        volume_db.connect(uuid, mig['source_compute'], dest_host,
                          drop_off=False)
        sync(mig['source_compute'], uuid, virt_driver.RESIZE_SUFFIX)

    def revert(self, migration_uuid, dest_host, **kwargs):
        mig, uuid = _move(migration_uuid)
        if dest_host == mig['source_compute']:
            return
        volume_db.connect(uuid, dest_host, mig['source_compute'],
                          drop_off=True)
        sync(mig['source_compute'], uuid, virt_driver.RESIZE_SUFFIX)


class DropSourceAttachment(base.ResizeFlowsTask):
    """Confirm: delete the source's attachments of the instance's volumes
    (not connected since the move).

    Reversion strategy: give each volume connected on the destination
    its source attachment again, not connected.
    """

    def execute(self, migration_uuid):
        mig, uuid = _move(migration_uuid)
        if mig['source_compute'] != mig['dest_compute']:
            volume_db.drop_disconnected(uuid, mig['source_compute'])

    def revert(self, migration_uuid, **kwargs):
        mig, uuid = _move(migration_uuid)
        if mig['source_compute'] != mig['dest_compute']:
            volume_db.add_disconnected(uuid, mig['source_compute'],
                                       mig['dest_compute'])


class ConnectOnSource(base.ResizeFlowsTask):
    """Revert, with the destination's guest off and undefined and before
    the source is restored: connect the instance's volumes on the source
    again (the stashed source's ``libvirt.xml`` and domain get the disks,
    RestoreSource defines the source so) and delete the destination's
    attachments. Nothing on one host.

    Reversion strategy: the destination's attachments come back,
    connected (its set-aside ``libvirt.xml`` still has the disks, so
    DestroyDestination's revert defines it with them), and the source's
    are disconnected, its stashed domain without the disks. The files
    are checked on the source first, as ConnectOnDestination checks them
    on the destination.
    """

    def execute(self, migration_uuid):
        mig, uuid = _move(migration_uuid)
        if mig['source_compute'] == mig['dest_compute']:
            return
        check_files(mig['source_compute'], uuid)
        volume_db.connect(uuid, mig['dest_compute'], mig['source_compute'],
                          drop_off=True)
        sync(mig['source_compute'], uuid, virt_driver.RESIZE_SUFFIX)

    def revert(self, migration_uuid, **kwargs):
        mig, uuid = _move(migration_uuid)
        if mig['source_compute'] == mig['dest_compute']:
            return
        volume_db.connect(uuid, mig['source_compute'], mig['dest_compute'],
                          drop_off=False)
        sync(mig['source_compute'], uuid, virt_driver.RESIZE_SUFFIX)


_TASKS = {
    ('resize', plugins.BEFORE_DEST_DEFINE): ConnectOnDestination,
    ('migrate', plugins.BEFORE_DEST_DEFINE): ConnectOnDestination,
    ('confirm_resize', plugins.CONFIRM_SOURCE_CLEANUP): DropSourceAttachment,
    ('revert_resize', plugins.BEFORE_SOURCE_RESTORE): ConnectOnSource,
}


class VolumesPlugin(plugins.Plugin):
    """File-backed volumes attached to servers (see the module)."""

    name = NAME

    def tasks(self, operation, point):
        task_class = _TASKS.get((operation, point))
        if task_class is None:
            return []
        return [task_class(name=plugins.atom_name(self.name, task_class))]

    def domain_devices(self, instance_uuid, host):
        return devices(instance_uuid, host)

    def state(self):
        vols = sorted((v['id'], v['name'], v['project_id'], v['size_gb'],
                       v['disk_format'], v['path'], v['status'])
                      for v in volume_db.volume_list())
        atts = sorted((a['volume_id'], a['instance_uuid'], a['host'],
                       a['connected'])
                      for a in volume_db.attachment_list())
        return {'volumes': vols, 'attachments': atts}

    def audit(self):
        return volume_audit.problems()

    def instance_deleted(self, instance_uuid, host):
        volume_db.instance_deleted(instance_uuid)
