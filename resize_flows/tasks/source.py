"""Tasks that act on the source host of a move."""
from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.tasks import base
from resize_flows.virt import driver as virt_driver


def snapshot_name(migration_uuid):
    """Name of the qcow2 snapshot a move takes of the source disk."""
    return 'resize-%s' % migration_uuid


class PowerOffSource(base.ResizeFlowsTask):
    """Power the guest off on the source (ACPI first, for up to
    ``[compute]/shutdown_timeout`` seconds, then hard). The instance's
    task becomes ``resize_migrating``, the migration ``migrating``.

    Reversion strategy: power the guest on again if the instance was
    ACTIVE before the move (its domain is defined again first), and put
    the task and migration back to ``resize_prep``/``pre-migrating``.
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        repository.instance_update(mig['instance_uuid'], {
            'task_state': states.RESIZE_MIGRATING})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_MIGRATING})
        self.driver(mig['source_compute']).power_off(
            mig['instance_uuid'], CONF.compute.shutdown_timeout)

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        drv = self.driver(mig['source_compute'])
        if (mig['old_vm_state'] == states.ACTIVE
                and drv.disk_info(mig['instance_uuid']) is not None):
            drv.ensure_defined(mig['instance_uuid'])
            drv.power_on(mig['instance_uuid'])
        repository.instance_update(mig['instance_uuid'], {
            'task_state': states.RESIZE_PREP})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_PRE_MIGRATING})


class MoveSourceToResize(base.ResizeFlowsTask):
    """Take the resize snapshot of the source disk and rename the instance
    directory to ``<uuid>_resize``, where it waits for confirm or revert.

    Reversion strategy: rename it back, delete the snapshot, and make sure
    the source domain is defined from the instance's own ``libvirt.xml``.
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        self.driver(mig['source_compute']).stash_for_resize(
            mig['instance_uuid'], snapshot_name(migration_uuid))

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        self.driver(mig['source_compute']).unstash_after_failed_resize(
            mig['instance_uuid'], snapshot_name(migration_uuid))


class CleanupSource(base.ResizeFlowsTask):
    """Confirm on the source: undefine the source domain if the host
    changed, delete the resize snapshot, delete ``<uuid>_resize``.

    This is a confirm's point of no return, so it runs last. It refuses
    (:class:`~resize_flows.exception.RefusedByRecords`) when the host
    changed and the records say the instance lives on the source: the
    domain there is then the live one, not a leftover.

    Reversion strategy: if ``<uuid>_resize`` still holds its disk nothing
    is lost: define the source domain again (when the host changed). Once
    the disk is gone the confirm can only go forward, and the revert says
    so (the flow stops for an operator rather than pretend).
    """

    #: Its execute cannot be undone once it has deleted files.
    point_of_no_return = True

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        host_changed = mig['source_compute'] != mig['dest_compute']
        inst = repository.instance_get(mig['instance_uuid'])
        if host_changed and inst['host'] == mig['source_compute']:
            raise exception.RefusedByRecords(
                action='clean up the source of', instance_uuid=inst['uuid'],
                host=mig['source_compute'],
                reason='the records say it lives there')
        self.driver(mig['source_compute']).confirm_migration(
            mig['instance_uuid'], snapshot_name(migration_uuid),
            host_changed=host_changed)

    def undoable(self, migration_uuid):
        """Whether the source files are still there to go back to."""
        mig = repository.migration_get(migration_uuid)
        return self.driver(mig['source_compute']).disk_info(
            mig['instance_uuid'], virt_driver.RESIZE_SUFFIX) is not None

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        drv = self.driver(mig['source_compute'])
        uuid = mig['instance_uuid']
        if not self.undoable(migration_uuid):
            raise exception.CannotUndo(
                step='CleanupSource',
                reason='the source files of the move are deleted already; '
                       'resume the flow to finish the confirm')
        if mig['source_compute'] != mig['dest_compute']:
            drv.ensure_defined(uuid, uuid + virt_driver.RESIZE_SUFFIX)


class RestoreSource(base.ResizeFlowsTask):
    """Revert on the source (Nova's finish_revert_migration without the
    power on): rename ``<uuid>_resize`` back, roll the disk back to the
    resize snapshot and delete it, define the domain with the old flavor.

    Reversion strategy: take the snapshot again (the disk has not run since
    it was rolled back, so the content is the same) and rename the
    directory back to ``<uuid>_resize``, the guest off. The source domain
    stays defined, as it is while a move awaits confirm.
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        inst = repository.instance_get(mig['instance_uuid'])
        self.driver(mig['source_compute']).finish_revert_migration(
            {'uuid': inst['uuid'], 'name': inst['name']},
            snapshot_name(migration_uuid), power_on=False)

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        drv = self.driver(mig['source_compute'])
        uuid = mig['instance_uuid']
        if drv.disk_info(uuid) is None:
            return      # never renamed back: nothing to undo
        drv.power_off(uuid, 0)
        drv.stash_for_resize(uuid, snapshot_name(migration_uuid))


class PowerOnSource(base.ResizeFlowsTask):
    """Power the reverted guest on if it was ACTIVE before the move, and
    wait for RUNNING. Provides whether it did.

    Reversion strategy: power it off again if this task powered it on.
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        if mig['old_vm_state'] != states.ACTIVE:
            return False
        self.driver(mig['source_compute']).power_on(mig['instance_uuid'])
        return True

    def revert(self, migration_uuid, result, **kwargs):
        mig = repository.migration_get(migration_uuid)
        if mig['old_vm_state'] == states.ACTIVE:
            self.driver(mig['source_compute']).power_off(
                mig['instance_uuid'], 0)
