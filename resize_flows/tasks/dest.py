"""Tasks that act on the destination host of a move."""
from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows import plugins as rf_plugins
from resize_flows import states
from resize_flows.tasks import base
from resize_flows.tasks import source
from resize_flows.virt import driver as virt_driver


class PrepareDestination(base.ResizeFlowsTask):
    """Make sure the destination can take the instance (Nova's
    prep_resize): its hypervisor answers, and when the host changes it has
    neither a domain nor a directory of this instance.

    Reversion strategy: nothing was changed.
    """

    def execute(self, migration_uuid, dest_host):
        mig = repository.migration_get(migration_uuid)
        drv = self.driver(dest_host)
        uuid = mig['instance_uuid']
        drv.list_instance_uuids()       # the hypervisor answers
        if dest_host == mig['source_compute']:
            return
        if drv.instance_exists(uuid):
            raise exception.InstanceExistsOnHost(instance_uuid=uuid,
                                                 host=dest_host)
        leftovers = [d for d in drv.list_instance_dirs()
                     if d.startswith(uuid)]
        if leftovers:
            raise exception.InstanceDirectoryConflict(
                path=', '.join(leftovers), host=dest_host,
                reason='left over from an earlier move; remove it first')


class FinishMigration(base.ResizeFlowsTask):
    """Finish on the destination (Nova's finish_migration): drop the resize
    snapshot from the copied disks, grow root and ephemeral disks to the
    new root_gb and ephemeral_gb, make swap again at the new swap_mb,
    define the
    domain with the new vcpus and memory and the devices the flow's
    plugins give it on the destination, and power it on if the instance
    was ACTIVE, waiting for RUNNING. The task becomes ``resize_finish``.

    Reversion strategy: power off and undefine the destination domain,
    keeping the disk (CopyDisk's revert removes it); task back to
    ``resize_migrated``.
    """

    def __init__(self, plugins=(), **kwargs):
        super().__init__(**kwargs)
        #: The names of the flow's plugins (not stored: the factory
        #: builds the task again with the same ones).
        self.plugins = list(plugins)

    def execute(self, migration_uuid, dest_host):
        mig = repository.migration_get(migration_uuid)
        devices = rf_plugins.devices(self.plugins, mig['instance_uuid'],
                                     dest_host)
        inst = repository.instance_update(mig['instance_uuid'], {
            'task_state': states.RESIZE_FINISH})
        flavor = repository.flavor_get(mig['new_flavor_id'])
        self.driver(dest_host).finish_migration(
            {'uuid': inst['uuid'], 'name': inst['name']},
            {k: flavor[k] or 0 for k in ('name', 'vcpus', 'memory_mb',
                                         'root_gb', 'ephemeral_gb',
                                         'swap_mb')},
            source.snapshot_name(migration_uuid),
            power_on=mig['old_vm_state'] == states.ACTIVE,
            plugin_devices=devices)

    def revert(self, migration_uuid, dest_host, **kwargs):
        mig = repository.migration_get(migration_uuid)
        self.driver(dest_host).destroy(mig['instance_uuid'],
                                       destroy_disks=False)
        repository.instance_update(mig['instance_uuid'], {
            'task_state': states.RESIZE_MIGRATED})


class DestroyDestination(base.ResizeFlowsTask):
    """Revert, on the destination: power off and undefine the guest, and set
    its directory aside as ``<uuid>_revert`` until the revert is final.
    It refuses (:class:`~resize_flows.exception.RefusedByRecords`) unless
    the records say the move is being reverted (migration ``reverting``,
    the instance on the destination): else the guest it would destroy is
    the live one, or not the move's.

    Reversion strategy: rename the directory back, define the domain from
    it, and power it on if the records say it was running (they are not
    changed before MarkReverted, and a half-done execute leaves no result
    to ask).
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        uuid = mig['instance_uuid']
        inst = repository.instance_get(uuid)
        if mig['status'] != states.MIGRATION_REVERTING:
            reason = 'its migration %s is %s, not %s' % (
                mig['uuid'], mig['status'], states.MIGRATION_REVERTING)
        elif inst['host'] != mig['dest_compute']:
            reason = 'the records say it lives on %s' % inst['host']
        else:
            reason = None
        if reason is not None:
            raise exception.RefusedByRecords(
                action='destroy the reverted guest of', instance_uuid=uuid,
                host=mig['dest_compute'], reason=reason)
        drv = self.driver(mig['dest_compute'])
        if drv.instance_exists(uuid):
            drv.power_off(uuid, 0)
            drv.destroy(uuid, destroy_disks=False)
        drv.rename_instance_dir(uuid, '', virt_driver.REVERT_SUFFIX)

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        drv = self.driver(mig['dest_compute'])
        uuid = mig['instance_uuid']
        if drv.disk_info(uuid, virt_driver.REVERT_SUFFIX) is not None:
            drv.rename_instance_dir(uuid, virt_driver.REVERT_SUFFIX, '')
        if drv.disk_info(uuid) is None:
            return      # failed before anything was set aside
        drv.ensure_defined(uuid)
        inst = repository.instance_get(uuid)
        if inst['power_state'] == states.RUNNING:
            drv.power_on(uuid)


class DeleteDestinationFiles(base.ResizeFlowsTask):
    """Delete the destination's ``<uuid>_revert``: a revert's point of no
    return, so it runs last.

    Reversion strategy: if the directory still holds its disk nothing is
    lost and nothing is to be done; once the disk is gone the revert can
    only go forward, and the revert says so.
    """

    #: Its execute cannot be undone once it has deleted files.
    point_of_no_return = True

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        self.driver(mig['dest_compute']).remove_instance_dir(
            mig['instance_uuid'], virt_driver.REVERT_SUFFIX)

    def undoable(self, migration_uuid):
        """Whether the destination files are still there to go back to."""
        mig = repository.migration_get(migration_uuid)
        return self.driver(mig['dest_compute']).disk_info(
            mig['instance_uuid'], virt_driver.REVERT_SUFFIX) is not None

    def revert(self, migration_uuid, **kwargs):
        if not self.undoable(migration_uuid):
            raise exception.CannotUndo(
                step='DeleteDestinationFiles',
                reason='the destination files are deleted already; resume '
                       'the flow to finish the revert')
